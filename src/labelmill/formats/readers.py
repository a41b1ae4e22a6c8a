"""Choosing a reader for a path, so ``labelmill import PROJECT FILE...`` needs no format flag."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from labelmill.formats.hf_dataset import is_hf_dataset_folder, read_hf_dataset
from labelmill.formats.jsonl import read_jsonl
from labelmill.formats.labelstudio import read_labelstudio
from labelmill.formats.media import scan_media_folder
from labelmill.formats.records import FormatError, ImportRecord
from labelmill.formats.tabular import read_csv, read_parquet

__all__ = ["FORMATS", "detect_format", "read_any"]

#: Readers of labelled datasets: they need the ``control`` to put labels under and a ``target``
#: (``gold``, ``predictions`` or ``annotations``); only CoNLL has extensions of its own, the others
#: (a JSON file, a folder) are chosen by name.
DATASET_READERS = {
    "coco": "labelmill.formats.coco:read_coco",
    "yolo": "labelmill.formats.yolo:read_yolo",
    "voc": "labelmill.formats.voc:read_voc",
    "conll": "labelmill.formats.conll:read_conll",
}
#: Format names accepted by :func:`read_any` (and the CLI's ``--format``).
FORMATS = ("jsonl", "csv", "tsv", "parquet", "labelstudio", "folder", "hf_dataset", *DATASET_READERS)

_BY_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    # A .json file is a whole JSON document; the one such import format we know is Label Studio's.
    ".json": "labelstudio",
    ".conll": "conll",
    ".iob": "conll",
    ".iob2": "conll",
    ".bio": "conll",
}


def detect_format(path: str | os.PathLike[str]) -> str:
    """The format of ``path`` from its extension (``.gz`` is looked through) or from being a folder."""
    p = Path(path)
    if p.is_dir():
        return "hf_dataset" if is_hf_dataset_folder(p) else "folder"
    suffix = p.suffix.lower()
    if suffix == ".gz":
        suffix = Path(p.stem).suffix.lower()
        if suffix in (".parquet", ".pq"):
            suffix = ""  # Parquet compresses internally; a gzipped Parquet file is not readable as such
    fmt = _BY_SUFFIX.get(suffix)
    if fmt is None:
        raise FormatError(
            p.name,
            1,
            "",
            f"cannot tell the format from the extension {p.suffix!r}; use .jsonl, .csv, .tsv, .parquet, "
            ".json (Label Studio), .conll (.iob, .iob2, .bio), a folder of media files, or --format",
        )
    return fmt


def read_any(path: str | os.PathLike[str], fmt: str | None = None, **options: Any) -> Iterator[ImportRecord]:
    """Stream records from ``path`` in ``fmt`` (detected when None); ``options`` go to the reader."""
    fmt = fmt or detect_format(path)
    if fmt == "jsonl":
        return read_jsonl(path, **options)
    if fmt == "csv":
        return read_csv(path, **options)
    if fmt == "tsv":
        return read_csv(path, delimiter="\t", **options)
    if fmt == "parquet":
        return read_parquet(path, **options)
    if fmt == "labelstudio":
        return read_labelstudio(path, **options)
    if fmt == "folder":
        return scan_media_folder(path, **options)
    if fmt == "hf_dataset":
        return read_hf_dataset(path, **options)
    if fmt in DATASET_READERS:
        module, attr = DATASET_READERS[fmt].split(":")
        reader: Callable[..., Iterator[ImportRecord]] = getattr(importlib.import_module(module), attr)
        return reader(path, **options)
    raise ValueError(f"unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}")
