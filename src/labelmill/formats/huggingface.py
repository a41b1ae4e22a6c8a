"""A Hugging Face dataset folder: ``data/train-00000-of-00001.parquet`` plus a ``README.md`` card.

``datasets.load_dataset("parquet", data_files=...)`` (or ``load_dataset(folder)``) gives back typed
columns, because the Hugging Face features travel in the Parquet schema metadata under
``b"huggingface"`` (that is where ``datasets`` looks for them) and again in the card's YAML:

- ``id`` (the item's external id) and, when every annotation is exported, ``annotator``;
- each labelled data field (a control's ``source``) as ``Value("string")``;
- a ``choices`` control as ``ClassLabel(names=classes)`` (an int id; -1 where unanswered),
  ``multi_choices`` as ``List(ClassLabel)``, ``spans`` as ``List({start, end, label: ClassLabel})``
  (code point offsets, as stored), ``rating`` as ``Value("int64")``, ``text``/``transcript`` as
  ``Value("string")``; other control types do not fit a flat table and are left to JSONL/COCO;
- with a spans control, ``tokens`` and ``ner_tags`` (``List(ClassLabel(names=IOB2 tags))``) for
  token classification, tagged exactly as the CoNLL export tags them (first spans control).

A control whose name is already a column (``text`` labelling ``text``) gets ``_label`` appended.
Rows are written in batches (one Parquet row group each), so memory stays flat however many
items there are; items without a label are left out, as this is a training set.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from labelmill.formats.conll import TaggingReport, encode_tags, tag_names, tag_spans, warn_summary
from labelmill.formats.exporting import ExportContext, ExportRow, labelled_values

__all__ = ["DATA_FILE", "HF_EXPORTER", "HuggingFaceExporter", "features_to_arrow", "features_to_yaml"]

#: Where the rows go inside the folder: the Hub's naming for a single-shard train split.
DATA_FILE = "data/train-00000-of-00001.parquet"
_SUPPORTED = ("choices", "multi_choices", "spans", "rating", "text", "transcript")

Feature = dict[str, Any]


def _value(dtype: str) -> Feature:
    return {"dtype": dtype, "_type": "Value"}


def _class_label(names: list[str]) -> Feature:
    return {"names": list(names), "_type": "ClassLabel"}


def _list(feature: Feature) -> Feature:
    return {"feature": feature, "_type": "List"}


def _arrow_type(feature: Feature) -> pa.DataType:
    kind = feature.get("_type")
    if kind == "Value":
        return {"string": pa.string(), "int64": pa.int64(), "int32": pa.int32()}[feature["dtype"]]
    if kind == "ClassLabel":
        return pa.int64()
    if kind == "List":
        return pa.list_(_arrow_type(feature["feature"]))
    return pa.struct([pa.field(name, _arrow_type(sub)) for name, sub in feature.items()])


def features_to_arrow(features: dict[str, Feature]) -> pa.Schema:
    """The Arrow schema of ``features`` (a ``datasets.Features.to_dict()``), carrying them as metadata."""
    metadata = {b"huggingface": json.dumps({"info": {"features": features}}).encode()}
    return pa.schema([pa.field(name, _arrow_type(f)) for name, f in features.items()], metadata=metadata)


def _yaml_type(feature: Feature) -> Any:
    kind = feature.get("_type")
    if kind == "Value":
        return feature["dtype"]
    if kind == "ClassLabel":
        return {"class_label": {"names": {str(i): name for i, name in enumerate(feature["names"])}}}
    if kind == "List":
        return {"list": _yaml_type(feature["feature"])}
    return [_yaml_entry(name, sub) for name, sub in feature.items()]


def _yaml_entry(name: str, feature: Feature) -> dict[str, Any]:
    inner = _yaml_type(feature)
    if isinstance(inner, dict) and "list" in inner:
        return {"name": name, **inner}
    return {"name": name, "dtype": inner}


def features_to_yaml(features: dict[str, Feature]) -> list[dict[str, Any]]:
    """The dataset card's ``dataset_info.features`` list (the ``datasets`` YAML form of ``features``)."""
    return [_yaml_entry(name, f) for name, f in features.items()]


@dataclass
class _Column:
    name: str
    feature: Feature
    control: Any = None
    #: The item data field a text column holds (its name, unless that clashed).
    key: str = ""
    #: Label -> id of a ClassLabel column (or of the ClassLabel inside it).
    ids: dict[str, int] = field(default_factory=dict)


@dataclass
class _Tally:
    """What an export changed or left out, and how big it came out."""

    report: TaggingReport = field(default_factory=TaggingReport)
    #: Labels outside the schema's classes (values stored under an older schema), left out.
    unknown: int = 0
    nbytes: int = 0

    def index(self, col: _Column, label: Any) -> int | None:
        found = col.ids.get(label) if isinstance(label, str) else None
        if found is None:
            self.unknown += 1
        return found


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _cell(
    col: _Column,
    row: ExportRow,
    data: dict[str, Any],
    value: dict[str, Any],
    info: dict[str, Any],
    tally: _Tally,
) -> Any:
    """One column's cell of one example."""
    control = col.control
    if control is None:
        if col.name == "id":
            return _as_text(row.get("external_id"))
        if col.name == "annotator":
            return _as_text(info.get("annotator"))
        return _as_text(data.get(col.key))
    if col.name in ("tokens", "ner_tags"):
        text = data.get(control.source)
        if not isinstance(text, str):
            return None
        if col.name == "tokens":
            return text.split()
        if control.name not in value:
            return None
        # Labels outside the schema have no tag: the spans column already counted them.
        known = [s for s in value[control.name] or [] if s.get("label") in control.class_set]
        tagged = tag_spans(text, known)
        tally.report.add(tagged.report)
        return [col.ids[t] for t in encode_tags(len(tagged.offsets), tagged.entities)]
    answer = value.get(control.name)
    if control.type == "choices":
        if answer is None:
            return -1
        found = tally.index(col, answer)
        return -1 if found is None else found
    if control.type == "multi_choices":
        if answer is None:
            return None
        ids = [tally.index(col, a) for a in answer]
        return [i for i in ids if i is not None]
    if control.type == "spans":
        if answer is None:
            return None
        spans = []
        for span in answer:
            label = tally.index(col, span.get("label"))
            if label is not None:
                spans.append({"start": span.get("start"), "end": span.get("end"), "label": label})
        return spans
    if control.type == "rating":
        return answer if type(answer) is int else None
    return _as_text(answer)


def _ids(names: list[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


@dataclass(frozen=True)
class HuggingFaceExporter:
    name: str = "huggingface"
    target: Literal["file", "folder"] = "folder"
    description: str = "Hugging Face dataset folder: Parquet with ClassLabel features and a dataset card"
    #: Rows per Parquet row group: the most this exporter holds in memory at once.
    batch_size: int = 1000

    def columns(self, ctx: ExportContext) -> list[_Column]:
        """The dataset's columns for a schema, in order."""
        controls = [c for c in ctx.schema.controls if c.type in _SUPPORTED]
        cols = [_Column("id", _value("string"))]
        if ctx.options.labels == "annotations":
            cols.append(_Column("annotator", _value("string")))
        for source in dict.fromkeys(c.source for c in controls):
            name = source if source not in ("id", "annotator") else f"{source}_data"
            cols.append(_Column(name, _value("string"), key=source))
        taken = {c.name for c in cols} | {"tokens", "ner_tags"}
        for control in controls:
            name = control.name if control.name not in taken else f"{control.name}_label"
            if name in taken:
                raise ValueError(f"control {control.name!r} clashes with column {name!r} of the dataset")
            taken.add(name)
            if control.type == "choices":
                feature = _class_label(control.classes)
            elif control.type == "multi_choices":
                feature = _list(_class_label(control.classes))
            elif control.type == "spans":
                span = {
                    "start": _value("int32"),
                    "end": _value("int32"),
                    "label": _class_label(control.classes),
                }
                feature = _list(span)
            elif control.type == "rating":
                feature = _value("int64")
            else:
                feature = _value("string")
            classes = getattr(control, "classes", None)
            ids = _ids(classes) if classes is not None else {}
            cols.append(_Column(name, feature, control, ids=ids))
        spans = [c for c in controls if c.type == "spans"]
        if spans:
            tags = tag_names(spans[0].classes)
            cols.append(_Column("tokens", _list(_value("string")), spans[0]))
            cols.append(_Column("ner_tags", _list(_class_label(tags)), spans[0], ids=_ids(tags)))
        return cols

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        cols = self.columns(ctx)
        if not any(c.control is not None for c in cols):
            raise ValueError(
                f"the huggingface export needs a {', '.join(_SUPPORTED)} control in the schema; "
                "export other control types as jsonl"
            )
        features = {c.name: c.feature for c in cols}
        schema = features_to_arrow(features)
        skipped = [c.name for c in ctx.schema.controls if c.type not in _SUPPORTED]

        tally = _Tally()
        path = out / DATA_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        batch: dict[str, list[Any]] = {c.name: [] for c in cols}
        items = examples = 0
        try:
            with pq.ParquetWriter(partial, schema) as writer:
                for row in rows:
                    data = row.get("data") or {}
                    made = 0
                    for value, info in labelled_values(row, ctx):
                        made += 1
                        for col in cols:
                            batch[col.name].append(_cell(col, row, data, value, info, tally))
                        if len(batch["id"]) >= self.batch_size:
                            self._flush(writer, batch, schema, tally)
                    if made:
                        items += 1
                        examples += made
                    else:
                        tally.report.skipped_items += 1
                self._flush(writer, batch, schema, tally)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, path)
        self._write_card(out, features, examples, tally.nbytes, ctx)
        extra = []
        if tally.unknown:
            extra.append(f"{tally.unknown} label(s) not among the schema's classes were left out")
        if skipped:
            extra.append(f"controls {', '.join(skipped)} have no Hugging Face column type and were left out")
        warn_summary(tally.report, self.name, extra)
        return items

    @staticmethod
    def _flush(
        writer: pq.ParquetWriter, batch: dict[str, list[Any]], schema: pa.Schema, tally: _Tally
    ) -> None:
        if not batch["id"]:
            return
        table = pa.Table.from_pydict(batch, schema=schema)
        tally.nbytes += table.nbytes
        writer.write_table(table)
        for values in batch.values():
            values.clear()

    @staticmethod
    def _write_card(
        out: Path, features: dict[str, Feature], examples: int, nbytes: int, ctx: ExportContext
    ) -> None:
        header = {
            "dataset_info": {
                "features": features_to_yaml(features),
                "splits": [{"name": "train", "num_bytes": nbytes, "num_examples": examples}],
            },
            "configs": [
                {"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}
            ],
        }
        body = (
            f"# {ctx.project_name}\n\nExported from labelmill ({ctx.options.labels}). "
            'Load it with `datasets.load_dataset("parquet", data_files="data/*.parquet")` '
            "or `datasets.load_dataset(<this folder>)`.\n"
        )
        text = "---\n" + yaml.safe_dump(header, sort_keys=False, allow_unicode=True) + "---\n\n" + body
        (out / "README.md").write_text(text, encoding="utf-8")


HF_EXPORTER = HuggingFaceExporter()
