"""Schema parsing and annotation-value validation: one table row per rule."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import pytest

from labelmill.schema import (
    CONTROL_TYPES,
    AnnotationValueError,
    LabelSchema,
    SchemaError,
    ValueIssue,
    categorical_controls,
    check_value,
    control_types,
    empty_value,
    json_schema,
    parse_schema,
    schema_to_json,
    validate_value,
)

FULL: dict[str, Any] = {
    "controls": [
        {"name": "sentiment", "type": "choices", "source": "text", "classes": ["pos", "neg", "neu"]},
        {
            "name": "tags",
            "type": "multi_choices",
            "source": "text",
            "classes": ["a", "b", "c"],
            "min_count": 1,
            "max_count": 2,
        },
        {"name": "entities", "type": "spans", "source": "text", "classes": ["PER", "ORG"]},
        {
            "name": "links",
            "type": "relations",
            "source": "text",
            "classes": ["works_for"],
            "spans": "entities",
        },
        {"name": "objects", "type": "boxes", "source": "image", "classes": ["car", "person"]},
        {"name": "areas", "type": "polygons", "source": "image", "classes": ["road"]},
        {"name": "landmarks", "type": "keypoints", "source": "image", "classes": ["nose"]},
        {"name": "speech", "type": "segments", "source": "audio", "classes": ["speech", "music"]},
        {"name": "cars", "type": "tracks", "source": "video", "classes": ["car"]},
        {"name": "transcript", "type": "transcript", "source": "audio", "max_length": 50},
        {"name": "quality", "type": "rating", "source": "text"},
        {"name": "preference", "type": "pairwise", "source": "responses"},
        {"name": "order", "type": "ranking", "source": "responses"},
        {"name": "comment", "type": "text", "source": "text", "max_length": 20},
    ]
}

TEXT = "Alice works for Acme."  # 21 code points
DATA: dict[str, Any] = {
    "text": TEXT,
    "image": "a.png",
    "audio": "a.wav",
    "video": "a.mp4",
    "responses": [{"id": "r1", "text": "x"}, {"id": "r2", "text": "y"}, {"id": "r3", "text": "z"}],
}
MEDIA: dict[str, dict[str, float]] = {
    "image": {"width": 100, "height": 50},
    "audio": {"duration": 10.0},
    "video": {"width": 64, "height": 48, "frames": 30, "duration": 1.0},
}
VALID: dict[str, Any] = {
    "sentiment": "pos",
    "tags": ["a", "c"],
    "entities": [
        {"id": "s1", "start": 0, "end": 5, "label": "PER"},
        {"id": "s2", "start": 16, "end": 20, "label": "ORG", "text": "Acme"},
    ],
    "links": [{"from": "s1", "to": "s2", "label": "works_for"}],
    "objects": [{"x": 10.0, "y": 20.0, "w": 90.0, "h": 30.0, "label": "car"}],
    "areas": [{"points": [[0, 0], [100, 0], [50, 50]], "label": "road"}],
    "landmarks": [{"x": 1.5, "y": 2, "label": "nose"}],
    "speech": [{"start": 0.5, "end": 10.0, "label": "speech", "text": "hello"}],
    "cars": [
        {
            "id": "t1",
            "label": "car",
            "keyframes": [
                {"frame": 0, "x": 1, "y": 2, "w": 3, "h": 4},
                {"frame": 29, "x": 60, "y": 40, "w": 4, "h": 8},
            ],
        }
    ],
    "transcript": "hello there",
    "quality": 4,
    "preference": {"choice": "a", "rationale": "clearer"},
    "order": ["r2", "r1", "r3"],
    "comment": "fine",
}


@pytest.fixture(scope="module")
def schema() -> LabelSchema:
    return parse_schema(FULL)


def issues_of(schema: LabelSchema, value: dict[str, Any], **kwargs: Any) -> list[ValueIssue]:
    kwargs.setdefault("data", DATA)
    kwargs.setdefault("media", MEDIA)
    return validate_value(schema, value, **kwargs)


def with_answer(control: str, answer: Any) -> dict[str, Any]:
    value = copy.deepcopy(VALID)
    value[control] = answer
    return value


# --------------------------------------------------------------------------- schema parsing


def test_full_schema_parses_and_round_trips(schema: LabelSchema) -> None:
    assert schema.names == [c["name"] for c in FULL["controls"]]
    assert [c.type for c in schema.controls] == list(CONTROL_TYPES)
    dumped = schema_to_json(schema)
    assert json.loads(json.dumps(dumped)) == dumped
    assert parse_schema(dumped) == schema
    assert dumped["controls"][0] == {
        "name": "sentiment",
        "type": "choices",
        "source": "text",
        "classes": ["pos", "neg", "neu"],
        "required": True,
    }


def test_schema_helpers(schema: LabelSchema) -> None:
    assert schema.control("entities").type == "spans"
    assert schema.classes_of("objects") == ["car", "person"]
    assert schema.categories_of("quality") == [1, 2, 3, 4, 5]
    assert schema.categories_of("preference") == ["a", "b", "tie"]
    assert schema.categories_of("sentiment") == ["pos", "neg", "neu"]
    with pytest.raises(KeyError, match="nope"):
        schema.control("nope")
    with pytest.raises(ValueError, match="no classes"):
        schema.classes_of("quality")
    with pytest.raises(ValueError, match="not a categorical"):
        schema.categories_of("entities")


def test_required_defaults(schema: LabelSchema) -> None:
    required = {c.name for c in schema.controls if c.required}
    assert required == {"sentiment", "transcript", "quality", "preference", "order"}


def test_utilities(schema: LabelSchema) -> None:
    assert control_types() == list(CONTROL_TYPES)
    assert len(control_types()) == 14
    assert categorical_controls(schema) == ["sentiment", "quality", "preference"]
    empty = empty_value(schema)
    assert empty == {
        name: [] for name in ("tags", "entities", "links", "objects", "areas", "landmarks", "speech", "cars")
    }
    # tags has min_count 1, so only the tags issue remains besides the required ones
    assert [i.path for i in validate_value(schema, empty, partial=True)] == ["tags"]
    doc = json_schema()
    assert "controls" in doc["properties"]
    assert json.dumps(doc)


def _control(**fields: Any) -> dict[str, Any]:
    return {"controls": [fields]}


BAD_SCHEMAS: list[tuple[str, Any, str]] = [
    (
        "unknown type",
        {
            "controls": [
                {"name": "a", "type": "choices", "source": "text", "classes": ["x"]},
                {"name": "b", "type": "boxs", "source": "image", "classes": ["x"]},
            ]
        },
        "controls[1].type: unknown control type 'boxs' (expected one of: boxes, choices,",
    ),
    ("missing type", _control(name="a", source="t"), "controls[0].type: missing control type"),
    (
        "duplicate class",
        _control(name="a", type="choices", source="t", classes=["pos", "neg", "pos"]),
        "controls[0].classes: duplicate class 'pos'",
    ),
    (
        "empty class",
        _control(name="a", type="spans", source="t", classes=["x", " "]),
        "controls[0].classes[1]: a class must be a non-empty string",
    ),
    (
        "no classes",
        _control(name="a", type="boxes", source="t", classes=[]),
        "controls[0].classes: at least one",
    ),
    (
        "missing classes",
        _control(name="a", type="choices", source="t"),
        "controls[0].classes: required field",
    ),
    (
        "duplicate name",
        {
            "controls": [
                {"name": "a", "type": "text", "source": "t"},
                {"name": "a", "type": "rating", "source": "t"},
            ]
        },
        "controls[1].name: duplicate control name 'a' (also controls[0])",
    ),
    (
        "relation to missing spans",
        _control(name="r", type="relations", source="t", classes=["x"], spans="ents"),
        "controls[0].spans: no control named 'ents'",
    ),
    (
        "relation to a non-spans control",
        {
            "controls": [
                {"name": "ents", "type": "choices", "source": "t", "classes": ["x"]},
                {"name": "r", "type": "relations", "source": "t", "classes": ["x"], "spans": "ents"},
            ]
        },
        "controls[1].spans: control 'ents' is a choices control, not spans",
    ),
    (
        "relation on another source",
        {
            "controls": [
                {"name": "ents", "type": "spans", "source": "t", "classes": ["x"]},
                {"name": "r", "type": "relations", "source": "u", "classes": ["x"], "spans": "ents"},
            ]
        },
        "controls[1].source: relations source 'u' differs",
    ),
    (
        "rating min above max",
        _control(name="q", type="rating", source="t", min=5, max=3),
        "controls[0].max: rating max 3 must be greater than min 5",
    ),
    (
        "rating min equal max",
        _control(name="q", type="rating", source="t", min=5),
        "controls[0].max: rating max 5 must be greater than min 5",
    ),
    (
        "rating bound not an int",
        _control(name="q", type="rating", source="t", max="7"),
        "controls[0].max: expected an integer, got string",
    ),
    (
        "bool is not an int",
        _control(name="q", type="rating", source="t", max=True),
        "controls[0].max: expected an integer, got boolean",
    ),
    (
        "unsafe name",
        _control(name="my label", type="text", source="t"),
        "controls[0].name: control name 'my label' is not a safe identifier",
    ),
    ("empty source", _control(name="a", type="text", source=""), "controls[0].source: source must name"),
    ("missing source", _control(name="a", type="text"), "controls[0].source: required field is missing"),
    (
        "unknown field",
        _control(name="a", type="choices", source="t", classes=["x"], clases=["y"]),
        "controls[0].clases: unknown field (a choices control takes: name, type, source, classes",
    ),
    (
        "field of another type",
        _control(name="a", type="rating", source="t", classes=["x"]),
        "controls[0].classes: unknown field (a rating control takes:",
    ),
    (
        "min_count over classes",
        _control(name="a", type="multi_choices", source="t", classes=["x"], min_count=2),
        "controls[0].min_count: min_count 2 is more than the 1 classes",
    ),
    (
        "max_count under min_count",
        _control(name="a", type="multi_choices", source="t", classes=["x", "y"], min_count=2, max_count=1),
        "controls[0].max_count: max_count 1 is less than min_count 2",
    ),
    (
        "max_length zero",
        _control(name="a", type="text", source="t", max_length=0),
        "controls[0].max_length: max_length 0 must be at least 1",
    ),
    ("no controls", {"controls": []}, "controls: a schema needs at least one control"),
    ("controls missing", {}, "controls: required field is missing"),
    ("controls not a list", {"controls": {}}, "controls: expected a list, got object"),
    ("control not an object", {"controls": ["x"]}, "controls[0]: expected a control (an object), got string"),
    (
        "extra top-level key",
        {"controls": [], "version": 1},
        "version: unknown field (a schema takes: controls)",
    ),
    ("not an object", [], "expected a schema object with a 'controls' list, got list"),
]


@pytest.mark.parametrize(("case", "obj", "expected"), BAD_SCHEMAS, ids=[c[0] for c in BAD_SCHEMAS])
def test_schema_errors(case: str, obj: Any, expected: str) -> None:
    with pytest.raises(SchemaError) as caught:
        parse_schema(obj)
    error = caught.value
    assert isinstance(error, ValueError)
    assert any(line.startswith(expected) for line in error.lines), error.lines
    assert str(error).splitlines() == error.lines
    assert "Input should" not in str(error)  # pydantic's wording never leaks out


def test_schema_error_lists_every_problem() -> None:
    with pytest.raises(SchemaError) as caught:
        parse_schema(
            {
                "controls": [
                    {"name": "a", "type": "choices", "source": "t", "classes": ["x", "x"]},
                    {"name": "b", "type": "boxs", "source": "t"},
                ]
            }
        )
    assert caught.value.lines == [
        "controls[0].classes: duplicate class 'x'",
        "controls[1].type: unknown control type 'boxs' (expected one of: boxes, choices, keypoints, "
        "multi_choices, pairwise, polygons, ranking, rating, relations, segments, spans, text, tracks, "
        "transcript)",
    ]


# --------------------------------------------------------------------------- values


def test_valid_value_has_no_issues(schema: LabelSchema) -> None:
    assert issues_of(schema, VALID) == []
    assert validate_value(schema, VALID) == []  # without item facts too
    check_value(schema, VALID, data=DATA, media=MEDIA)


def test_optional_controls_may_be_absent(schema: LabelSchema) -> None:
    value = {
        k: v for k, v in VALID.items() if k in {"sentiment", "transcript", "quality", "preference", "order"}
    }
    assert issues_of(schema, value) == []


def test_required_and_partial(schema: LabelSchema) -> None:
    value = with_answer("tags", ["a"])
    del value["sentiment"]
    del value["quality"]
    issues = issues_of(schema, value)
    assert [(i.path, i.message) for i in issues] == [
        ("sentiment", "required control has no answer"),
        ("quality", "required control has no answer"),
    ]
    assert issues_of(schema, value, partial=True) == []
    assert issues_of(schema, {"sentiment": "bad"}, partial=True)[0].path == "sentiment"


def test_value_not_an_object(schema: LabelSchema) -> None:
    (issue,) = validate_value(schema, ["pos"])
    assert issue.path == ""
    assert "must be an object keyed by control name, got list" in issue.message


def test_unknown_control(schema: LabelSchema) -> None:
    issues = issues_of(schema, with_answer("sentimnet", "pos"))
    assert [i.path for i in issues] == ["sentimnet"]
    assert "unknown control 'sentimnet'" in issues[0].message


def test_check_value_raises_with_all_issues(schema: LabelSchema) -> None:
    value = with_answer("quality", 9)
    value["sentiment"] = "meh"
    with pytest.raises(AnnotationValueError) as caught:
        check_value(schema, value, data=DATA, media=MEDIA)
    error = caught.value
    assert isinstance(error, ValueError)
    assert [i.path for i in error.issues] == ["sentiment", "quality"]
    assert str(error) == (
        "sentiment: unknown class 'meh' (expected one of: pos, neg, neu); quality: rating 9 is outside 1..5"
    )


NAN = float("nan")
INF = float("inf")
SPAN = {"id": "s1", "start": 0, "end": 5, "label": "PER"}
BOX = {"x": 10.0, "y": 20.0, "w": 30.0, "h": 30.0, "label": "car"}
KF = {"frame": 0, "x": 1, "y": 2, "w": 3, "h": 4}

# (control, answer, expected issue paths in order, a fragment of the first message)
BAD_VALUES: list[tuple[str, Any, list[str], str]] = [
    # choices
    ("sentiment", "happy", ["sentiment"], "unknown class 'happy' (expected one of: pos, neg, neu)"),
    ("sentiment", 1, ["sentiment"], "expected a class name (string), got integer"),
    ("sentiment", None, ["sentiment"], "got null"),
    ("sentiment", ["pos"], ["sentiment"], "got list"),
    # multi_choices
    ("tags", "a", ["tags"], "expected a list of class names, got string"),
    ("tags", ["a", "z"], ["tags[1]"], "unknown class 'z'"),
    ("tags", ["a", "a"], ["tags[1]"], "duplicate class 'a' (also tags[0])"),
    ("tags", [], ["tags"], "0 classes chosen, at least 1 needed"),
    ("tags", ["a", "b", "c"], ["tags"], "3 classes chosen, at most 2 allowed"),
    ("tags", ["a", 3], ["tags[1]"], "got integer"),
    # spans
    ("entities", {"id": "s1"}, ["entities"], "expected a list of spans, got object"),
    ("entities", ["s1"], ["entities[0]"], "expected a span (an object), got string"),
    (
        "entities",
        [{**SPAN, "end": 45}],
        ["entities[0].end"],
        "span end 45 is past the end of the text (length 21)",
    ),
    (
        "entities",
        [{**SPAN, "start": 5, "end": 5}],
        ["entities[0].end"],
        "span end 5 is not after its start 5",
    ),
    ("entities", [{**SPAN, "start": -1}], ["entities[0].start"], "span start -1 is negative"),
    ("entities", [{**SPAN, "start": 0.0}], ["entities[0].start"], "span start must be an integer, got 0.0"),
    ("entities", [{**SPAN, "end": True}], ["entities[0].end"], "span end must be an integer, got boolean"),
    ("entities", [{**SPAN, "end": NAN}], ["entities[0].end"], "span end must be an integer, got nan"),
    ("entities", [{**SPAN, "label": "LOC"}], ["entities[0].label"], "unknown class 'LOC'"),
    ("entities", [SPAN, {**SPAN}], ["entities[1].id"], "duplicate span id 's1' (also entities[0])"),
    ("entities", [{**SPAN, "id": ""}], ["entities[0].id"], "a span id must be a non-empty string"),
    ("entities", [{**SPAN, "id": 1}], ["entities[0].id"], "a span id must be a non-empty string, got 1"),
    ("entities", [{"start": 0, "end": 5, "label": "PER"}], ["entities[0].id"], "the span has no 'id'"),
    (
        "entities",
        [{**SPAN, "score": 0.5}],
        ["entities[0].score"],
        "unknown field (a span has: id, start, end",
    ),
    ("entities", [{**SPAN, "text": "Alicia"}], ["entities[0].text"], "span text 'Alicia' does not match"),
    ("entities", [{**SPAN, "text": 5}], ["entities[0].text"], "span text must be a string, got integer"),
    # relations (the spans in VALID are s1 and s2)
    ("links", [{"from": "s1", "to": "s9", "label": "works_for"}], ["links[0].to"], "no span with id 's9'"),
    (
        "links",
        [{"from": "s1", "to": "s1", "label": "works_for"}],
        ["links[0].to"],
        "cannot link span 's1' to itself",
    ),
    ("links", [{"from": "s1", "to": "s2", "label": "knows"}], ["links[0].label"], "unknown class 'knows'"),
    ("links", [{"from": 1, "to": "s2", "label": "works_for"}], ["links[0].from"], "expected a span id"),
    ("links", [{"from": "s1", "label": "works_for"}], ["links[0].to"], "the relation has no 'to'"),
    (
        "links",
        [{"from": "s1", "to": "s2", "label": "works_for"}] * 2,
        ["links[1]"],
        "duplicate relation (also links[0])",
    ),
    # boxes (image 100x50)
    (
        "objects",
        [{**BOX, "x": 80.0}],
        ["objects[0].w"],
        "box right edge 110 (x + w) is past the image width 100",
    ),
    (
        "objects",
        [{**BOX, "y": 30}],
        ["objects[0].h"],
        "box bottom edge 60 (y + h) is past the image height 50",
    ),
    ("objects", [{**BOX, "x": -1}], ["objects[0].x"], "box x -1 is left of the image"),
    ("objects", [{**BOX, "y": -0.5}], ["objects[0].y"], "box y -0.5 is above the image"),
    ("objects", [{**BOX, "w": 0}], ["objects[0].w"], "box width 0 must be positive"),
    ("objects", [{**BOX, "h": -2}], ["objects[0].h"], "box height -2 must be positive"),
    ("objects", [{**BOX, "x": NAN}], ["objects[0].x"], "box x must be a finite number, got nan"),
    ("objects", [{**BOX, "w": INF}], ["objects[0].w"], "box w must be a finite number, got inf"),
    ("objects", [{**BOX, "x": "10"}], ["objects[0].x"], "box x must be a number, got string"),
    ("objects", [{**BOX, "x": False}], ["objects[0].x"], "got boolean"),
    ("objects", [{**BOX, "label": "bus"}], ["objects[0].label"], "unknown class 'bus'"),
    ("objects", [{"x": 1, "y": 1, "w": 1, "label": "car"}], ["objects[0].h"], "the box has no 'h'"),
    # polygons
    (
        "areas",
        [{"points": [[0, 0], [1, 1]], "label": "road"}],
        ["areas[0].points"],
        "at least 3 points, got 2",
    ),
    (
        "areas",
        [{"points": [[0, 0], [101, 0], [50, 50]], "label": "road"}],
        ["areas[0].points[1]"],
        "point (101, 0) is outside the image (100x50)",
    ),
    ("areas", [{"points": [[0, 0], [1, NAN], [2, 2]], "label": "road"}], ["areas[0].points[1]"], "finite"),
    (
        "areas",
        [{"points": [[0, 0], [1], [2, 2]], "label": "road"}],
        ["areas[0].points[1]"],
        "expected a point [x, y]",
    ),
    ("areas", [{"points": "0,0 1,1 2,2", "label": "road"}], ["areas[0].points"], "expected a list of points"),
    # keypoints
    (
        "landmarks",
        [{"x": 100.5, "y": 2, "label": "nose"}],
        ["landmarks[0]"],
        "keypoint (100.5, 2) is outside",
    ),
    ("landmarks", [{"x": 1, "y": INF, "label": "nose"}], ["landmarks[0].y"], "keypoint y must be a finite"),
    ("landmarks", [{"x": 1, "y": 2, "label": "eye"}], ["landmarks[0].label"], "unknown class 'eye'"),
    # segments (audio 10 s)
    (
        "speech",
        [{"start": 9.0, "end": 12.5, "label": "speech"}],
        ["speech[0].end"],
        "segment end 12.5 is past the end of the media (duration 10)",
    ),
    (
        "speech",
        [{"start": 2, "end": 1, "label": "speech"}],
        ["speech[0].end"],
        "segment end 1 is not after its start 2",
    ),
    (
        "speech",
        [{"start": -1, "end": 1, "label": "speech"}],
        ["speech[0].start"],
        "segment start -1 is negative",
    ),
    ("speech", [{"start": NAN, "end": 1, "label": "speech"}], ["speech[0].start"], "finite number, got nan"),
    ("speech", [{"start": 0, "end": 1, "label": "noise"}], ["speech[0].label"], "unknown class 'noise'"),
    (
        "speech",
        [{"start": 0, "end": 1, "label": "speech", "text": 3}],
        ["speech[0].text"],
        "must be a string",
    ),
    # tracks (video 64x48, 30 frames)
    (
        "cars",
        [{"id": "t1", "label": "car", "keyframes": [{**KF, "frame": 3}, {**KF, "frame": 1}]}],
        ["cars[0].keyframes[1].frame"],
        "keyframes must be sorted by frame: 1 after 3",
    ),
    (
        "cars",
        [{"id": "t1", "label": "car", "keyframes": [KF, KF]}],
        ["cars[0].keyframes[1].frame"],
        "duplicate keyframe for frame 0",
    ),
    (
        "cars",
        [{"id": "t1", "label": "car", "keyframes": [{**KF, "frame": 30}]}],
        ["cars[0].keyframes[0].frame"],
        "frame 30 is past the last frame (the video has 30)",
    ),
    (
        "cars",
        [{"id": "t1", "label": "car", "keyframes": [{**KF, "x": 62}]}],
        ["cars[0].keyframes[0].w"],
        "right edge 65 (x + w) is past the image width 64",
    ),
    (
        "cars",
        [{"id": "t1", "label": "car", "keyframes": [KF]}, {"id": "t1", "label": "car", "keyframes": [KF]}],
        ["cars[1].id"],
        "duplicate track id 't1' (also cars[0])",
    ),
    ("cars", [{"id": "t1", "label": "car", "keyframes": []}], ["cars[0].keyframes"], "at least one keyframe"),
    (
        "cars",
        [{"id": "t1", "label": "car", "keyframes": [{**KF, "frame": 1.0}]}],
        ["cars[0].keyframes[0].frame"],
        "frame must be an integer, got 1.0",
    ),
    # transcript and text
    ("transcript", "x" * 51, ["transcript"], "text is 51 characters long, over the limit of 50"),
    ("transcript", 5, ["transcript"], "expected a string, got integer"),
    ("comment", "y" * 21, ["comment"], "over the limit of 20"),
    ("comment", None, ["comment"], "expected a string, got null"),
    # rating
    ("quality", True, ["quality"], "rating (1..5) must be an integer, got boolean"),
    ("quality", 4.0, ["quality"], "rating (1..5) must be an integer, got 4.0"),
    ("quality", "4", ["quality"], "must be an integer, got string"),
    ("quality", 0, ["quality"], "rating 0 is outside 1..5"),
    ("quality", 6, ["quality"], "rating 6 is outside 1..5"),
    ("quality", NAN, ["quality"], "must be an integer, got nan"),
    # pairwise
    ("preference", "a", ["preference"], "expected a pairwise answer (an object), got string"),
    ("preference", {"choice": "c"}, ["preference.choice"], "choice must be 'a', 'b' or 'tie', got 'c'"),
    (
        "preference",
        {"choice": "a", "why": "x"},
        ["preference.why"],
        "unknown field (a pairwise answer has: choice",
    ),
    ("preference", {"rationale": "x"}, ["preference.choice"], "the pairwise answer has no 'choice'"),
    ("preference", {"choice": "tie", "rationale": 1}, ["preference.rationale"], "rationale must be a string"),
    # ranking (responses r1, r2, r3)
    (
        "order",
        ["r1", "r2", "r9"],
        ["order[2]", "order"],
        "no response with id 'r9' in item field 'responses'",
    ),
    ("order", ["r1", "r1", "r2", "r3"], ["order[1]"], "response 'r1' is ranked twice (also order[0])"),
    ("order", ["r1", "r2"], ["order"], "not ranked: 'r3'"),
    ("order", ["r1", 2, "r3"], ["order[1]", "order"], "expected a response id (string), got integer"),
    ("order", "r1", ["order"], "expected a list of response ids, got string"),
]


@pytest.mark.parametrize(
    ("control", "answer", "paths", "fragment"),
    BAD_VALUES,
    ids=[f"{row[0]}-{i}" for i, row in enumerate(BAD_VALUES)],
)
def test_bad_values(schema: LabelSchema, control: str, answer: Any, paths: list[str], fragment: str) -> None:
    value = with_answer(control, answer)
    if control == "entities":
        value["links"] = []  # the links of VALID point at spans these rows replace
    issues = issues_of(schema, value)
    assert [i.path for i in issues] == paths, issues
    assert fragment in issues[0].message, issues[0].message


GOOD_VALUES: list[tuple[str, Any]] = [
    ("tags", ["b"]),
    ("entities", []),
    ("entities", [{"id": "s1", "start": 0, "end": 21, "label": "PER", "text": TEXT}]),
    ("links", []),
    ("objects", [{"x": 0, "y": 0, "w": 100, "h": 50, "label": "person"}]),
    ("objects", [{"x": 0, "y": 0, "w": 100.00001, "h": 50, "label": "person"}]),  # within EDGE_TOLERANCE
    ("areas", [{"points": [[0, 0], [100, 50], [0, 50], [3.5, 7]], "label": "road"}]),
    ("landmarks", [{"x": 100, "y": 50, "label": "nose"}]),
    ("speech", [{"start": 0, "end": 10, "label": "music"}]),
    ("cars", [{"id": "a", "label": "car", "keyframes": [{"frame": 5, "x": 0, "y": 0, "w": 64, "h": 48}]}]),
    ("transcript", ""),
    ("quality", 1),
    ("quality", 5),
    ("preference", {"choice": "tie"}),
    ("order", ["r3", "r2", "r1"]),
    ("comment", "é" * 20),
]


@pytest.mark.parametrize(
    ("control", "answer"), GOOD_VALUES, ids=[f"{r[0]}-{i}" for i, r in enumerate(GOOD_VALUES)]
)
def test_good_values(schema: LabelSchema, control: str, answer: Any) -> None:
    value = with_answer(control, answer)
    if control == "entities":
        value["links"] = []
    assert issues_of(schema, value) == []


def test_span_offsets_count_code_points() -> None:
    schema = parse_schema(_control(name="e", type="spans", source="t", classes=["X"]))
    text = "😀a🎉"  # 3 code points, 5 UTF-16 units, 9 UTF-8 bytes
    ok = {"e": [{"id": "1", "start": 2, "end": 3, "label": "X", "text": "🎉"}]}
    assert validate_value(schema, ok, data={"t": text}) == []
    bad = {"e": [{"id": "1", "start": 2, "end": 4, "label": "X"}]}
    (issue,) = validate_value(schema, bad, data={"t": text})
    assert (issue.path, issue.message) == ("e[0].end", "span end 4 is past the end of the text (length 3)")


def test_missing_item_fields_are_reported(schema: LabelSchema) -> None:
    data = {k: v for k, v in DATA.items() if k not in {"text", "responses"}}
    issues = issues_of(schema, VALID, data=data)
    messages = {i.path: i.message for i in issues}
    assert set(messages) == {"entities", "order"}
    assert "the item has no data field 'text'" in messages["entities"]
    assert "the item has no data field 'responses'" in messages["order"]


def test_item_field_of_the_wrong_kind(schema: LabelSchema) -> None:
    issues = issues_of(schema, VALID, data={**DATA, "text": 5, "responses": "r1"})
    messages = {i.path: i.message for i in issues}
    assert messages["entities"] == "item data field 'text' is integer, not text"
    assert messages["order"] == "item data field 'responses' is string, not a list of responses"


def test_ranking_accepts_plain_string_responses(schema: LabelSchema) -> None:
    assert issues_of(schema, VALID, data={**DATA, "responses": ["r1", "r2", "r3"]}) == []


def test_without_item_facts_only_shape_is_checked(schema: LabelSchema) -> None:
    value = with_answer("entities", [{"id": "s1", "start": 0, "end": 500, "label": "PER"}])
    value["links"] = []
    value["objects"] = [{"x": 5000, "y": 5000, "w": 1, "h": 1, "label": "car"}]
    assert validate_value(schema, value) == []
    # a negative coordinate is outside every image
    value["objects"] = [{"x": -5, "y": 0, "w": 1, "h": 1, "label": "car"}]
    assert [i.path for i in validate_value(schema, value)] == ["objects[0].x"]


def test_relations_follow_the_spans_of_the_same_value(schema: LabelSchema) -> None:
    value = copy.deepcopy(VALID)
    del value["entities"]
    issues = issues_of(schema, value)
    assert [i.path for i in issues] == ["links[0].from", "links[0].to"]


def test_issue_str() -> None:
    assert str(ValueIssue("a[0].b", "bad")) == "a[0].b: bad"
    assert str(ValueIssue("", "bad")) == "bad"


def test_huge_integers_do_not_crash(schema: LabelSchema) -> None:
    huge = 10**5000
    value = with_answer("quality", huge)
    value["entities"] = [{"id": "s1", "start": 0, "end": huge, "label": "PER"}]
    value["links"] = []
    issues = issues_of(schema, value)
    assert [i.path for i in issues] == ["entities[0].end", "quality"]
    assert math.isfinite(len(str(issues)))


def test_used_schema_still_equals_and_pickles(schema: LabelSchema) -> None:
    import pickle

    assert issues_of(schema, VALID) == []  # builds the cached validation plan
    fresh = parse_schema(FULL)
    assert schema == fresh
    restored = pickle.loads(pickle.dumps(schema))
    assert restored == schema
    assert issues_of(restored, with_answer("quality", 9))[0].path == "quality"
