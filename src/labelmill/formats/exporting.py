"""The contract every exporter implements, and the registry of export and import formats.

An exporter receives a stream of export rows (one per item, DESIGN's JSONL export shape:
``external_id``, ``data``, ``annotations``, ``predictions``, ``consensus``, plus ``meta`` and
``gold`` when set), the project's schema and options, and writes one file or one folder. It
never holds the whole project in memory (a format whose structure needs a total, like COCO's
category list, takes it from the schema, not from the data).

Formats live one module each and are looked up by dotted path, so adding a format is adding a
module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from labelmill.schema import LabelSchema

#: One item: {"external_id", "data", "annotations", "predictions", "consensus", "meta"?, "gold"?}.
ExportRow = dict[str, Any]


@dataclass(frozen=True)
class ExportOptions:
    #: ``consensus``: one label per item, the consensus (the training set); ``annotations``: every
    #: annotator's label (for audits and agreement studies).
    labels: Literal["consensus", "annotations"] = "consensus"
    #: Also write model predictions (formats that can hold them: COCO scores, JSONL, Label Studio).
    include_predictions: bool = False
    #: Include items whose label is a model's auto-label (marked ``auto`` where the format can).
    include_auto: bool = True


@dataclass(frozen=True)
class ExportContext:
    schema: LabelSchema
    options: ExportOptions = field(default_factory=ExportOptions)
    #: ``media://...`` -> local file of that media, or None when it is not stored locally.
    media_path: Callable[[str], Path | None] = lambda _: None
    project_name: str = "labelmill"


class Exporter(Protocol):
    #: Name used by ``--format`` and the API.
    name: str
    #: ``file`` (out is a file path) or ``folder`` (out is a directory it creates).
    target: Literal["file", "folder"]
    description: str

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        """Write the rows; return how many items were written."""
        ...


def labelled_values(row: ExportRow, ctx: ExportContext) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The (value, info) pairs of an item under the export options: its consensus (info has
    ``confidence``, ``method``, ``auto``), or each annotation (info has ``annotator``)."""
    if ctx.options.labels == "consensus":
        consensus = row.get("consensus")
        if consensus and (ctx.options.include_auto or not consensus.get("auto")):
            info = {k: consensus.get(k) for k in ("confidence", "method", "auto")}
            yield consensus.get("value") or {}, info
        return
    for annotation in row.get("annotations") or []:
        if annotation.get("status") in ("rejected",):
            continue
        yield annotation.get("value") or {}, {"annotator": annotation.get("annotator")}


def controls_of(schema: LabelSchema, *types: str) -> list[Any]:
    return [c for c in schema.controls if c.type in types]


#: ``--format`` name -> "module:attribute" of its exporter object.
EXPORTERS: dict[str, str] = {
    "jsonl": "labelmill.formats.jsonl_export:JSONL_EXPORTER",
    "csv": "labelmill.formats.table_export:CSV_EXPORTER",
    "parquet": "labelmill.formats.table_export:PARQUET_EXPORTER",
    "coco": "labelmill.formats.coco:COCO_EXPORTER",
    "yolo": "labelmill.formats.yolo:YOLO_EXPORTER",
    "voc": "labelmill.formats.voc:VOC_EXPORTER",
    "conll": "labelmill.formats.conll:CONLL_EXPORTER",
    "spacy": "labelmill.formats.spacy_docbin:SPACY_EXPORTER",
    "huggingface": "labelmill.formats.huggingface:HF_EXPORTER",
    "labelstudio": "labelmill.formats.labelstudio_export:LABELSTUDIO_EXPORTER",
    "dpo": "labelmill.formats.llm:DPO_EXPORTER",
    "ratings": "labelmill.formats.llm:RATINGS_EXPORTER",
    "segments": "labelmill.formats.audio:SEGMENTS_EXPORTER",
}


#: One line per format for ``--help`` and the API (kept here so listing formats imports none of them).
DESCRIPTIONS: dict[str, str] = {
    "jsonl": "one item per line with data, annotations, predictions, consensus; imports back unchanged",
    "csv": "one row per item (or per annotation), a column per control",
    "parquet": "the CSV table as Parquet with native nested types",
    "coco": "COCO JSON: boxes, polygons as segmentation, keypoints, image labels",
    "yolo": "YOLO folder: images/, labels/ (normalised boxes or polygons), data.yaml",
    "voc": "Pascal VOC folder: Annotations/*.xml (1-based pixels), JPEGImages/",
    "conll": "CoNLL-2003 / IOB2 token tags for entity spans",
    "spacy": "spaCy DocBin (.spacy) with entities and categories (needs the spacy extra)",
    "huggingface": "Hugging Face dataset folder: Parquet with ClassLabel features",
    "labelstudio": "Label Studio task JSON (imports into Label Studio and back)",
    "dpo": "LLM preferences as prompt/chosen/rejected JSONL (DPO trainers)",
    "ratings": "LLM ratings as JSONL",
    "segments": "audio segments and transcripts as JSONL (or CSV for a .csv path)",
}


def get_exporter(name: str) -> Exporter:
    try:
        module, attr = EXPORTERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown export format {name!r} (known: {', '.join(EXPORTERS)})") from None
    exporter: Exporter = getattr(importlib.import_module(module), attr)
    return exporter
