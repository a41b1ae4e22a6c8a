"""Label Studio import: every supported result type, streaming of arrays, and errors."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.formats import FormatError, read_any, read_labelstudio
from labelmill.formats.labelstudio import iter_json_objects


def result(kind: str, value: dict[str, Any], name: str = "ctl", **extra: Any) -> dict[str, Any]:
    return {"id": f"id-{kind}", "from_name": name, "to_name": "obj", "type": kind, "value": value, **extra}


def one_task(tmp_path: Path, results: list[dict[str, Any]], **kwargs: Any) -> Any:
    task = {
        "id": 1,
        "data": {"text": "Alice works at Acme"},
        "annotations": [{"completed_by": 3, "result": results}],
    }
    path = tmp_path / "ls.json"
    path.write_text(json.dumps([task]), "utf-8")
    (record,) = read_labelstudio(path, **kwargs)
    return record


def test_choices_single_and_multi(tmp_path: Path) -> None:
    record = one_task(
        tmp_path,
        [
            result("choices", {"choices": ["pos"]}, "sentiment"),
            result("choices", {"choices": ["a", "b"]}, "topics"),
            result("choices", {"choices": ["x"]}, "tags"),
        ],
        control_types={"tags": "multi_choices"},
    )
    assert record.annotations == [
        {"annotator": "3", "value": {"sentiment": "pos", "topics": ["a", "b"], "tags": ["x"]}}
    ]
    assert record.external_id == "1"


def test_spans_and_relations(tmp_path: Path) -> None:
    spans: list[dict[str, Any]] = [
        {"id": "s1", "from_name": "ner", "to_name": "text", "type": "labels",
         "value": {"start": 0, "end": 5, "text": "Alice", "labels": ["PER"]}},
        {"id": "s2", "from_name": "ner", "to_name": "text", "type": "labels",
         "value": {"start": 15, "end": 19, "text": "Acme", "labels": ["ORG", "COMPANY"]}},
        {"type": "relation", "from_id": "s1", "to_id": "s2", "direction": "right", "labels": ["works_for"]},
    ]  # fmt: skip
    record = one_task(tmp_path, spans, control_types={"ner": "spans", "rel": "relations"})
    value = record.annotations[0]["value"]
    assert value == {
        "ner": [
            {"id": "s1", "start": 0, "end": 5, "label": "PER"},
            {"id": "s2", "start": 15, "end": 19, "label": "ORG"},
            {"id": "s2-1", "start": 15, "end": 19, "label": "COMPANY"},
        ],
        "rel": [{"from": "s1", "to": "s2", "label": "works_for"}],
    }


def test_audio_segments(tmp_path: Path) -> None:
    seg = result("labels", {"start": 0.5, "end": 1.25, "labels": ["speech"], "channel": 0}, "vad")
    assert one_task(tmp_path, [seg]).annotations[0]["value"] == {
        "vad": [{"start": 0.5, "end": 1.25, "label": "speech"}]
    }


def test_image_regions_in_pixels(tmp_path: Path) -> None:
    size = {"original_width": 800, "original_height": 600}
    record = one_task(
        tmp_path,
        [
            result("rectanglelabels", {"x": 10, "y": 50, "width": 25, "height": 10, "rotation": 0,
                                       "rectanglelabels": ["car"]}, "box", **size),
            result("polygonlabels", {"points": [[0, 0], [50, 0], [50, 100]], "polygonlabels": ["road"]},
                   "poly", **size),
            result("keypointlabels", {"x": 50, "y": 50, "width": 1, "keypointlabels": ["nose"]}, "kp",
                   **size),
        ],
    )  # fmt: skip
    assert record.annotations[0]["value"] == {
        "box": [{"x": 80.0, "y": 300.0, "w": 200.0, "h": 60.0, "label": "car"}],
        "poly": [{"points": [[0.0, 0.0], [400.0, 0.0], [400.0, 600.0]], "label": "road"}],
        "kp": [{"x": 400.0, "y": 300.0, "label": "nose"}],
    }
    assert record.meta == {"media": {"obj": {"width": 800, "height": 600}}}


def test_percent_boxes_are_kept_and_noted(tmp_path: Path) -> None:
    box = result("rectanglelabels", {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 15,
                                     "rectanglelabels": ["car"]}, "box")  # fmt: skip
    record = one_task(tmp_path, [box])
    assert record.annotations[0]["value"] == {
        "box": [{"x": 10.0, "y": 20.0, "w": 30.0, "h": 40.0, "label": "car"}]
    }
    assert record.meta == {"labelstudio": {"percent_coordinates": ["box"], "rotation_dropped": ["box"]}}


def test_rating_textarea_taxonomy_pairwise(tmp_path: Path) -> None:
    record = one_task(
        tmp_path,
        [
            result("rating", {"rating": 4}, "stars"),
            result("textarea", {"text": ["line one", "line two"]}, "transcript"),
            result("taxonomy", {"taxonomy": [["Animal", "Cat"], ["Plant"]]}, "tax"),
            result("pairwise", {"selected": "right"}, "pref"),
        ],
    )
    assert record.annotations[0]["value"] == {
        "stars": 4,
        "transcript": "line one\nline two",
        "tax": ["Animal/Cat", "Plant"],
        "pref": {"choice": "b"},
    }


def test_predictions_annotators_and_cancelled(tmp_path: Path) -> None:
    task = {
        "id": "t-9",
        "data": {"text": "x"},
        "meta": {"source": "crawl"},
        "predictions": [{"model_version": "m1", "score": 0.75,
                         "result": [result("choices", {"choices": ["neg"]}, "sentiment")]}],
        "annotations": [
            {"completed_by": {"id": 2, "email": "ann@example.org"}, "lead_time": 12.5,
             "result": [result("choices", {"choices": ["pos"]}, "sentiment")]},
            {"completed_by": 4, "was_cancelled": True, "result": []},
        ],
    }  # fmt: skip
    path = tmp_path / "one.json"
    path.write_text(json.dumps(task), "utf-8")  # a single task, not an array
    (record,) = read_any(path)
    assert record.external_id == "t-9"
    assert record.meta == {"source": "crawl"}
    assert record.predictions == [{"value": {"sentiment": "neg"}, "score": 0.75, "model_version": "m1"}]
    assert record.annotations == [
        {"annotator": "ann@example.org", "value": {"sentiment": "pos"}, "lead_seconds": 12.5},
        {"annotator": "4", "value": {}, "status": "skipped"},
    ]


def test_jsonl_of_tasks_and_empty_array() -> None:
    tasks = b'{"data": {"a": 1}}\n\n{"data": {"a": 2}}\n'
    assert [r.data for r in read_labelstudio(io.BytesIO(tasks), "t.json")] == [{"a": 1}, {"a": 2}]
    assert list(read_labelstudio(io.BytesIO(b" [ ] "), "e.json")) == []
    assert list(read_labelstudio(io.BytesIO(b""), "e.json")) == []


class CountingReader(io.RawIOBase):
    """A stream that hands out a few bytes at a time and remembers the most it was asked for."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = len(self.data) if size < 0 else size
        chunk = self.data[self.pos : self.pos + size]
        self.pos += len(chunk)
        return chunk


def test_array_is_streamed_in_chunks() -> None:
    tasks = [{"data": {"text": "é" * (i % 50), "n": i, "f": 1.5e-3}} for i in range(3000)]
    data = json.dumps(tasks, ensure_ascii=False, indent=1).encode("utf-8")
    assert len(data) > 4 * 65536
    reader = CountingReader(data)
    seen = 0
    for n, task in iter_json_objects(reader, "big.json"):  # type: ignore[arg-type]
        assert task == tasks[n - 1]
        seen += 1
        if n == 10:
            assert reader.pos < len(data) / 2  # only a prefix read so far
    assert seen == 3000


def test_large_single_task_straddling_chunks() -> None:
    big = {"data": {"text": "x" * 300_000, "tail": [True, False, None, -12.5e10]}}
    data = json.dumps([big, big]).encode()
    assert [t for _, t in iter_json_objects(io.BytesIO(data), "b.json")] == [big, big]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[{"data": {}},\n {"data": {,}}]', "bad.json:2: invalid JSON: Expecting property name"),
        ('[{"data": {}} {"data": {}}]', "bad.json:1: invalid JSON: expected ',' or ']'"),
        ('[{"data": {}}] x', "bad.json:1: unexpected data after the JSON array"),
        ('[{"data": {}},', "bad.json:2: invalid JSON: Expecting value"),
        ('[{"data": {"t": "unterminated', "bad.json:1: invalid JSON: Unterminated string"),
        ('[{"data": []}]', "bad.json:1: data: must be an object"),
        ("[3]", "bad.json:1: each task must be a JSON object"),
        (
            '[{"data": {}, "annotations": [{"result": [{"type": "brushlabels", "from_name": "b", '
            '"value": {}}]}]}]',
            "bad.json:1: annotations[0].result[0].type: Label Studio result type 'brushlabels' is not "
            "supported",
        ),
        (
            '[{"data": {}, "predictions": [{"result": [{"type": "choices", "value": {"choices": ["a"]}}]}]}]',
            "bad.json:1: predictions[0].result[0].from_name: missing control name",
        ),
        (
            '[{"data": {}}, {"data": {}, "annotations": [{"result": [{"type": "rating", "from_name": "r", '
            '"value": {"rating": "5"}}]}]}]',
            "bad.json:2: annotations[0].result[0].value.rating: must be an integer",
        ),
    ],
)
def test_errors_name_task_and_field(text: str, expected: str) -> None:
    with pytest.raises(FormatError) as err:
        list(read_labelstudio(io.BytesIO(text.encode()), "bad.json"))
    assert str(err.value).startswith(expected)


def test_syntax_error_position_counts_lines() -> None:
    text = '[\n{"data": {}},\n{"data": {}},\n{"data": {"a": 1 "b": 2}}\n]'
    with pytest.raises(FormatError, match=r"^bad.json:3: invalid JSON: .* at line 4 column 18$"):
        list(read_labelstudio(io.BytesIO(text.encode()), "bad.json"))


@settings(max_examples=60)
@given(
    texts=st.lists(st.text(alphabet="ab é\n\t", max_size=40), min_size=1, max_size=30),
    separators=st.lists(st.sampled_from([",", ", ", ",\n", ",\n  ", "\n,"]), min_size=30, max_size=30),
    broken=st.integers(min_value=0),
    chunk=st.sampled_from([40, 64, 100, 1 << 16]),
)
def test_syntax_error_position_is_the_one_json_reports(
    texts: list[str], separators: list[str], broken: int, chunk: int
) -> None:
    """Line and column of a syntax error, wherever the buffer was cut: those of ``json.loads``
    over the whole file (tasks on one long line used to count columns from the last cut)."""
    import labelmill.formats.labelstudio as module

    tasks = [json.dumps({"data": {"text": t}}, ensure_ascii=False) for t in texts]
    k = broken % len(tasks)
    tasks[k] = tasks[k].replace('"text":', '"text" ', 1)
    body = "".join(task + sep for task, sep in zip(tasks[:-1], separators, strict=False))
    doc = "[" + body + tasks[-1] + "]"
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(doc)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(module, "_CHUNK", chunk)
        with pytest.raises(FormatError) as err:
            list(read_labelstudio(io.BytesIO(doc.encode()), "bad.json"))
    where = f"at line {expected.value.lineno} column {expected.value.colno}"
    assert str(err.value) == f"bad.json:{k + 1}: invalid JSON: {expected.value.msg} {where}"


def test_syntax_error_column_on_a_long_line() -> None:
    tasks = [json.dumps({"data": {"text": "x" * 50}}) for _ in range(3000)]
    tasks[2500] = tasks[2500].replace('"text":', '"text" ', 1)
    doc = "[" + ", ".join(tasks) + "]"
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(doc)
    assert expected.value.colno > 150_000  # far past the first buffer's end
    column = expected.value.colno
    with pytest.raises(FormatError, match=rf"^bad.json:2501: invalid JSON: .* at line 1 column {column}$"):
        list(read_labelstudio(io.BytesIO(doc.encode()), "bad.json"))


def test_skip_unsupported_is_noted(tmp_path: Path) -> None:
    brush = {"id": "b", "type": "brushlabels", "from_name": "mask", "value": {"rle": [1, 2]}}
    record = one_task(tmp_path, [brush, result("rating", {"rating": 2}, "r")], skip_unsupported=True)
    assert record.annotations[0]["value"] == {"r": 2}
    assert record.meta == {"labelstudio": {"skipped_result_types": ["brushlabels"]}}
