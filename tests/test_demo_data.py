"""The demo projects are real, self-consistent data: every reference resolves, every offset,
box and time is where it claims to be, and two builds are identical."""

from __future__ import annotations

import io
import itertools
import json
from typing import Any

import pytest
import soundfile
from PIL import Image

from labelmill.demo import DemoProject, build_demo_projects
from labelmill.demo.content import demo_data, keyword_sentiment
from labelmill.schema import AnnotationValueError, check_value, parse_schema

MEDIA_FIELDS = ("image", "audio")


@pytest.fixture(scope="module")
def projects() -> list[DemoProject]:
    return build_demo_projects()


def by_control_type(projects: list[DemoProject], control_type: str) -> DemoProject:
    matches = [p for p in projects if any(c["type"] == control_type for c in p.schema["controls"])]
    assert len(matches) == 1, f"expected one project with a {control_type} control"
    return matches[0]


def labelled_values(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The gold value and every prediction value of a record."""
    values = [p["value"] for p in record.get("predictions", [])]
    if "gold" in record:
        values.append(record["gold"])
    return values


def test_five_projects_with_unique_names(projects: list[DemoProject]) -> None:
    assert len(projects) == 5
    assert len({p.name for p in projects}) == 5
    for project in projects:
        assert project.name.startswith("Demo: ")
        assert project.description.strip() and project.instructions.strip()
        assert project.records, project.name


def test_one_project_per_data_type(projects: list[DemoProject]) -> None:
    for control_type in ("choices", "spans", "relations", "boxes", "segments", "pairwise", "rating"):
        by_control_type(projects, control_type)


def test_external_ids_unique_and_records_are_import_lines(projects: list[DemoProject]) -> None:
    allowed = {"data", "external_id", "meta", "predictions", "gold"}
    for project in projects:
        ids = [r["external_id"] for r in project.records]
        assert len(ids) == len(set(ids)), project.name
        sources = {c["source"] for c in project.schema["controls"]}
        for record in project.records:
            assert set(record) <= allowed
            assert isinstance(record["external_id"], str) and record["external_id"]
            assert sources <= set(record["data"]), f"{project.name}: {record['external_id']}"
            # An import line is JSON: nothing may change on the way through.
            assert json.loads(json.dumps(record)) == record
            assert not ("gold" in record and "predictions" in record), "gold answers must not be pre-labelled"
            for prediction in record.get("predictions", []):
                assert set(prediction) == {"value", "score", "model_version"}
                assert 0.0 < prediction["score"] < 1.0
                assert prediction["model_version"]


def test_every_project_has_gold_or_predictions(projects: list[DemoProject]) -> None:
    for project in projects:
        assert any("gold" in r or "predictions" in r for r in project.records), project.name


def test_media_references_resolve_both_ways(projects: list[DemoProject]) -> None:
    for project in projects:
        referenced = {
            r["data"][field] for r in project.records for field in MEDIA_FIELDS if field in r["data"]
        }
        assert referenced == set(project.media), project.name


def test_media_is_modest(projects: list[DemoProject]) -> None:
    total = sum(len(blob) for p in projects for blob in p.media.values())
    assert 0 < total < 5 * 1024 * 1024


def test_settings_are_valid_project_settings(projects: list[DemoProject]) -> None:
    from labelmill.services.projects import validate_settings

    for project in projects:
        stored = validate_settings(project.settings)
        assert stored["overlap"] == project.settings["overlap"]


# -- text ----------------------------------------------------------------------------------------


def test_sentiment_project(projects: list[DemoProject]) -> None:
    project = by_control_type(projects, "choices")
    classes = project.schema["controls"][0]["classes"]
    assert 25 <= len(project.records) <= 40
    gold = [r for r in project.records if "gold" in r]
    predicted = [r for r in project.records if "predictions" in r]
    assert len(gold) == 3
    assert len(predicted) >= 3
    for record in project.records:
        assert isinstance(record["data"]["text"], str) and record["data"]["text"].strip()
        for value in labelled_values(record):
            assert value["sentiment"] in classes
    # The pre-labels are exactly what the documented keyword rule says.
    for record in predicted:
        label, score = keyword_sentiment(record["data"]["text"])
        assert record["predictions"][0]["value"] == {"sentiment": label}
        assert record["predictions"][0]["score"] == score


# -- entities ------------------------------------------------------------------------------------


def test_gold_spans_slice_to_their_entities(projects: list[DemoProject]) -> None:
    project = by_control_type(projects, "spans")
    assert 15 <= len(project.records) <= 30
    written = {s["text"]: [tuple(e) for e in s["entities"]] for s in demo_data("entities")["sentences"]}
    gold = [r for r in project.records if "gold" in r]
    assert len(gold) >= 3
    for record in gold:
        text = record["data"]["text"]
        spans = record["gold"]["entities"]
        assert [(text[s["start"] : s["end"]], s["label"]) for s in spans] == written[text]


def test_non_ascii_offsets_count_code_points(projects: list[DemoProject]) -> None:
    project = by_control_type(projects, "spans")
    record = next(r for r in project.records if "gold" in r and "Zürich" in r["data"]["text"])
    (loc,) = [s for s in record["gold"]["entities"] if s["label"] == "LOC"]
    assert record["data"]["text"][loc["start"] : loc["end"]] == "Zürich"
    assert loc["end"] - loc["start"] == 6  # code points, not UTF-8 bytes


def test_every_span_and_relation_is_consistent(projects: list[DemoProject]) -> None:
    project = by_control_type(projects, "spans")
    spans_control = next(c for c in project.schema["controls"] if c["type"] == "spans")
    relations_control = next(c for c in project.schema["controls"] if c["type"] == "relations")
    assert relations_control["spans"] == spans_control["name"]
    for record in project.records:
        text = record["data"]["text"]
        for value in labelled_values(record):
            spans = value[spans_control["name"]]
            ids = [s["id"] for s in spans]
            assert len(ids) == len(set(ids))
            for span in spans:
                assert 0 <= span["start"] < span["end"] <= len(text)
                assert span["label"] in spans_control["classes"]
                sliced = text[span["start"] : span["end"]]
                assert sliced == sliced.strip() and sliced
            for relation in value.get(relations_control["name"], []):
                assert relation["from"] in ids and relation["to"] in ids
                assert relation["label"] in relations_control["classes"]
    # Predictions are the gazetteer's names, found where they are.
    gazetteer = demo_data("entities")["model"]["gazetteer"]
    for record in project.records:
        for prediction in record.get("predictions", []):
            text = record["data"]["text"]
            for span in prediction["value"][spans_control["name"]]:
                assert gazetteer[text[span["start"] : span["end"]]] == span["label"]


# -- images --------------------------------------------------------------------------------------


def test_images_decode_to_recorded_size(projects: list[DemoProject]) -> None:
    project = by_control_type(projects, "boxes")
    assert len(project.records) >= 6
    for record in project.records:
        name = record["data"]["image"]
        size = record["meta"]["media"]["image"]
        with Image.open(io.BytesIO(project.media[name])) as image:
            image.load()
            assert image.format in {"PNG", "JPEG"}
            assert image.size == (size["width"], size["height"]), name


def test_boxes_lie_inside_their_image(projects: list[DemoProject]) -> None:
    project = by_control_type(projects, "boxes")
    control = project.schema["controls"][0]
    boxed = [r for r in project.records if labelled_values(r)]
    assert any("predictions" in r for r in boxed)
    for record in boxed:
        size = record["meta"]["media"]["image"]
        for value in labelled_values(record):
            assert value[control["name"]]
            for box in value[control["name"]]:
                assert box["label"] in control["classes"]
                assert box["w"] > 0 and box["h"] > 0
                assert box["x"] >= 0 and box["x"] + box["w"] <= size["width"]
                assert box["y"] >= 0 and box["y"] + box["h"] <= size["height"]


# -- audio ---------------------------------------------------------------------------------------


def test_wavs_decode_to_recorded_duration(projects: list[DemoProject]) -> None:
    project = by_control_type(projects, "segments")
    assert len(project.records) >= 5
    for record in project.records:
        name = record["data"]["audio"]
        audio = record["meta"]["media"]["audio"]
        samples, rate = soundfile.read(io.BytesIO(project.media[name]))
        assert rate == audio["sample_rate"] == 16_000
        assert samples.ndim == 1 and audio["channels"] == 1
        assert len(samples) / rate == pytest.approx(audio["duration"], abs=1e-9)
        assert 2.0 <= audio["duration"] <= 6.0


def test_segments_match_the_synthesised_signal(projects: list[DemoProject]) -> None:
    project = by_control_type(projects, "segments")
    control = project.schema["controls"][0]
    for record in project.records:
        samples, rate = soundfile.read(io.BytesIO(project.media[record["data"]["audio"]]))
        duration = record["meta"]["media"]["audio"]["duration"]
        (prediction,) = record["predictions"]
        segments = prediction["value"][control["name"]]
        assert segments[0]["start"] == 0.0 and segments[-1]["end"] == pytest.approx(duration)
        for before, after in itertools.pairwise(segments):
            assert before["end"] == after["start"]
        for segment in segments:
            assert segment["label"] in control["classes"]
            a, b = round(segment["start"] * rate), round(segment["end"] * rate)
            inner = samples[a + 200 : b - 200]  # away from the fades
            energy = float((inner**2).mean())
            if segment["label"] == "silence":
                assert energy == 0.0
            else:
                assert energy > 1e-3, segment


# -- LLM preference ------------------------------------------------------------------------------


def test_preference_items_have_two_responses(projects: list[DemoProject]) -> None:
    project = by_control_type(projects, "pairwise")
    assert 10 <= len(project.records) <= 20
    pairwise = next(c for c in project.schema["controls"] if c["type"] == "pairwise")
    rating = next(c for c in project.schema["controls"] if c["type"] == "rating")
    assert (rating["min"], rating["max"]) == (1, 5)
    for record in project.records:
        data = record["data"]
        assert data["prompt"].strip()
        assert [r["id"] for r in data[pairwise["source"]]] == ["a", "b"]
        assert all(r["text"].strip() for r in data[pairwise["source"]])
        if "gold" in record:
            assert record["gold"][pairwise["name"]]["choice"] in {"a", "b", "tie"}
    assert sum("gold" in r for r in project.records) >= 2


# -- the schema package agrees -------------------------------------------------------------------


def test_schemas_and_values_pass_the_schema_package(projects: list[DemoProject]) -> None:
    checked = 0
    for project in projects:
        schema = parse_schema(project.schema)
        required = {c.name for c in schema.controls if c.required}
        for record in project.records:
            media = record.get("meta", {}).get("media", {})
            for value in labelled_values(record):
                # As `labelmill import` checks them; and whole where the value answers every required control.
                check_value(schema, value, data=record["data"], media=media, partial=True)
                if required <= set(value):
                    check_value(schema, value, data=record["data"], media=media)
                checked += 1
    assert checked > 20


def test_schema_package_catches_a_broken_demo_value(projects: list[DemoProject]) -> None:
    """The check above has teeth: a span past the end of its text is refused."""
    project = by_control_type(projects, "spans")
    record = next(r for r in project.records if "gold" in r)
    text = record["data"]["text"]
    bad = {"entities": [{"id": "s1", "start": 0, "end": len(text) + 1, "label": "PER"}]}
    with pytest.raises(AnnotationValueError):
        check_value(parse_schema(project.schema), bad, data=record["data"], partial=True)


# -- determinism ---------------------------------------------------------------------------------


def test_builds_are_deterministic(projects: list[DemoProject]) -> None:
    again = build_demo_projects()
    assert again == projects
