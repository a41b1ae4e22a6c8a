"""Import and export codecs: files in, :class:`ImportRecord` streams out, and JSONL export lines back.

Everything here streams (constant memory in the file's size) and touches no database: the ingest
service consumes the records and decides what to store, all or nothing.
"""

from labelmill.formats.jsonl import read_jsonl
from labelmill.formats.jsonl_export import (
    export_annotation,
    export_consensus,
    export_prediction,
    export_row,
    write_jsonl,
)
from labelmill.formats.labelstudio import read_labelstudio
from labelmill.formats.media import probe_media, scan_media_folder
from labelmill.formats.readers import FORMATS, detect_format, read_any
from labelmill.formats.records import FormatError, ImportRecord
from labelmill.formats.tabular import read_csv, read_parquet

__all__ = [
    "FORMATS",
    "FormatError",
    "ImportRecord",
    "detect_format",
    "export_annotation",
    "export_consensus",
    "export_prediction",
    "export_row",
    "probe_media",
    "read_any",
    "read_csv",
    "read_jsonl",
    "read_labelstudio",
    "read_parquet",
    "scan_media_folder",
    "write_jsonl",
]
