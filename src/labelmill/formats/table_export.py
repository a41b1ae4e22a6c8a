"""CSV and Parquet exports: one flat row per item (consensus) or per annotation (annotations).

Tables are what analysts and dataframe-based training code read, so each control becomes one column
holding its label and each item data field one ``data.<field>`` column. Both writers stream: the
columns are fixed from the schema and the first batch of rows (a header, or a Parquet schema, must
be known before the first row is written), then every later batch is written with those columns.

CSV cells are text, so lists and objects are JSON. Parquet keeps labels and data in native types
(lists, structs, numbers) wherever every value of a column has one shape, and falls back to JSON
strings where they do not; the label columns' types come from the schema, so they never depend on
which items happened to be first.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from labelmill.formats.exporting import ExportContext, ExportRow, labelled_values
from labelmill.schema import LabelSchema

__all__ = [
    "CSV_EXPORTER",
    "PARQUET_EXPORTER",
    "CsvExporter",
    "ParquetExporter",
    "json_text",
    "label_arrow_type",
]

#: Items looked at before the columns are fixed (which data fields get a column).
FIRST_BATCH = 2048
#: Table rows turned into Arrow arrays at a time; the first such chunk fixes the Parquet types.
PARQUET_CHUNK = 4096
#: Table rows per Parquet row group (held as Arrow arrays until written): bounds memory whatever the
#: export's size while keeping row groups large enough for fast scans.
PARQUET_ROW_GROUP = 65536

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# One encoder each, reused: json.dumps with options builds a new encoder per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_ASCII_ENCODER = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def json_text(value: Any) -> str:
    """Compact JSON, unescaped where UTF-8 can hold it; NaN and infinities raise ``ValueError``.

    A lone surrogate (legal in JSON, so importable) cannot be written as UTF-8; escaping that one
    value keeps the file valid and the value still round-trips.
    """
    text = _ENCODER.encode(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _ASCII_ENCODER.encode(value)
    return text


# ---------------------------------------------------------------------------------------------------
# Which rows an item becomes


_NO_LABEL: tuple[dict[str, Any], dict[str, Any]] = ({}, {})


def table_rows(row: ExportRow, ctx: ExportContext) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The (value, info) pairs one item becomes.

    In consensus mode an item nobody has labelled yet still gets its row (empty labels), so the
    table lists every item; an auto-labelled item left out by ``include_auto=False`` gets none.
    """
    pairs = list(labelled_values(row, ctx))
    if pairs or ctx.options.labels == "annotations":
        return pairs
    if row.get("consensus"):  # present but excluded (an auto-label with include_auto off)
        return []
    return [_NO_LABEL]


# ---------------------------------------------------------------------------------------------------
# Columns


@dataclass(frozen=True)
class _Column:
    name: str
    #: Where the cell comes from: the row's external id, a data field, a control's label, the
    #: consensus/annotation info, or the item's predictions.
    kind: Literal["external_id", "data", "label", "info", "predictions"]
    key: str = ""


def _columns(schema: LabelSchema, ctx: ExportContext, data_fields: list[str]) -> list[_Column]:
    info_keys = ["confidence", "method", "auto"] if ctx.options.labels == "consensus" else ["annotator"]
    fixed = {"external_id", "predictions", *info_keys}
    columns = [_Column("external_id", "external_id")]
    columns += [_Column(f"data.{name}", "data", name) for name in data_fields]
    for control in schema.controls:
        # A control called "confidence" must not shadow the consensus confidence.
        name = f"label.{control.name}" if control.name in fixed else control.name
        columns.append(_Column(name, "label", control.name))
    columns += [_Column(key, "info", key) for key in info_keys]
    if ctx.options.include_predictions:
        columns.append(_Column("predictions", "predictions"))
    return columns


def _data_fields(schema: LabelSchema, rows: list[ExportRow]) -> list[str]:
    """Schema sources first (they are what was labelled), then other fields in order of appearance."""
    fields: dict[str, None] = {control.source: None for control in schema.controls}
    for row in rows:
        data = row.get("data")
        if isinstance(data, dict):
            fields.update(dict.fromkeys(data))
    return list(fields)


class _CellMaker:
    """The raw (not yet encoded) cells of the table rows an item becomes, in ``columns`` order
    (:func:`_columns` fixes it: external id, data fields, labels, info, predictions)."""

    def __init__(self, ctx: ExportContext, columns: list[_Column]) -> None:
        self.ctx = ctx
        self.data_keys = [c.key for c in columns if c.kind == "data"]
        self.label_keys = [c.key for c in columns if c.kind == "label"]
        self.info_keys = [c.key for c in columns if c.kind == "info"]
        self.with_predictions = columns[-1].kind == "predictions"

    def __call__(self, row: ExportRow) -> list[list[Any]]:
        data = row.get("data")
        if not isinstance(data, dict):
            data = {}
        external_id = row.get("external_id")
        head = [None if external_id is None else str(external_id), *[data.get(k) for k in self.data_keys]]
        out = []
        for value, info in table_rows(row, self.ctx):
            cells = head + [value.get(k) for k in self.label_keys] + [info.get(k) for k in self.info_keys]
            if self.with_predictions:
                cells.append(row.get("predictions") or [])
            out.append(cells)
        return out


class _UnseenFields:
    """Data fields that first appear after the columns were fixed: reported once, at the end."""

    def __init__(self, known: Iterable[str]) -> None:
        self.known = frozenset(known)
        self.unseen: dict[str, None] = {}

    def check(self, row: ExportRow) -> None:
        data = row.get("data")
        if isinstance(data, dict) and not self.known.issuperset(data):
            self.unseen.update(dict.fromkeys(k for k in data if k not in self.known))

    def warn(self, fmt: str) -> None:
        if self.unseen:
            names = ", ".join(sorted(self.unseen)[:10])
            warnings.warn(
                f"{fmt} export: data fields first seen after the first {FIRST_BATCH} items were left out "
                f"({names}); the JSONL export keeps every field",
                stacklevel=3,
            )


def _first_batch(rows: Iterable[ExportRow]) -> tuple[list[ExportRow], Iterator[ExportRow]]:
    it = iter(rows)
    head: list[ExportRow] = []
    for row in it:
        head.append(row)
        if len(head) >= FIRST_BATCH:
            break
    return head, it


def _prepare(out: Path) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


# ---------------------------------------------------------------------------------------------------
# CSV


def _csv_cell(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is float or kind is int:
        return value
    if value is None:
        return ""
    if kind is bool:
        return "true" if value else "false"
    return json_text(value)


class CsvExporter:
    """``--format csv``: a header row, then one row per item or annotation."""

    name = "csv"
    target: Literal["file", "folder"] = "file"
    description = "CSV table: one row per item (or per annotation), a column per data field and control"

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        head, rest = _first_batch(rows)
        fields = _data_fields(ctx.schema, head)
        columns = _columns(ctx.schema, ctx, fields)
        unseen = _UnseenFields(fields)
        cells_of = _CellMaker(ctx, columns)
        items = 0
        # backslashreplace: a lone surrogate in a text field must not abort a long export.
        with _prepare(out).open("w", encoding="utf-8", newline="", errors="backslashreplace") as fh:
            writer = csv.writer(fh)
            writer.writerow([c.name for c in columns])
            for source in (head, rest):
                for row in source:
                    unseen.check(row)
                    table = cells_of(row)
                    writer.writerows([[_csv_cell(v) for v in cells] for cells in table])
                    items += bool(table)
        unseen.warn("CSV")
        return items


# ---------------------------------------------------------------------------------------------------
# Parquet types


def label_arrow_type(control_type: str) -> pa.DataType:
    """The native Arrow type of a control's value (DESIGN "Annotation values")."""
    string, double, int64 = pa.string(), pa.float64(), pa.int64()
    if control_type in ("choices", "transcript", "text"):
        return string
    if control_type in ("multi_choices", "ranking"):
        return pa.list_(string)
    if control_type == "rating":
        return int64
    if control_type == "pairwise":
        return pa.struct([("choice", string), ("rationale", string)])
    entry: dict[str, list[tuple[str, pa.DataType]]] = {
        "spans": [("id", string), ("start", int64), ("end", int64), ("label", string), ("text", string)],
        "relations": [("from", string), ("to", string), ("label", string)],
        "boxes": [("x", double), ("y", double), ("w", double), ("h", double), ("label", string)],
        "polygons": [("points", pa.list_(pa.list_(double))), ("label", string)],
        "keypoints": [("x", double), ("y", double), ("label", string)],
        "segments": [("start", double), ("end", double), ("label", string), ("text", string)],
        "tracks": [
            ("id", string),
            ("label", string),
            (
                "keyframes",
                pa.list_(
                    pa.struct([("frame", int64), ("x", double), ("y", double), ("w", double), ("h", double)])
                ),
            ),
        ],
    }
    if control_type not in entry:
        raise ValueError(f"no Arrow type for control type {control_type!r}")
    return pa.list_(pa.struct(entry[control_type]))


def _infer(values: list[Any]) -> pa.DataType | None:
    """One native type every value fits, or None when the values differ in shape (-> JSON)."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    kinds = {type(v) for v in present}
    if kinds == {bool}:
        return pa.bool_()
    if kinds == {int}:
        return pa.int64() if all(_INT64_MIN <= v <= _INT64_MAX for v in present) else None
    if kinds <= {int, float}:
        return pa.float64() if all(math.isfinite(v) for v in present) else None
    if kinds == {str}:
        return pa.string()
    if kinds == {list}:
        inner = _infer([x for v in present for x in v])
        return None if inner is None else pa.list_(inner)
    if kinds == {dict}:
        keys: dict[str, None] = {}
        for v in present:
            keys.update(dict.fromkeys(v))
        if not keys or not all(isinstance(k, str) for k in keys):
            return None
        fields = []
        for key in keys:
            field_type = _infer([v.get(key) for v in present])
            if field_type is None:
                return None
            fields.append((key, field_type))
        return pa.struct(fields)
    return None


def _checker(t: pa.DataType) -> Callable[[Any], bool]:
    """A test of whether a value converts to ``t`` without loss: pyarrow itself truncates 1.5 to an
    int64 1 and drops struct keys it has no field for. Compiled once per column, it costs about
    one call per value."""
    if pa.types.is_string(t):
        return lambda v: v is None or type(v) is str
    if pa.types.is_int64(t):
        return lambda v: v is None or (type(v) is int and _INT64_MIN <= v <= _INT64_MAX)
    if pa.types.is_float64(t):
        return lambda v: v is None or type(v) is float or type(v) is int
    if pa.types.is_boolean(t):
        return lambda v: v is None or type(v) is bool
    if pa.types.is_list(t):
        inner = _checker(t.value_type)
        return lambda v: v is None or (type(v) is list and all(map(inner, v)))
    if pa.types.is_struct(t):
        fields = {t.field(i).name: _checker(t.field(i).type) for i in range(t.num_fields)}

        def struct_fits(v: Any) -> bool:
            if v is None:
                return True
            if type(v) is not dict:
                return False
            for key, x in v.items():
                check = fields.get(key)
                if check is None or not check(x):
                    return False
            return True

        return struct_fits
    return lambda v: v is None


@dataclass
class _ArrowColumn:
    column: _Column
    type: pa.DataType
    #: Values are written as JSON text (their shapes differ, or they are predictions).
    as_json: bool

    def __post_init__(self) -> None:
        self.fits = _checker(self.type)


def _plan(columns: list[_Column], first: list[list[Any]], ctx: ExportContext) -> list[_ArrowColumn]:
    types = {c.name: c.type for c in ctx.schema.controls}
    plan = []
    for i, column in enumerate(columns):
        values = [cells[i] for cells in first]
        if column.kind in ("external_id", "predictions"):
            plan.append(_ArrowColumn(column, pa.string(), column.kind == "predictions"))
            continue
        if column.kind == "info":
            info_type = {"confidence": pa.float64(), "auto": pa.bool_()}.get(column.key, pa.string())
            plan.append(_ArrowColumn(column, info_type, False))
            continue
        if column.kind == "label":
            t: pa.DataType | None = label_arrow_type(types[column.key])
        elif any(v is not None for v in values):
            t = _infer(values)
        else:
            t = pa.string()  # nothing to go by: text, with any later non-text value as JSON
        if t is None or not all(map(_checker(t), values)):
            plan.append(_ArrowColumn(column, pa.string(), True))
        else:
            plan.append(_ArrowColumn(column, t, False))
    return plan


def _arrow_array(col: _ArrowColumn, values: list[Any], first_id: Any) -> pa.Array:
    if col.as_json:
        return pa.array([None if v is None else json_text(v) for v in values], pa.string())
    if not all(map(col.fits, values)):
        if pa.types.is_string(col.type):
            values = [v if v is None or type(v) is str else json_text(v) for v in values]
        else:
            bad = next(v for v in values if not col.fits(v))
            raise ValueError(
                f"Parquet export: column {col.column.name!r} was typed {col.type} from the first "
                f"{PARQUET_CHUNK} rows, but the rows from item {first_id!r} on hold "
                f"{json_text(bad)[:80]}; export as CSV or JSONL, or make the field's values uniform"
            )
    return pa.array(values, col.type)


class _ParquetSink:
    """Rows in, row groups out: Python cells are turned into Arrow arrays every ``PARQUET_CHUNK``
    rows (Arrow holds them in a fraction of the memory), and a row group is written every
    ``PARQUET_ROW_GROUP`` rows. The column types are fixed by the first chunk."""

    def __init__(self, out: Path, columns: list[_Column], ctx: ExportContext) -> None:
        self.out = out
        self.columns = columns
        self.ctx = ctx
        self.cells: list[list[Any]] = []
        self.first_id: Any = None
        self.chunks: list[pa.RecordBatch] = []
        self.pending = 0
        self.plan: list[_ArrowColumn] | None = None
        self.schema: pa.Schema | None = None
        self.writer: pq.ParquetWriter | None = None

    def add(self, external_id: Any, table: list[list[Any]]) -> None:
        if not self.cells:
            self.first_id = external_id
        self.cells.extend(table)
        if len(self.cells) >= PARQUET_CHUNK:
            self._convert()

    def _convert(self) -> None:
        if self.plan is None:
            self.plan = _plan(self.columns, self.cells, self.ctx)
            self.schema = pa.schema(
                [pa.field(c.column.name, c.type) for c in self.plan],
                metadata={"labelmill.schema": json_text(self.ctx.schema.model_dump(mode="json"))},
            )
            self.writer = pq.ParquetWriter(self.out, self.schema)
        by_column = list(zip(*self.cells, strict=True)) if self.cells else [() for _ in self.plan]
        arrays = [
            _arrow_array(col, list(values), self.first_id)
            for col, values in zip(self.plan, by_column, strict=True)
        ]
        self.chunks.append(pa.RecordBatch.from_arrays(arrays, schema=self.schema))
        self.pending += len(self.cells)
        self.cells = []
        if self.pending >= PARQUET_ROW_GROUP:
            self._write()

    def _write(self) -> None:
        assert self.writer is not None
        if self.chunks:
            table = pa.Table.from_batches(self.chunks, schema=self.schema)
            self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.chunks, self.pending = [], 0

    def close(self) -> None:
        """Write what is left (an empty export still gets a file with the columns)."""
        if self.cells or self.plan is None:
            self._convert()
        self._write()
        assert self.writer is not None
        self.writer.close()

    def abort(self) -> None:
        """Leave no half-written file behind that could pass for a whole export."""
        if self.writer is not None:
            self.writer.close()
        self.out.unlink(missing_ok=True)


class ParquetExporter:
    """``--format parquet``: the CSV table in native Arrow types, written row group by row group."""

    name = "parquet"
    target: Literal["file", "folder"] = "file"
    description = "Parquet table: one row per item (or per annotation), native list/struct label columns"

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        head, rest = _first_batch(rows)
        fields = _data_fields(ctx.schema, head)
        columns = _columns(ctx.schema, ctx, fields)
        unseen = _UnseenFields(fields)
        cells_of = _CellMaker(ctx, columns)
        sink = _ParquetSink(_prepare(out), columns, ctx)
        items = 0
        try:
            for source in (head, rest):
                for row in source:
                    unseen.check(row)
                    table = cells_of(row)
                    if table:
                        sink.add(row.get("external_id"), table)
                        items += 1
            sink.close()
        except BaseException:
            sink.abort()
            raise
        unseen.warn("Parquet")
        return items


CSV_EXPORTER = CsvExporter()
PARQUET_EXPORTER = ParquetExporter()
