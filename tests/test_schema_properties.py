"""Property tests: generated valid values validate, single mutations are caught at the
right path, and no input makes the validator raise anything undocumented."""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from labelmill.schema import (
    CONTROL_TYPES,
    AnnotationValueError,
    LabelSchema,
    SchemaError,
    ValueIssue,
    check_value,
    parse_schema,
    validate_value,
)

SOURCES = {
    "choices": "text",
    "multi_choices": "text",
    "spans": "text",
    "relations": "text",
    "boxes": "image",
    "polygons": "image",
    "keypoints": "image",
    "segments": "audio",
    "tracks": "video",
    "transcript": "audio",
    "rating": "text",
    "pairwise": "responses",
    "ranking": "responses",
    "text": "text",
}
CLASSED = {
    "choices",
    "multi_choices",
    "spans",
    "relations",
    "boxes",
    "polygons",
    "keypoints",
    "segments",
    "tracks",
}

class_names = st.text(min_size=1, max_size=8).filter(lambda s: s.strip() != "")
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_", min_size=1, max_size=6)


@st.composite
def control_specs(draw: st.DrawFn, name: str, kind: str, spans_names: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": name, "type": kind, "source": SOURCES[kind]}
    if kind in CLASSED:
        spec["classes"] = draw(st.lists(class_names, min_size=1, max_size=6, unique=True))
    if kind == "relations":
        spec["spans"] = draw(st.sampled_from(spans_names))
    if kind == "multi_choices":
        n = len(spec["classes"])
        low = draw(st.integers(0, n))
        spec["min_count"] = low
        if draw(st.booleans()):
            spec["max_count"] = draw(st.integers(max(low, 1), n + 2))
    if kind == "rating":
        low = draw(st.integers(-10, 10))
        spec["min"], spec["max"] = low, low + draw(st.integers(1, 10))
    if kind in ("text", "transcript") and draw(st.booleans()):
        spec["max_length"] = draw(st.integers(1, 30))
    if draw(st.booleans()):
        spec["required"] = draw(st.booleans())
    return spec


@st.composite
def schemas(draw: st.DrawFn, must_have: str | None = None) -> LabelSchema:
    """A random schema; `must_have` adds a control of that type (after a spans control for relations)."""
    kinds = draw(st.lists(st.sampled_from(CONTROL_TYPES), min_size=1, max_size=7))
    if must_have is not None:
        kinds += ["spans", "relations"] if must_have == "relations" else [must_have]
    controls: list[dict[str, Any]] = []
    spans_names: list[str] = []
    for index, kind in enumerate(kinds):
        if kind == "relations" and not spans_names:
            kind = "spans"
        name = f"c{index}_{kind}"
        controls.append(draw(control_specs(name, kind, spans_names)))
        if kind == "spans":
            spans_names.append(name)
    return parse_schema({"controls": controls})


@st.composite
def items(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    data = {
        "text": draw(st.text(min_size=1, max_size=40)),
        "image": "img.png",
        "audio": "a.wav",
        "video": "v.mp4",
        "responses": [{"id": i} for i in draw(st.lists(ids, min_size=1, max_size=5, unique=True))],
    }
    media = {
        "image": {"width": draw(st.integers(1, 4000)), "height": draw(st.integers(1, 4000))},
        "audio": {"duration": draw(st.floats(0.01, 1e4))},
        "video": {
            "width": draw(st.integers(1, 4000)),
            "height": draw(st.integers(1, 4000)),
            "frames": draw(st.integers(1, 500)),
        },
    }
    return data, media


fractions = st.floats(0.0, 1.0)


@st.composite
def rect(draw: st.DrawFn, width: float, height: float) -> dict[str, float]:
    x0, x1 = sorted(draw(st.lists(fractions, min_size=2, max_size=2)))
    y0, y1 = sorted(draw(st.lists(fractions, min_size=2, max_size=2)))
    assume(x1 > x0 and y1 > y0)
    return {"x": x0 * width, "y": y0 * height, "w": (x1 - x0) * width, "h": (y1 - y0) * height}


@st.composite
def answers(
    draw: st.DrawFn, control: Any, value: dict[str, Any], data: dict[str, Any], media: Any, at_least: int = 0
) -> Any:
    """A valid answer; list answers get at least `at_least` entries where the item allows."""
    kind = control.type
    count = st.integers(at_least, at_least + 3)
    labels = st.sampled_from(control.classes) if kind in CLASSED else st.nothing()
    if kind == "choices":
        return draw(labels)
    if kind == "multi_choices":
        high = control.max_count if control.max_count is not None else len(control.classes)
        chosen = draw(st.integers(max(control.min_count, at_least), min(high, len(control.classes))))
        return draw(st.permutations(control.classes))[:chosen]
    if kind == "spans":
        n = len(data["text"])
        spans = []
        for index in range(draw(count)):
            start = draw(st.integers(0, n - 1))
            end = draw(st.integers(start + 1, n))
            spans.append({"id": f"s{index}", "start": start, "end": end, "label": draw(labels)})
        return spans
    if kind == "relations":
        spans = value.get(control.spans, [])
        span_ids = [s["id"] for s in spans]
        if len(span_ids) < 2:
            return []
        pairs = draw(
            st.lists(
                st.permutations(span_ids).map(lambda p: tuple(p[:2])),
                min_size=at_least,
                max_size=3,
                unique=True,
            )
        )
        label = draw(labels)
        return [{"from": a, "to": b, "label": label} for a, b in pairs]
    if kind == "boxes":
        size = media["image"]
        return [
            {**draw(rect(size["width"], size["height"])), "label": draw(labels)} for _ in range(draw(count))
        ]
    if kind == "keypoints":
        size = media["image"]
        return [
            {
                "x": draw(fractions) * size["width"],
                "y": draw(fractions) * size["height"],
                "label": draw(labels),
            }
            for _ in range(draw(count))
        ]
    if kind == "polygons":
        size = media["image"]
        point = st.tuples(fractions, fractions).map(lambda p: [p[0] * size["width"], p[1] * size["height"]])
        return [
            {"points": draw(st.lists(point, min_size=3, max_size=6)), "label": draw(labels)}
            for _ in range(draw(count))
        ]
    if kind == "segments":
        duration = media["audio"]["duration"]
        out = []
        for _ in range(draw(count)):
            a, b = sorted(draw(st.lists(fractions, min_size=2, max_size=2)))
            assume(b > a)
            segment = {"start": a * duration, "end": b * duration, "label": draw(labels)}
            if draw(st.booleans()):
                segment["text"] = draw(st.text(max_size=10))
            out.append(segment)
        return out
    if kind == "tracks":
        video = media["video"]
        tracks = []
        for index in range(draw(count)):
            frames = sorted(draw(st.sets(st.integers(0, video["frames"] - 1), min_size=1, max_size=4)))
            keyframes = [{"frame": f, **draw(rect(video["width"], video["height"]))} for f in frames]
            tracks.append({"id": f"t{index}", "label": draw(labels), "keyframes": keyframes})
        return tracks
    if kind in ("text", "transcript"):
        return draw(st.text(max_size=control.max_length if control.max_length is not None else 30))
    if kind == "rating":
        return draw(st.integers(control.min, control.max))
    if kind == "pairwise":
        answer = {"choice": draw(st.sampled_from(["a", "b", "tie"]))}
        if draw(st.booleans()):
            answer["rationale"] = draw(st.text(max_size=10))
        return answer
    if kind == "ranking":
        return draw(st.permutations([r["id"] for r in data["responses"]]))
    raise AssertionError(kind)


@st.composite
def valid_cases(
    draw: st.DrawFn, must_have: str | None = None
) -> tuple[LabelSchema, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(schema, valid value, item data, item media); the last control is of type `must_have`
    and is answered with at least one entry, so mutation tests always have something to break."""
    schema = draw(schemas(must_have))
    data, media = draw(items())
    forced: dict[str, int] = {}
    if must_have is not None:
        last = schema.controls[-1]
        forced[last.name] = 1
        if last.type == "relations":
            forced[last.spans] = 2
    value: dict[str, Any] = {}
    for control in schema.controls:
        if control.required or control.name in forced or draw(st.booleans()):
            value[control.name] = draw(answers(control, value, data, media, forced.get(control.name, 0)))
    return schema, value, data, media


COMMON = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@COMMON
@given(valid_cases())
def test_generated_valid_values_validate(case: tuple[LabelSchema, dict[str, Any], Any, Any]) -> None:
    schema, value, data, media = case
    assert validate_value(schema, value, data=data, media=media) == []
    check_value(schema, value, data=data, media=media)
    assert validate_value(schema, value) == []  # item facts only ever add issues


def paths(issues: list[ValueIssue]) -> set[str]:
    return {issue.path for issue in issues}


def forced(schema: LabelSchema) -> str:
    """The name of the control `valid_cases(must_have=...)` made sure is answered."""
    return schema.controls[-1].name


@COMMON
@given(valid_cases("spans"), st.data())
def test_span_end_past_text_is_caught(case: Any, extra: st.DataObject) -> None:
    schema, value, data, media = case
    name = forced(schema)
    value = copy.deepcopy(value)
    index = extra.draw(st.integers(0, len(value[name]) - 1))
    value[name][index]["end"] = len(data["text"]) + extra.draw(st.integers(1, 10**6))
    issues = validate_value(schema, value, data=data, media=media)
    assert f"{name}[{index}].end" in paths(issues)


@COMMON
@given(valid_cases("boxes"), st.data())
def test_box_outside_image_is_caught(case: Any, extra: st.DataObject) -> None:
    schema, value, data, media = case
    name = forced(schema)
    value = copy.deepcopy(value)
    index = extra.draw(st.integers(0, len(value[name]) - 1))
    box = value[name][index]
    # every overshoot drawn is >= 0.01 px, above EDGE_TOLERANCE on images of at most 4000 px
    where = extra.draw(st.sampled_from(["x", "y", "w", "h"]))
    if where == "x":
        box["x"] = -extra.draw(st.floats(0.01, 1e6))
    elif where == "y":
        box["y"] = -extra.draw(st.floats(0.01, 1e6))
    elif where == "w":
        box["w"] = media["image"]["width"] - box["x"] + extra.draw(st.floats(0.01, 1e6))
    else:
        box["h"] = media["image"]["height"] - box["y"] + extra.draw(st.floats(0.01, 1e6))
    issues = validate_value(schema, value, data=data, media=media)
    assert f"{name}[{index}].{where}" in paths(issues)


@COMMON
@given(
    st.sampled_from(["choices", "multi_choices", "boxes", "spans", "segments"]).flatmap(valid_cases),
    st.data(),
)
def test_unknown_class_is_caught(case: Any, extra: st.DataObject) -> None:
    schema, value, data, media = case
    name = forced(schema)
    control = schema.control(name)
    stranger = extra.draw(st.text(min_size=1, max_size=9).filter(lambda s: s not in schema.classes_of(name)))
    value = copy.deepcopy(value)
    if control.type == "choices":
        value[name] = stranger
        path = name
    elif control.type == "multi_choices":
        index = extra.draw(st.integers(0, len(value[name]) - 1))
        value[name][index] = stranger
        path = f"{name}[{index}]"
    else:
        index = extra.draw(st.integers(0, len(value[name]) - 1))
        value[name][index]["label"] = stranger
        path = f"{name}[{index}].label"
    issues = validate_value(schema, value, data=data, media=media)
    assert path in paths(issues)
    assert any("unknown class" in i.message for i in issues if i.path == path)


@COMMON
@given(valid_cases("relations"), st.data())
def test_relation_to_missing_span_is_caught(case: Any, extra: st.DataObject) -> None:
    schema, value, data, media = case
    name = forced(schema)
    control = schema.control(name)
    assert control.type == "relations"
    span_ids = {s["id"] for s in value.get(control.spans, [])}
    value = copy.deepcopy(value)
    index = extra.draw(st.integers(0, len(value[name]) - 1))
    end = extra.draw(st.sampled_from(["from", "to"]))
    value[name][index][end] = extra.draw(ids.filter(lambda i: i not in span_ids))
    issues = validate_value(schema, value, data=data, media=media)
    assert f"{name}[{index}].{end}" in paths(issues)


@COMMON
@given(valid_cases("rating"))
def test_bool_rating_is_caught(case: Any) -> None:
    schema, value, data, media = case
    name = forced(schema)
    for flag in (True, False):
        issues = validate_value(schema, {**value, name: flag}, data=data, media=media)
        assert name in paths(issues)


@COMMON
@given(
    st.sampled_from(["boxes", "keypoints", "segments", "polygons", "tracks"]).flatmap(valid_cases), st.data()
)
def test_nan_and_infinity_are_caught(case: Any, extra: st.DataObject) -> None:
    schema, value, data, media = case
    name = forced(schema)
    kind = schema.control(name).type
    bad = extra.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    value = copy.deepcopy(value)
    index = extra.draw(st.integers(0, len(value[name]) - 1))
    entry = value[name][index]
    if kind == "polygons":
        point = extra.draw(st.integers(0, len(entry["points"]) - 1))
        entry["points"][point][extra.draw(st.integers(0, 1))] = bad
        path = f"{name}[{index}].points[{point}]"
    elif kind == "tracks":
        frame = extra.draw(st.integers(0, len(entry["keyframes"]) - 1))
        key = extra.draw(st.sampled_from(["x", "y", "w", "h"]))
        entry["keyframes"][frame][key] = bad
        path = f"{name}[{index}].keyframes[{frame}].{key}"
    else:
        key = extra.draw(st.sampled_from(["start", "end"] if kind == "segments" else ["x", "y"]))
        entry[key] = bad
        path = f"{name}[{index}].{key}"
    issues = validate_value(schema, value, data=data, media=media)
    assert path in paths(issues)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


def _must_not_crash(schema: LabelSchema, value: Any, data: Any, media: Any, partial: bool) -> None:
    issues = validate_value(schema, value, data=data, media=media, partial=partial)
    assert isinstance(issues, list)
    assert all(isinstance(i, ValueIssue) and isinstance(i.path, str) and i.message for i in issues)
    try:
        check_value(schema, value, data=data, media=media, partial=partial)
    except AnnotationValueError as error:
        assert error.issues == issues
    else:
        assert issues == []


@settings(max_examples=400, deadline=None)
@given(
    schemas(),
    json_values,
    st.one_of(st.none(), json_values),
    st.one_of(st.none(), json_values),
    st.booleans(),
)
def test_arbitrary_json_never_crashes(
    schema: LabelSchema, value: Any, data: Any, media: Any, partial: bool
) -> None:
    _must_not_crash(schema, value, data, media, partial)


@settings(max_examples=200, deadline=None)
@given(schemas(), st.data())
def test_arbitrary_answers_never_crash(schema: LabelSchema, extra: st.DataObject) -> None:
    # keyed by the real control names so every control's checker sees junk, not just "unknown control"
    value = {
        c.name: extra.draw(json_values | answer_shaped(c.type))
        for c in schema.controls
        if extra.draw(st.booleans())
    }
    data = extra.draw(st.one_of(st.none(), items().map(lambda pair: pair[0]), json_values))
    media = extra.draw(st.one_of(st.none(), items().map(lambda pair: pair[1]), json_values))
    _must_not_crash(schema, value, data, media, extra.draw(st.booleans()))


def answer_shaped(kind: str) -> st.SearchStrategy[Any]:
    """Junk with the right keys, so checks below the object level run too."""
    keys = {
        "spans": ["id", "start", "end", "label", "text"],
        "relations": ["from", "to", "label"],
        "boxes": ["x", "y", "w", "h", "label"],
        "polygons": ["points", "label"],
        "keypoints": ["x", "y", "label"],
        "segments": ["start", "end", "label", "text"],
        "tracks": ["id", "label", "keyframes"],
        "pairwise": ["choice", "rationale"],
    }.get(kind)
    if keys is None:
        return json_values
    leaf = json_values | st.lists(st.lists(json_values, max_size=3), max_size=4)
    entry = st.fixed_dictionaries({}, optional=dict.fromkeys(keys, leaf))
    return entry if kind == "pairwise" else st.lists(entry, max_size=3)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_parse_schema_raises_only_schema_error(obj: Any) -> None:
    try:
        parse_schema({"controls": obj} if not isinstance(obj, dict) else obj)
    except SchemaError as error:
        assert error.lines and all(line.strip() for line in error.lines)
