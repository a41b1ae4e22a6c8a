"""CSV and Parquet import: columns to data, reserved columns, and bad tables."""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import string
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.formats import FormatError, read_any, read_csv, read_parquet


def test_csv_columns_ids_meta_and_multiline(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text('id,text,meta.batch,empty\n1,"hello, ""world""",b1,\n2,"two\nlines",b2,x\n', "utf-8")
    records = list(read_csv(path))
    assert [(r.line, r.external_id, r.data, r.meta) for r in records] == [
        (2, "1", {"text": 'hello, "world"', "empty": ""}, {"batch": "b1"}),
        (3, "2", {"text": "two\nlines", "empty": "x"}, {"batch": "b2"}),
    ]


def test_csv_external_id_wins_over_id_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_bytes("\ufeffexternal_id,id,text\ne1,5,ü\n".encode())
    (record,) = read_csv(path)
    assert record.external_id == "e1"
    assert record.data == {"id": "5", "text": "ü"}


def test_tsv_by_extension(tmp_path: Path) -> None:
    path = tmp_path / "items.tsv"
    path.write_text("text\tlabel\na,b\tc\n", "utf-8")
    (record,) = read_any(path)
    assert record.data == {"text": "a,b", "label": "c"}


def test_csv_wrong_column_count_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text('text,label\n"multi\nline",a\nonly-one\n', "utf-8")
    with pytest.raises(FormatError, match=r"^bad.csv:4: expected 2 columns as in the header, found 1$"):
        list(read_csv(path))


def test_csv_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("text\nok\ncafé\n".encode("latin-1"))
    with pytest.raises(FormatError, match=r"^latin1.csv:3: not valid UTF-8 .*save the file as UTF-8"):
        list(read_csv(path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "e.csv:1: empty file"),
        ("a,a\n1,2\n", "e.csv:1: a: column name appears twice"),
        ("a,\n1,2\n", "e.csv:1: column 2 of the header has no name"),
        ('a\n"x"y\n', "e.csv:2: malformed CSV"),
    ],
)
def test_csv_bad_headers_and_quoting(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "e.csv"
    path.write_text(text, "utf-8")
    with pytest.raises(FormatError) as err:
        list(read_csv(path))
    assert str(err.value).startswith(expected)


csv_text = st.text(
    alphabet=st.characters(codec="utf-8", blacklist_characters="\x00"), max_size=30
) | st.sampled_from(['"', ",", "\n", "\r\n", '""', " ", "a,b\nc", "\u00e9\u4e2d\U0001f600"])


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(csv_text, csv_text), max_size=8))
def test_csv_round_trip(rows: list[tuple[str, str]]) -> None:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["text", "note"])
    writer.writerows(rows)
    records = list(read_csv(io.BytesIO(buf.getvalue().encode("utf-8")), "h.csv"))
    assert [(r.data["text"], r.data["note"]) for r in records] == rows


def test_parquet_nested_and_temporal_columns(tmp_path: Path) -> None:
    table = pa.table(
        {
            "id": pa.array([10, 11], pa.int64()),
            "text": ["a", None],
            "tags": pa.array([["x", "y"], []], pa.list_(pa.string())),
            "info": pa.array([{"w": 1, "h": 2.5}, {"w": None, "h": float("nan")}]),
            "attrs": pa.array([[("k", 1)], []], pa.map_(pa.string(), pa.int32())),
            "at": pa.array([dt.datetime(2024, 5, 1, 12, 30), None], pa.timestamp("us")),
            "day": pa.array([dt.date(2024, 5, 1), None], pa.date32()),
            "price": pa.array([decimal.Decimal("1.10"), None], pa.decimal128(5, 2)),
            "blob": pa.array([b"\x00\x01", None], pa.binary()),
            "meta.batch": ["b1", "b2"],
        }
    )
    path = tmp_path / "items.parquet"
    pq.write_table(table, path, row_group_size=1)
    first, second = read_parquet(path, batch_size=1)
    assert (first.line, first.external_id, second.line, second.external_id) == (1, "10", 2, "11")
    assert first.data == {
        "text": "a",
        "tags": ["x", "y"],
        "info": {"w": 1, "h": 2.5},
        "attrs": {"k": 1},
        "at": "2024-05-01T12:30:00",
        "day": "2024-05-01",
        "price": "1.10",
        "blob": "AAE=",
    }
    assert first.meta == {"batch": "b1"}
    assert second.data["info"] == {"w": None, "h": None}
    assert second.data["tags"] == []
    assert second.data["text"] is None


def test_parquet_plain_columns_and_detection(tmp_path: Path) -> None:
    path = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": list(string.ascii_lowercase)}), path)
    records = list(read_any(path))
    assert [r.data["text"] for r in records] == list(string.ascii_lowercase)
    assert records[-1].line == 26


def test_parquet_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_bytes(b"not parquet at all")
    with pytest.raises(FormatError, match=r"^fake.parquet:1: not a readable Parquet file"):
        list(read_parquet(path))
