"""Reading tables: CSV (and TSV) and Parquet, one row per item.

Every column becomes a data field except those the column convention or options give another role
(:mod:`labelmill.formats.columns`: ``external_id``/``id``, ``meta.KEY``, ``gold.CONTROL``,
``annotation.WHO.CONTROL``). Both readers stream: CSV row by row, Parquet one record batch at a time.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from labelmill.formats._io import SourceLike, display_name, open_binary, utf8_error_reason
from labelmill.formats.columns import ColumnMap, ColumnPlan
from labelmill.formats.records import FormatError, ImportRecord

__all__ = ["read_csv", "read_parquet", "to_json_value"]

#: Long LLM outputs exceed the csv module's 128 KiB default field limit; this is generous but still
#: stops a runaway unterminated quote from swallowing a whole multi-gigabyte file into one field.
CSV_FIELD_LIMIT = 64 * 1024 * 1024


def _decoded_lines(fp: IO[bytes], source: str, counter: list[int]) -> Iterator[str]:
    """Decode line by line so a bad byte is reported at its own line, not at a buffer boundary."""
    for n, raw in enumerate(fp, 1):
        counter[0] = n
        if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(source, n, "", utf8_error_reason(exc)) from None


def read_csv(
    src: SourceLike,
    source_name: str | None = None,
    *,
    delimiter: str = ",",
    columns: ColumnMap | None = None,
) -> Iterator[ImportRecord]:
    """Stream records from a UTF-8 CSV with a header row; every value is a string (empty kept).

    ``line`` is the physical line where the row starts, which differs from the row number when
    quoted fields span lines; that is the number a user's editor shows.
    """
    source = display_name(src, source_name)
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    with open_binary(src) as fp:
        counter = [0]
        reader = csv.reader(_decoded_lines(fp, source, counter), delimiter=delimiter, strict=True)
        column_map = columns or ColumnMap()
        plan: ColumnPlan | None = None
        start = 1
        try:
            for row in reader:
                if row:
                    if plan is None:
                        plan = column_map.plan(_header(row, source, start), source, start)
                    elif len(row) != len(plan.names):
                        raise FormatError(
                            source,
                            start,
                            "",
                            f"expected {len(plan.names)} columns as in the header, found {len(row)}",
                        )
                    else:
                        yield plan.record(row, source, start)
                start = counter[0] + 1
        except csv.Error as exc:
            raise FormatError(source, start, "", f"malformed CSV: {exc}") from None
    if plan is None:
        raise FormatError(source, 1, "", "empty file: expected a header row")


def _header(names: list[str], source: str, line: int) -> list[str]:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if not name:
            raise FormatError(source, line, "", f"column {i + 1} of the header has no name")
        if name in seen:
            raise FormatError(source, line, name, "column name appears twice in the header")
        seen.add(name)
    return names


def to_json_value(value: Any) -> Any:
    """Make a value read from Parquet storable as JSON.

    Timestamps and dates become ISO 8601 strings, durations seconds, decimals exact strings, bytes
    base64, NaN and infinities null (JSON has no such numbers), and maps objects where the keys allow.
    """
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if value and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value):
            return {k: to_json_value(v) for k, v in value}  # a Parquet map column
        return [to_json_value(v) for v in value]
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if hasattr(value, "item"):  # numpy scalars from extension types
        return to_json_value(value.item())
    return str(value)


def _needs_conversion(types: Iterable[Any]) -> bool:
    import pyarrow as pa

    simple = (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer, pa.types.is_boolean)
    return not all(any(check(t) for check in simple) for t in types)


def read_parquet(
    path: str | os.PathLike[str],
    source_name: str | None = None,
    *,
    batch_size: int = 8192,
    columns: ColumnMap | None = None,
) -> Iterator[ImportRecord]:
    """Stream records from a Parquet file, one record batch in memory at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = display_name(path, source_name)
    try:
        pf = pq.ParquetFile(Path(path))
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(source, 1, "", f"not a readable Parquet file: {exc}") from None
    schema = pf.schema_arrow
    plan = (columns or ColumnMap()).plan(_header(list(schema.names), source, 1), source, 1)
    convert = _needs_conversion(schema.types)
    row = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_size):
            names = batch.schema.names
            for values in zip(*(batch.column(i).to_pylist() for i in range(len(names))), strict=True):
                row += 1
                as_list = [to_json_value(v) for v in values] if convert else list(values)
                yield plan.record(as_list, source, row)
    except pa.ArrowException as exc:
        raise FormatError(source, row + 1, "", f"cannot read Parquet data: {exc}") from None
