"""JSONL import: flat and structured lines, and errors that name file, line and field."""

from __future__ import annotations

import gzip
import io
import json
import pickle
from pathlib import Path

import pytest

from labelmill.formats import FormatError, ImportRecord, detect_format, read_any, read_jsonl


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def test_flat_and_structured_lines(tmp_path: Path) -> None:
    lines = [
        {"text": "hello", "external_id": 7},
        {"text": "flat", "data": "a plain field called data"},
        {
            "data": {"text": "hi"},
            "external_id": "a1",
            "predictions": [{"value": {"label": "pos"}, "score": 1, "model_version": "v1"}],
            "gold": {"label": "neg"},
            "meta": {"batch": 3},
        },
    ]
    path = write(tmp_path, "ok.jsonl", "\n".join(json.dumps(x) for x in lines) + "\n\n  \n")
    records = list(read_jsonl(path))
    assert [r.line for r in records] == [1, 2, 3]
    assert records[0] == ImportRecord("ok.jsonl", 1, {"text": "hello"}, "7")
    assert records[1].data == {"text": "flat", "data": "a plain field called data"}
    assert records[1].external_id is None
    third = records[2]
    assert third.data == {"text": "hi"}
    assert third.external_id == "a1"
    assert third.predictions == [{"value": {"label": "pos"}, "score": 1.0, "model_version": "v1"}]
    assert isinstance(third.predictions[0]["score"], float)
    assert third.gold == {"label": "neg"}
    assert third.meta == {"batch": 3}


def test_prediction_defaults_and_annotations_and_consensus(tmp_path: Path) -> None:
    line = {
        "data": {"text": "x"},
        "predictions": [{"value": {"l": "a"}}],
        "annotations": [{"annotator": 5, "value": {"l": "a"}, "lead_seconds": 3, "status": "submitted"}],
        "consensus": {"value": {"l": "a"}, "confidence": 0.5, "method": "mv"},
    }
    (record,) = read_jsonl(write(tmp_path, "x.jsonl", json.dumps(line)))
    assert record.predictions == [{"value": {"l": "a"}, "score": None, "model_version": ""}]
    assert record.annotations == [
        {"annotator": "5", "value": {"l": "a"}, "lead_seconds": 3.0, "status": "submitted"}
    ]
    assert record.consensus == {"value": {"l": "a"}, "confidence": 0.5, "method": "mv", "auto": False}


def test_bom_crlf_stream_and_gzip(tmp_path: Path) -> None:
    raw = b'\xef\xbb\xbf{"text": "a"}\r\n{"text": "b"}'
    assert [r.data["text"] for r in read_jsonl(io.BytesIO(raw), "up.jsonl")] == ["a", "b"]
    assert [r.data["text"] for r in read_jsonl(io.StringIO(raw.decode("utf-8-sig")), "t")] == ["a", "b"]
    gz = tmp_path / "data.jsonl.gz"
    gz.write_bytes(gzip.compress(raw))
    assert [r.data["text"] for r in read_any(gz)] == ["a", "b"]


def test_broken_json_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.jsonl", '{"text": "a"}\n{"text": "b"}\n{"text": "c",, }\n')
    with pytest.raises(FormatError) as err:
        list(read_jsonl(path))
    assert str(err.value).startswith("bad.jsonl:3: invalid JSON")
    assert "column 14" in str(err.value)  # the second comma
    assert (err.value.source, err.value.line, err.value.field) == ("bad.jsonl", 3, "")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("[1, 2]", "x.jsonl:1: each line must be a JSON object, not an array"),
        ('{"a": NaN}', "x.jsonl:1: invalid JSON: NaN is not valid JSON"),
        ('{"data": {}, "extra": 1}', "x.jsonl:1: extra: unknown key"),
        ('{"data": "s", "predictions": []}', "x.jsonl:1: data: must be an object, not a string"),
        ('{"data": {}, "external_id": 1.5}', "x.jsonl:1: external_id: must be a string or an integer"),
        ('{"data": {}, "external_id": true}', "x.jsonl:1: external_id: must be a string or an integer"),
        ('{"data": {}, "predictions": {}}', "x.jsonl:1: predictions: must be an array, not an object"),
        ('{"data": {}, "predictions": [{"score": 1}]}', "x.jsonl:1: predictions[0]: missing 'value'"),
        ('{"data": {}, "predictions": [{"value": 1}]}', "x.jsonl:1: predictions[0].value: must be an object"),
        (
            '{"data": {}, "predictions": [{"value": {}}, {"value": {}, "score": "high"}]}',
            "x.jsonl:1: predictions[1].score: must be a number, not a string",
        ),
        (
            '{"data": {}, "predictions": [{"value": {}, "model_version": 2}]}',
            "x.jsonl:1: predictions[0].model_version: must be a string",
        ),
        (
            '{"data": {}, "predictions": [{"value": {}, "scroe": 1}]}',
            "x.jsonl:1: predictions[0].scroe: unknown",
        ),
        ('{"data": {}, "gold": "pos"}', "x.jsonl:1: gold: must be an object, not a string"),
        ('{"data": {}, "meta": []}', "x.jsonl:1: meta: must be an object, not an array"),
        ('{"data": {}, "annotations": {}}', "x.jsonl:1: annotations: must be an array"),
        ('{"data": {}, "annotations": [{"value": {}}]}', "x.jsonl:1: annotations[0].annotator: missing"),
        (
            '{"data": {}, "annotations": [{"annotator": "a", "value": {}, "lead_seconds": "1"}]}',
            "x.jsonl:1: annotations[0].lead_seconds: must be a number",
        ),
        (
            '{"data": {}, "consensus": {"value": {}, "auto": 1}}',
            "x.jsonl:1: consensus.auto: must be true or false",
        ),
        ('{"data": {}, "consensus": {"confidence": 1}}', "x.jsonl:1: consensus: missing 'value'"),
    ],
)
def test_wrong_types_name_the_field(tmp_path: Path, line: str, expected: str) -> None:
    with pytest.raises(FormatError) as err:
        list(read_jsonl(write(tmp_path, "x.jsonl", line + "\n")))
    assert str(err.value).startswith(expected)


def test_invalid_utf8_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    with pytest.raises(FormatError, match=r"^latin.jsonl:2: not valid UTF-8"):
        list(read_jsonl(path))


def test_reading_is_lazy(tmp_path: Path) -> None:
    # A generator: the first record arrives before the broken last line is read.
    path = write(tmp_path, "lazy.jsonl", '{"a": 1}\n{broken\n')
    records = read_jsonl(path)
    assert next(records).data == {"a": 1}
    with pytest.raises(FormatError):
        next(records)


def test_format_error_message_and_pickle() -> None:
    err = FormatError("f.csv", 4, "predictions[0].score", "must be a number")
    assert str(err) == "f.csv:4: predictions[0].score: must be a number"
    assert str(FormatError("f.csv", 4, "", "broken")) == "f.csv:4: broken"
    again = pickle.loads(pickle.dumps(err))
    assert (again.source, again.line, again.field, again.reason, str(again)) == (
        "f.csv",
        4,
        "predictions[0].score",
        "must be a number",
        str(err),
    )


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.NDJSON", "jsonl"),
        ("a.jsonl.gz", "jsonl"),
        ("a.csv", "csv"),
        ("a.tsv", "tsv"),
        ("a.parquet", "parquet"),
        ("export.json", "labelstudio"),
    ],
)
def test_detect_format(tmp_path: Path, name: str, fmt: str) -> None:
    assert detect_format(tmp_path / name) == fmt


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match=r"^notes.txt:1: cannot tell the format"):
        detect_format(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="unknown import format 'xml'"):
        read_any(tmp_path / "notes.txt", "xml")
