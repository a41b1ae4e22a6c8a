"""JSONL export: the DESIGN line shape, and export -> import round trips."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.formats import (
    detect_format,
    export_annotation,
    export_consensus,
    export_prediction,
    export_row,
    read_jsonl,
    write_jsonl,
)


def test_export_row_shape() -> None:
    row = export_row(
        12,
        {"text": "héllo"},
        annotations=[export_annotation("ann", {"l": "a"}, lead_seconds=2)],
        predictions=[export_prediction({"l": "b"}, 0.5, "v1")],
        consensus=export_consensus({"l": "a"}, 0.9, "ds"),
    )
    assert list(row) == ["external_id", "data", "annotations", "predictions", "consensus"]
    full = export_row("x", {}, meta={"batch": 1}, gold={"l": "a"})
    assert (full["meta"], full["gold"]) == ({"batch": 1}, {"l": "a"})
    assert row == {
        "external_id": "12",
        "data": {"text": "héllo"},
        "annotations": [{"annotator": "ann", "value": {"l": "a"}, "lead_seconds": 2.0}],
        "predictions": [{"value": {"l": "b"}, "score": 0.5, "model_version": "v1"}],
        "consensus": {"value": {"l": "a"}, "confidence": 0.9, "method": "ds", "auto": False},
    }
    buf = io.StringIO()
    assert write_jsonl([row, export_row(None, {})], buf) == 2
    first, second = buf.getvalue().splitlines()
    assert first.startswith(
        '{"external_id":"12","data":{"text":"héllo"},"annotations":[{'
    )  # compact, unescaped
    assert json.loads(second) == {
        "external_id": None,
        "data": {},
        "annotations": [],
        "predictions": [],
        "consensus": None,
    }


def test_binary_stream_nan_and_lone_surrogate() -> None:
    buf = io.BytesIO()
    write_jsonl([export_row("a", {"t": "x\ud800y"})], buf)
    line = buf.getvalue()
    line.decode("utf-8")  # still valid UTF-8: the surrogate was escaped
    (record,) = read_jsonl(io.BytesIO(line), "s.jsonl")
    assert record.data == {"t": "x\ud800y"}
    with pytest.raises(ValueError):
        write_jsonl([export_row("a", {"x": float("nan")})], io.BytesIO())


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(codec="utf-8"), max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=6,
)
objects = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
ids = st.none() | st.text(max_size=10)
annotation_values = st.builds(
    lambda who, value, lead, status: export_annotation(who, value, lead_seconds=lead, status=status),
    st.text(min_size=1, max_size=8),
    objects,
    st.none() | st.floats(0, 1e6),
    st.none() | st.sampled_from(["submitted", "skipped"]),
)
prediction_values = st.builds(export_prediction, objects, st.none() | st.floats(0, 1), st.text(max_size=8))
consensus = st.none() | st.builds(
    export_consensus, objects, st.none() | st.floats(0, 1), st.sampled_from(["mv", "ds"]), st.booleans()
)
rows = st.builds(
    export_row,
    ids,
    objects,
    st.lists(annotation_values, max_size=3),
    st.lists(prediction_values, max_size=3),
    consensus,
    meta=st.none() | objects,
    gold=st.none() | objects,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, max_size=3))
def test_write_then_read_round_trips(items: list[dict[str, Any]]) -> None:
    buf = io.BytesIO()
    assert write_jsonl(iter(items), buf) == len(items)
    records = list(read_jsonl(io.BytesIO(buf.getvalue()), "export.jsonl"))
    assert len(records) == len(items)
    for record, item in zip(records, items, strict=True):
        assert record.external_id == item["external_id"]
        assert record.data == item["data"]
        assert record.annotations == item["annotations"]
        assert record.predictions == item["predictions"]
        assert record.consensus == item["consensus"]
        assert record.meta == item.get("meta")
        assert record.gold == item.get("gold")


def test_export_file_is_detected_as_jsonl(tmp_path: Any) -> None:
    path = tmp_path / "out.jsonl"
    with path.open("wb") as fp:
        write_jsonl([export_row("x", {"a": 1})], fp)
    assert detect_format(path) == "jsonl"
    assert [r.external_id for r in read_jsonl(path)] == ["x"]
