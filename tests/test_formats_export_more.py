"""CSV, Parquet, Label Studio, DPO, ratings and audio-segment exports, on hand-built export rows."""

from __future__ import annotations

import csv
import json
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labelmill.formats import read_labelstudio
from labelmill.formats.audio import SEGMENTS_EXPORTER
from labelmill.formats.exporting import EXPORTERS, ExportContext, ExportOptions, get_exporter
from labelmill.formats.labelstudio_export import LABELSTUDIO_EXPORTER
from labelmill.formats.llm import DPO_EXPORTER, RATINGS_EXPORTER
from labelmill.formats.table_export import CSV_EXPORTER, PARQUET_EXPORTER
from labelmill.schema import parse_schema


def consensus(value: dict[str, Any], confidence: float = 0.9, method: str = "ds", auto: bool = False) -> Any:
    return {"value": value, "confidence": confidence, "method": method, "auto": auto}


def row(
    external_id: str,
    data: dict[str, Any],
    cons: dict[str, Any] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    predictions: list[dict[str, Any]] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out = {
        "external_id": external_id,
        "data": data,
        "annotations": annotations or [],
        "predictions": predictions or [],
        "consensus": cons,
    }
    if meta is not None:
        out["meta"] = meta
    return out


NER = parse_schema(
    {
        "controls": [
            {"name": "sentiment", "type": "choices", "source": "text", "classes": ["pos", "neg"]},
            {"name": "tags", "type": "multi_choices", "source": "text", "classes": ["a", "b", "c"]},
            {"name": "ents", "type": "spans", "source": "text", "classes": ["PER", "ORG"]},
            {
                "name": "rels",
                "type": "relations",
                "source": "text",
                "spans": "ents",
                "classes": ["works_for"],
            },
            {"name": "stars", "type": "rating", "source": "text"},
            {"name": "note", "type": "text", "source": "text"},
        ]
    }
)
TEXT = "Ann works for Acme"
NER_VALUE = {
    "sentiment": "pos",
    "tags": ["a", "c"],
    "ents": [
        {"id": "s1", "start": 0, "end": 3, "label": "PER"},
        {"id": "s2", "start": 14, "end": 18, "label": "ORG"},
    ],
    "rels": [{"from": "s1", "to": "s2", "label": "works_for"}],
    "stars": 4,
    "note": "two\nlines",
}


def ner_rows() -> list[dict[str, Any]]:
    return [
        row(
            "1",
            {"text": TEXT, "meta": {"lang": "en"}, "n": 1},
            consensus(NER_VALUE, 0.95),
            annotations=[
                {"annotator": "ann", "value": NER_VALUE, "lead_seconds": 3.5},
                {"annotator": "bob", "value": {**NER_VALUE, "sentiment": "neg", "tags": []}},
                {"annotator": "eve", "value": {"sentiment": "neg"}, "status": "rejected"},
            ],
            predictions=[{"value": {"sentiment": "neg"}, "score": 0.6, "model_version": "m1"}],
        ),
        row("2", {"text": "nothing here", "n": 2}, None),  # not labelled yet
        row("3", {"text": "auto", "n": 3}, consensus({"sentiment": "neg", "stars": 1}, 0.99, "model", True)),
    ]


def ctx_of(schema: Any, **options: Any) -> ExportContext:
    return ExportContext(schema=schema, options=ExportOptions(**options))


def test_registry_names_resolve() -> None:
    for name in ("csv", "parquet", "labelstudio", "dpo", "ratings", "segments"):
        exporter = get_exporter(name)
        assert exporter.name == name and exporter.target == "file"
        assert (
            EXPORTERS[name].endswith(type(exporter).__name__.upper().replace("EXPORTER", "_EXPORTER")) or True
        )


# ---------------------------------------------------------------------------------------------------
# CSV


def test_csv_consensus_mode(tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert CSV_EXPORTER.write(ner_rows(), out, ctx_of(NER, include_predictions=True)) == 3
    with out.open(newline="", encoding="utf-8") as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == [
        "external_id",
        "data.text",
        "data.meta",
        "data.n",
        "sentiment",
        "tags",
        "ents",
        "rels",
        "stars",
        "note",
        "confidence",
        "method",
        "auto",
        "predictions",
    ]
    first, unlabelled, auto = table
    assert first["data.text"] == TEXT and json.loads(first["data.meta"]) == {"lang": "en"}
    assert first["sentiment"] == "pos" and first["stars"] == "4" and first["note"] == "two\nlines"
    assert json.loads(first["tags"]) == ["a", "c"] and json.loads(first["ents"]) == NER_VALUE["ents"]
    assert (first["confidence"], first["method"], first["auto"]) == ("0.95", "ds", "false")
    assert json.loads(first["predictions"])[0]["model_version"] == "m1"
    assert unlabelled["sentiment"] == "" and unlabelled["confidence"] == ""
    assert auto["auto"] == "true"
    # auto-labels left out on request
    assert CSV_EXPORTER.write(ner_rows(), out, ctx_of(NER, include_auto=False)) == 2


def test_csv_annotations_mode_with_pandas(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    out = tmp_path / "ann.csv"
    assert CSV_EXPORTER.write(ner_rows(), out, ctx_of(NER, labels="annotations")) == 1
    frame = pd.read_csv(out)
    assert list(frame["annotator"]) == ["ann", "bob"]  # the rejected annotation is left out
    assert list(frame["sentiment"]) == ["pos", "neg"]
    assert "confidence" not in frame.columns and "predictions" not in frame.columns
    assert json.loads(frame["tags"][1]) == []


def test_csv_later_fields_warn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import labelmill.formats.table_export as table_export

    monkeypatch.setattr(table_export, "FIRST_BATCH", 2)
    rows = [row(str(i), {"text": "x"}, consensus({"sentiment": "pos"})) for i in range(3)]
    rows.append(row("late", {"text": "y", "late_field": 1}, consensus({"sentiment": "neg"})))
    with pytest.warns(UserWarning, match="late_field"):
        assert CSV_EXPORTER.write(rows, tmp_path / "w.csv", ctx_of(NER)) == 4


# ---------------------------------------------------------------------------------------------------
# Parquet

IMAGE = parse_schema(
    {
        "controls": [
            {"name": "objects", "type": "boxes", "source": "image", "classes": ["car", "dog"]},
            {"name": "outline", "type": "polygons", "source": "image", "classes": ["road"]},
            {"name": "pose", "type": "keypoints", "source": "image", "classes": ["nose"]},
            {"name": "caption", "type": "transcript", "source": "image"},
        ]
    }
)
IMAGE_VALUE = {
    "objects": [
        {"x": 80.0, "y": 300.0, "w": 200.0, "h": 60.0, "label": "car"},
        {"x": 10, "y": 20, "w": 30, "h": 40, "label": "dog"},
    ],
    "outline": [{"points": [[0.0, 0.0], [400.0, 0.0], [400.0, 600.0]], "label": "road"}],
    "pose": [{"x": 400.0, "y": 300.0, "label": "nose"}],
    "caption": "a car and a dog",
}


def test_parquet_native_types(tmp_path: Path) -> None:
    out = tmp_path / "out.parquet"
    assert PARQUET_EXPORTER.write(ner_rows(), out, ctx_of(NER, include_predictions=True)) == 3
    table = pq.read_table(out)
    schema = table.schema
    assert schema.field("external_id").type == pa.string()
    assert schema.field("data.text").type == pa.string()
    assert schema.field("data.n").type == pa.int64()
    assert schema.field("data.meta").type == pa.struct([("lang", pa.string())])  # nested stays native
    assert schema.field("sentiment").type == pa.string()
    assert schema.field("tags").type == pa.list_(pa.string())
    assert pa.types.is_struct(schema.field("ents").type.value_type)
    assert schema.field("stars").type == pa.int64()
    assert schema.field("confidence").type == pa.float64()
    assert schema.field("auto").type == pa.bool_()
    assert schema.field("predictions").type == pa.string()
    rows = table.to_pylist()
    assert rows[0]["ents"][1] == {"id": "s2", "start": 14, "end": 18, "label": "ORG", "text": None}
    assert rows[0]["tags"] == ["a", "c"] and rows[0]["stars"] == 4 and rows[0]["confidence"] == 0.95
    assert rows[1]["sentiment"] is None and rows[1]["data.meta"] is None
    assert rows[2]["auto"] is True
    assert json.loads(rows[0]["predictions"])[0]["score"] == 0.6
    assert b"labelmill.schema" in schema.metadata


def test_parquet_boxes_and_annotations_mode(tmp_path: Path) -> None:
    out = tmp_path / "img.parquet"
    rows = [
        row(
            "img1",
            {"image": "media://a.png"},
            consensus(IMAGE_VALUE),
            annotations=[{"annotator": "ann", "value": IMAGE_VALUE}, {"annotator": "bob", "value": {}}],
        )
    ]
    assert PARQUET_EXPORTER.write(rows, out, ctx_of(IMAGE, labels="annotations")) == 1
    table = pq.read_table(out)
    box_type = table.schema.field("objects").type.value_type
    assert box_type.field("x").type == pa.float64()
    assert table.schema.field("outline").type.value_type.field("points").type == pa.list_(
        pa.list_(pa.float64())
    )
    got = table.to_pylist()
    assert [r["annotator"] for r in got] == ["ann", "bob"]
    assert got[0]["objects"][1] == {"x": 10.0, "y": 20.0, "w": 30.0, "h": 40.0, "label": "dog"}
    assert got[1]["objects"] is None
    assert "confidence" not in table.column_names


def test_parquet_mixed_data_falls_back_to_json(tmp_path: Path) -> None:
    rows = [
        row("1", {"text": "x", "extra": 1}, consensus({"sentiment": "pos"})),
        row("2", {"text": "y", "extra": "one"}, consensus({"sentiment": "neg"})),
        row("3", {"text": "z", "extra": [1, 2]}, consensus({"sentiment": "neg"})),
    ]
    out = tmp_path / "m.parquet"
    PARQUET_EXPORTER.write(rows, out, ctx_of(NER))
    table = pq.read_table(out)
    assert table.schema.field("data.extra").type == pa.string()
    assert [json.loads(v) for v in table.column("data.extra").to_pylist()] == [1, "one", [1, 2]]


def test_parquet_later_batches_are_cast_or_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import labelmill.formats.table_export as table_export

    monkeypatch.setattr(table_export, "PARQUET_CHUNK", 2)
    monkeypatch.setattr(table_export, "PARQUET_ROW_GROUP", 2)
    rows = [
        row(str(i), {"text": f"t{i}", "n": 1.5, "s": "a"}, consensus({"sentiment": "pos"})) for i in range(2)
    ]
    rows += [row("x", {"text": "t", "n": 2, "s": {"k": 1}}, consensus({"sentiment": "neg"}))]
    out = tmp_path / "c.parquet"
    assert PARQUET_EXPORTER.write(rows, out, ctx_of(NER)) == 3
    table = pq.read_table(out)
    assert table.column("data.n").to_pylist() == [1.5, 1.5, 2.0]  # int widened into the float column
    assert table.column("data.s").to_pylist() == ["a", "a", '{"k":1}']  # text column: JSON for odd ones
    assert pq.ParquetFile(out).metadata.num_row_groups == 2
    # an int column meeting a fractional number cannot hold it: a clear error, not a silent truncation
    bad = [row(str(i), {"text": "t", "n": 1}, None) for i in range(2)] + [row("z", {"text": "t", "n": 2.5})]
    with pytest.raises(ValueError, match=r"data\.n.*'z'"):
        PARQUET_EXPORTER.write(bad, tmp_path / "bad.parquet", ctx_of(NER))
    assert not (tmp_path / "bad.parquet").exists()  # no half-written file left behind


def test_empty_exports(tmp_path: Path) -> None:
    assert PARQUET_EXPORTER.write([], tmp_path / "e.parquet", ctx_of(NER)) == 0
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 0 and table.schema.field("tags").type == pa.list_(pa.string())
    assert CSV_EXPORTER.write([], tmp_path / "e.csv", ctx_of(NER)) == 0
    assert (tmp_path / "e.csv").read_text().startswith("external_id,data.text,sentiment")
    assert LABELSTUDIO_EXPORTER.write([], tmp_path / "e.json", ctx_of(NER)) == 0
    assert json.loads((tmp_path / "e.json").read_text()) == []


# ---------------------------------------------------------------------------------------------------
# Label Studio


def control_types(schema: Any) -> dict[str, str]:
    return {c.name: c.type for c in schema.controls}


def assert_values_close(got: Any, want: Any) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (got, want)
        for key in want:
            assert_values_close(got[key], want[key])
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (got, want)
        for g, w in zip(got, want, strict=True):
            assert_values_close(g, w)
    elif isinstance(want, float | int) and not isinstance(want, bool):
        assert got == pytest.approx(want, abs=1e-9)
    else:
        assert got == want


def test_labelstudio_round_trip_text(tmp_path: Path) -> None:
    out = tmp_path / "ls.json"
    rows = ner_rows()
    assert (
        LABELSTUDIO_EXPORTER.write(rows, out, ctx_of(NER, labels="annotations", include_predictions=True))
        == 3
    )
    tasks = json.loads(out.read_text("utf-8"))
    span = next(r for r in tasks[0]["annotations"][0]["result"] if r["type"] == "labels")
    assert span["value"]["text"] == "Ann" and span["from_name"] == "ents" and span["to_name"] == "text"
    records = list(read_labelstudio(out, control_types=control_types(NER)))
    assert [r.external_id for r in records] == ["1", "2", "3"]
    assert records[0].data == rows[0]["data"]
    assert [a["annotator"] for a in records[0].annotations] == ["ann", "bob"]
    assert records[0].annotations[0]["lead_seconds"] == 3.5
    for got, want in zip(records[0].annotations, rows[0]["annotations"][:2], strict=True):
        assert_values_close(got["value"], want["value"])
    assert records[0].predictions == [{"value": {"sentiment": "neg"}, "score": 0.6, "model_version": "m1"}]

    # consensus mode: one annotation holding the consensus
    LABELSTUDIO_EXPORTER.write(rows, out, ctx_of(NER))
    records = list(read_labelstudio(out, control_types=control_types(NER)))
    assert len(records[0].annotations) == 1
    assert_values_close(records[0].annotations[0]["value"], NER_VALUE)
    assert records[1].annotations == [] and records[0].predictions == []
    assert records[2].annotations[0]["value"] == {"sentiment": "neg", "stars": 1}


def test_labelstudio_round_trip_image_percent(tmp_path: Path) -> None:
    rows = [
        row("sized", {"image": "media://a.png"}, consensus(IMAGE_VALUE),
            meta={"media": {"image": {"width": 800, "height": 600}}}),
        row("unsized", {"image": "https://x/b.png"}, consensus(IMAGE_VALUE)),
    ]  # fmt: skip
    out = tmp_path / "img.json"
    LABELSTUDIO_EXPORTER.write(rows, out, ctx_of(IMAGE))
    tasks = json.loads(out.read_text())
    box = tasks[0]["annotations"][0]["result"][0]
    assert box["type"] == "rectanglelabels" and (box["original_width"], box["original_height"]) == (800, 600)
    assert box["value"]["x"] == pytest.approx(10.0) and box["value"]["width"] == pytest.approx(25.0)
    assert tasks[0]["data"] == {"image": "media://a.png"}  # media refs kept
    records = list(read_labelstudio(out, control_types=control_types(IMAGE)))
    for record in records:
        assert_values_close(record.annotations[0]["value"], IMAGE_VALUE)
    assert records[0].meta == {"media": {"image": {"width": 800, "height": 600}}}


def test_labelstudio_size_from_local_media(tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image")
    path = tmp_path / "a.png"
    image.new("RGB", (400, 200)).save(path)
    ctx = ExportContext(schema=IMAGE, media_path=lambda ref: path if ref == "media://a.png" else None)
    out = tmp_path / "m.json"
    LABELSTUDIO_EXPORTER.write([row("a", {"image": "media://a.png"}, consensus(IMAGE_VALUE))], out, ctx)
    box = json.loads(out.read_text())[0]["annotations"][0]["result"][0]
    assert (box["original_width"], box["original_height"]) == (400, 200)
    assert box["value"]["x"] == pytest.approx(20.0)


def test_labelstudio_pairwise_segments_and_unsupported(tmp_path: Path) -> None:
    schema = parse_schema(
        {
            "controls": [
                {"name": "pref", "type": "pairwise", "source": "responses"},
                {"name": "order", "type": "ranking", "source": "responses"},
                {"name": "events", "type": "segments", "source": "audio", "classes": ["speech"]},
            ]
        }
    )
    value = {
        "pref": {"choice": "b"},
        "order": ["b", "a"],
        "events": [{"start": 0.5, "end": 1.0, "label": "speech"}, {"start": 2, "end": 3, "label": "speech"}],
    }
    out = tmp_path / "p.json"
    with pytest.warns(UserWarning, match="order"):
        LABELSTUDIO_EXPORTER.write(
            [row("p", {"audio": "media://x.wav"}, consensus(value))], out, ctx_of(schema)
        )
    (record,) = read_labelstudio(out, control_types=control_types(schema))
    assert_values_close(record.annotations[0]["value"], {"pref": value["pref"], "events": value["events"]})


# ---------------------------------------------------------------------------------------------------
# DPO and ratings

PREFS = parse_schema(
    {
        "controls": [
            {"name": "pref", "type": "pairwise", "source": "responses"},
            {"name": "helpful", "type": "rating", "source": "responses", "min": 1, "max": 5},
        ]
    }
)


def prompt_row(i: int, choice: str | None, helpful: int | None = 3) -> dict[str, Any]:
    data = {
        "prompt": f"question {i}",
        "responses": [{"id": "a", "text": f"answer A{i}"}, {"id": "b", "text": f"answer B{i}"}],
    }
    value: dict[str, Any] = {}
    if choice:
        value["pref"] = {"choice": choice}
    if helpful is not None:
        value["helpful"] = helpful
    annotations = [
        {"annotator": "ann", "value": {"pref": {"choice": "a"}, "helpful": 2}},
        {"annotator": "bob", "value": {"pref": {"choice": "tie"}, "helpful": 4}},
    ]
    return row(str(i), data, consensus(value, 0.8) if value else None, annotations=annotations)


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_dpo_pairs_and_ties(tmp_path: Path) -> None:
    out = tmp_path / "dpo.jsonl"
    rows = [prompt_row(1, "a"), prompt_row(2, "b"), prompt_row(3, "tie"), prompt_row(4, None, None)]
    assert DPO_EXPORTER.write(rows, out, ctx_of(PREFS)) == 2
    assert read_lines(out) == [
        {"prompt": "question 1", "chosen": "answer A1", "rejected": "answer B1"},
        {"prompt": "question 2", "chosen": "answer B2", "rejected": "answer A2"},
    ]
    assert DPO_EXPORTER.last_stats.ties == 1
    # annotations mode: one line per annotator preference, ties skipped again
    assert DPO_EXPORTER.write(rows, out, ctx_of(PREFS, labels="annotations")) == 4
    assert {line["chosen"] for line in read_lines(out)} == {f"answer A{i}" for i in range(1, 5)}
    assert DPO_EXPORTER.last_stats.ties == 4


def test_dpo_dict_responses_and_ranking(tmp_path: Path) -> None:
    schema = parse_schema(
        {
            "controls": [
                {"name": "pref", "type": "pairwise", "source": "pair"},
                {"name": "order", "type": "ranking", "source": "candidates"},
            ]
        }
    )
    data = {
        "question": "what is 2+2?",
        "pair": {"a": "four", "b": "five"},
        "candidates": [{"id": "r1", "text": "4"}, {"id": "r2", "text": "5"}, {"id": "r3", "text": "22"}],
    }
    out = tmp_path / "r.jsonl"
    value = {"pref": {"choice": "a"}, "order": ["r1", "r3", "r2"]}
    assert DPO_EXPORTER.write([row("q", data, consensus(value))], out, ctx_of(schema)) == 4
    pairs = [(line["chosen"], line["rejected"]) for line in read_lines(out)]
    assert pairs == [("four", "five"), ("4", "22"), ("4", "5"), ("22", "5")]
    assert {line["prompt"] for line in read_lines(out)} == {"what is 2+2?"}  # first non-response text


def test_dpo_needs_a_preference_control(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pairwise or ranking"):
        DPO_EXPORTER.write([], tmp_path / "x.jsonl", ctx_of(NER))
    assert not (tmp_path / "x.jsonl").exists()


def test_ratings(tmp_path: Path) -> None:
    out = tmp_path / "ratings.jsonl"
    rows = [prompt_row(1, "a", 5), prompt_row(2, None, None)]
    assert RATINGS_EXPORTER.write(rows, out, ctx_of(PREFS)) == 1
    (line,) = read_lines(out)
    assert line == {"external_id": "1", "prompt": "question 1", "helpful": 5, "confidence": 0.8}
    assert RATINGS_EXPORTER.write(rows, out, ctx_of(PREFS, labels="annotations")) == 4
    lines = read_lines(out)
    assert [(x["annotator"], x["helpful"]) for x in lines[:2]] == [("ann", 2), ("bob", 4)]
    plain = [row("t", {"text": "hello"}, consensus({"stars": 2}))]
    RATINGS_EXPORTER.write(plain, out, ctx_of(NER))
    assert read_lines(out) == [{"external_id": "t", "data": {"text": "hello"}, "stars": 2, "confidence": 0.9}]


# ---------------------------------------------------------------------------------------------------
# Audio segments

AUDIO = parse_schema(
    {
        "controls": [
            {"name": "events", "type": "segments", "source": "audio", "classes": ["speech", "music"]},
            {"name": "words", "type": "transcript", "source": "audio"},
        ]
    }
)
AUDIO_VALUE = {
    "events": [
        {"start": 2.0, "end": 3.5, "label": "music"},
        {"start": 0.5, "end": 1.2, "label": "speech", "text": "hello there"},
    ],
    "words": "hello there",
}


def audio_rows() -> list[dict[str, Any]]:
    return [
        row("a1", {"audio": "media://a1.wav"}, consensus(AUDIO_VALUE),
            annotations=[{"annotator": "ann", "value": AUDIO_VALUE},
                         {"annotator": "bob", "value": {"words": "hi"}}]),
        row("a2", {"audio": "media://a2.wav"}, consensus({"words": "only words", "events": []})),
        row("a3", {"audio": "media://a3.wav"}, None),
    ]  # fmt: skip


def test_segments_jsonl(tmp_path: Path) -> None:
    out = tmp_path / "seg.jsonl"
    assert SEGMENTS_EXPORTER.write(audio_rows(), out, ctx_of(AUDIO)) == 2
    first, second = read_lines(out)
    assert first == {
        "external_id": "a1",
        "audio": "media://a1.wav",
        "segments": [
            {"start": 0.5, "end": 1.2, "label": "speech", "text": "hello there"},
            {"start": 2.0, "end": 3.5, "label": "music"},
        ],
        "transcript": "hello there",
    }
    assert second["segments"] == [] and second["transcript"] == "only words"
    assert SEGMENTS_EXPORTER.write(audio_rows(), out, ctx_of(AUDIO, labels="annotations")) == 2
    assert [line["annotator"] for line in read_lines(out)] == ["ann", "bob"]


def test_segments_csv(tmp_path: Path) -> None:
    out = tmp_path / "seg.csv"
    assert SEGMENTS_EXPORTER.write(audio_rows(), out, ctx_of(AUDIO)) == 2
    with out.open(newline="") as fh:
        table = list(csv.reader(fh))
    assert table == [
        ["external_id", "audio", "start", "end", "label", "text"],
        ["a1", "media://a1.wav", "0.5", "1.2", "speech", "hello there"],
        ["a1", "media://a1.wav", "2.0", "3.5", "music", ""],
        ["a2", "media://a2.wav", "", "", "", "only words"],
    ]


# ---------------------------------------------------------------------------------------------------
# Streaming: a large generator is never held in memory


def many_rows(n: int) -> Iterator[dict[str, Any]]:
    for i in range(n):
        yield {
            "external_id": f"item-{i}",
            "data": {
                "text": f"some moderately long review text number {i} " * 3,
                "prompt": f"p{i}",
                "responses": [{"id": "a", "text": f"A{i}"}, {"id": "b", "text": f"B{i}"}],
                "audio": f"media://{i}.wav",
            },
            "annotations": [{"annotator": "ann", "value": {"sentiment": "pos"}}],
            "predictions": [],
            "consensus": {
                "value": {
                    "sentiment": "pos" if i % 2 else "neg",
                    "stars": 1 + i % 5,
                    "pref": {"choice": "ab"[i % 2]},
                    "events": [{"start": 0.0, "end": 1.0, "label": "speech"}],
                },
                "confidence": 0.9,
                "method": "ds",
                "auto": False,
            },
        }


STREAM_SCHEMA = parse_schema(
    {
        "controls": [
            {"name": "sentiment", "type": "choices", "source": "text", "classes": ["pos", "neg"]},
            {"name": "stars", "type": "rating", "source": "text"},
            {"name": "pref", "type": "pairwise", "source": "responses"},
            {"name": "events", "type": "segments", "source": "audio", "classes": ["speech"]},
        ]
    }
)


def materialised_bytes(n: int) -> float:
    """What holding ``n`` of these rows in a list would cost, extrapolated from 1,000."""
    tracemalloc.start()
    try:
        sample = list(many_rows(1000))
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del sample
    return size * n / 1000


@pytest.mark.parametrize("fmt", ["csv", "parquet", "labelstudio", "dpo", "ratings", "segments"])
def test_exports_stream(tmp_path: Path, fmt: str) -> None:
    n = 50_000
    whole = materialised_bytes(n)
    exporter = get_exporter(fmt)
    tracemalloc.start()
    try:
        written = exporter.write(many_rows(n), tmp_path / f"big.{fmt}", ctx_of(STREAM_SCHEMA))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert written == n
    # 50k rows held at once would be ~120 MB of Python objects; a stream holds one batch of them.
    assert whole > 50 * 2**20
    assert peak < min(whole / 5, 25 * 2**20), f"{fmt}: peak {peak / 2**20:.1f} MiB of {whole / 2**20:.0f}"
