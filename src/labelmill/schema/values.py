"""Validation of one annotation value against its schema and its item.

Every annotation, prediction, gold answer and imported label passes through here, often in
bulk (an import of a million pre-labels), so the checks are plain Python over the decoded
JSON, compiled once per schema into one closure per control, rather than a pydantic model
per value. The rules, beyond "the shape in DESIGN.md's table":

* JSON types are exact: ``true`` is not a rating, ``"4"`` is not a rating, ``4.0`` is not
  a span offset, ``null`` is not an answer (leave the key out instead). Arrays may be lists
  or tuples. NaN and infinities are rejected wherever a number is expected.
* Text offsets count code points of ``data[source]`` (Python ``len``), end exclusive.
* Geometry must lie inside the image when import recorded its size. Edges may overshoot by
  ``EDGE_TOLERANCE`` times the image side (a millionth: 0.001 px on a 1000 px image), so
  boxes converted from normalised coordinates and back are not rejected for float round-off.
  A negative coordinate is outside every image and is rejected even when the size is unknown.
* Facts about the item (the text, the responses, the media size) are checked only when the
  caller passes them; when `data` is passed but lacks the needed field, that is an issue.
* ``partial=True`` (predictions, pre-labels) skips only the "required control has no
  answer" check; everything that is present is still checked in full.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from labelmill.schema.controls import (
    PAIRWISE_CHOICES,
    BoxesControl,
    ChoicesControl,
    Control,
    KeypointsControl,
    LabelSchema,
    MultiChoicesControl,
    PairwiseControl,
    PolygonsControl,
    RankingControl,
    RatingControl,
    RelationsControl,
    SegmentsControl,
    SpansControl,
    TextControl,
    TracksControl,
    TranscriptControl,
)
from labelmill.schema.errors import AnnotationValueError, ValueIssue
from labelmill.schema.parsing import json_kind

#: How far (relative to the image side or media duration) geometry may overshoot an edge.
EDGE_TOLERANCE = 1e-6

_ARRAY = (list, tuple)
_MAX_LISTED = 12

_short = reprlib.Repr()
_short.maxstring = 40
_short.maxother = 40
_short.maxlist = 4
_short.maxdict = 4
_short.maxlevel = 2


def validate_value(
    schema: LabelSchema,
    value: object,
    *,
    data: Mapping[str, Any] | None = None,
    media: Mapping[str, Mapping[str, float]] | None = None,
    partial: bool = False,
) -> list[ValueIssue]:
    """Every problem with `value` as an answer to `schema` for the item (`data`, `media`).

    Returns an empty list for a valid value. Never raises on JSON-like input: a value is
    data from outside (an annotator, a model, a file), and its problems are results.
    """
    plan = _plan_for(schema)
    issues: list[ValueIssue] = []
    if not isinstance(value, Mapping):
        issues.append(
            ValueIssue(
                "", f"an annotation value must be an object keyed by control name, got {json_kind(value)}"
            )
        )
        return issues
    item = _Item(value, data, media)
    checks = plan.checks
    for key, answer in value.items():
        check = checks.get(key) if isinstance(key, str) else None
        if check is None:
            issues.append(
                ValueIssue(str(key), f"unknown control {_show(key)} (schema controls: {plan.listing})")
            )
        else:
            check(answer, key, item, issues)
    if not partial:
        for name in plan.required:
            if name not in value:
                issues.append(ValueIssue(name, "required control has no answer"))
    return issues


def check_value(
    schema: LabelSchema,
    value: object,
    *,
    data: Mapping[str, Any] | None = None,
    media: Mapping[str, Mapping[str, float]] | None = None,
    partial: bool = False,
) -> None:
    """Like `validate_value`, for callers that want to stop at a bad value.

    Raises `AnnotationValueError` carrying every issue, so one round trip shows them all.
    """
    issues = validate_value(schema, value, data=data, media=media, partial=partial)
    if issues:
        raise AnnotationValueError(issues)


# --------------------------------------------------------------------------- plumbing


class _Item:
    """What one validation call knows about the item, shared by the control checks."""

    __slots__ = ("data", "media", "value")

    def __init__(
        self,
        value: Mapping[Any, Any],
        data: Mapping[str, Any] | None,
        media: Mapping[str, Mapping[str, float]] | None,
    ) -> None:
        self.value = value
        self.data = data
        self.media = media

    def field(self, source: str, path: str, needed_for: str, issues: list[ValueIssue]) -> object:
        """`data[source]`, or `_UNKNOWN` (with an issue when data was given but lacks it)."""
        if self.data is None:
            return _UNKNOWN
        if not isinstance(self.data, Mapping) or source not in self.data:
            issues.append(ValueIssue(path, f"the item has no data field {source!r} to check {needed_for}"))
            return _UNKNOWN
        return self.data[source]

    def measure(self, source: str, key: str) -> float | None:
        """A positive finite media measurement recorded at import (width, duration, ...)."""
        if self.media is None:
            return None
        recorded = self.media.get(source) if isinstance(self.media, Mapping) else None
        if not isinstance(recorded, Mapping):
            return None
        number = recorded.get(key)
        if isinstance(number, bool) or not isinstance(number, int | float):
            return None
        try:
            measured = float(number)
        except OverflowError:
            return None
        return measured if math.isfinite(measured) and measured > 0 else None


_UNKNOWN = object()

Check = Callable[[object, str, _Item, list[ValueIssue]], None]


@dataclass(frozen=True, slots=True)
class _Plan:
    checks: dict[str, Check]
    required: tuple[str, ...]
    listing: str


def _plan_for(schema: LabelSchema) -> _Plan:
    plan = schema._validation_plan
    if plan is None:
        plan = _Plan(
            checks={control.name: _CHECK_BUILDERS[control.type](control) for control in schema.controls},
            required=tuple(control.name for control in schema.controls if control.required),
            listing=", ".join(schema.names),
        )
        schema._validation_plan = plan
    assert isinstance(plan, _Plan)
    return plan


def _show(value: object) -> str:
    return _short.repr(value)


def _num(value: float) -> str:
    """A number for a message: ``130`` not ``130.0``, and no crash on a 5000-digit integer."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "(a huge integer)"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _is_number(value: object) -> bool:
    """A finite JSON number (bool is not a number here, though Python says it is an int)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, float) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _not_a_number(value: object, what: str) -> str:
    if isinstance(value, float):
        return f"{what} must be a finite number, got {value!r}"
    return f"{what} must be a number, got {json_kind(value)}"


def _not_an_int(value: object, what: str) -> str:
    if isinstance(value, float):
        return f"{what} must be an integer, got {value!r}"
    return f"{what} must be an integer, got {json_kind(value)}"


def _unknown_class(label: str, classes: list[str]) -> str:
    listed = ", ".join(classes[:_MAX_LISTED]) + (", ..." if len(classes) > _MAX_LISTED else "")
    return f"unknown class {_show(label)} (expected one of: {listed})"


def _check_label(
    entry: Mapping[Any, Any], path: str, classes: frozenset[str], names: list[str], issues: list[ValueIssue]
) -> None:
    if "label" not in entry:
        return
    label = entry["label"]
    if not isinstance(label, str):
        issues.append(ValueIssue(f"{path}.label", f"expected a class name (string), got {json_kind(label)}"))
    elif label not in classes:
        issues.append(ValueIssue(f"{path}.label", _unknown_class(label, names)))


class _Shape:
    """The keys of one kind of object inside a value (a span, a box, ...)."""

    __slots__ = ("allowed", "keys", "required", "what")

    def __init__(self, what: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
        self.what = what
        self.required = required
        self.allowed = frozenset(required + optional)
        self.keys = ", ".join(required + optional)

    def check(self, entry: object, path: str, issues: list[ValueIssue]) -> bool:
        """Report a non-object, unknown keys and missing keys; True if `entry` is an object."""
        if not isinstance(entry, dict):
            issues.append(ValueIssue(path, f"expected a {self.what} (an object), got {json_kind(entry)}"))
            return False
        if not self.allowed.issuperset(entry):
            for key in entry:
                if key not in self.allowed:
                    issues.append(
                        ValueIssue(f"{path}.{key}", f"unknown field (a {self.what} has: {self.keys})")
                    )
        for key in self.required:
            if key not in entry:
                issues.append(ValueIssue(f"{path}.{key}", f"the {self.what} has no {key!r}"))
        return True


_SPAN = _Shape("span", ("id", "start", "end", "label"), ("text",))
_RELATION = _Shape("relation", ("from", "to", "label"))
_BOX = _Shape("box", ("x", "y", "w", "h", "label"))
_POLYGON = _Shape("polygon", ("points", "label"))
_KEYPOINT = _Shape("keypoint", ("x", "y", "label"))
_SEGMENT = _Shape("segment", ("start", "end", "label"), ("text",))
_TRACK = _Shape("track", ("id", "label", "keyframes"))
_KEYFRAME = _Shape("keyframe", ("frame", "x", "y", "w", "h"))
_PAIRWISE = _Shape("pairwise answer", ("choice",), ("rationale",))


def _expect_list(answer: object, path: str, what: str, issues: list[ValueIssue]) -> bool:
    if isinstance(answer, _ARRAY):
        return True
    issues.append(ValueIssue(path, f"expected a list of {what}, got {json_kind(answer)}"))
    return False


def _check_id(
    entry: Mapping[Any, Any],
    list_path: str,
    index: int,
    what: str,
    first: dict[str, int],
    issues: list[ValueIssue],
) -> None:
    """A non-empty string id, unique within the list at `list_path` (`first`: id -> index)."""
    if "id" not in entry:
        return
    ident = entry["id"]
    where = f"{list_path}[{index}].id"
    if not isinstance(ident, str) or not ident:
        issues.append(ValueIssue(where, f"a {what} id must be a non-empty string, got {_show(ident)}"))
    elif ident in first:
        issues.append(ValueIssue(where, f"duplicate {what} id {ident!r} (also {list_path}[{first[ident]}])"))
    else:
        first[ident] = index


def _check_rect(
    entry: Mapping[Any, Any],
    path: str,
    width: float | None,
    height: float | None,
    what: str,
    issues: list[ValueIssue],
) -> None:
    """x, y, w, h of a box (or a track keyframe): finite, positive size, inside the image."""
    ok = True
    for key in ("x", "y", "w", "h"):
        if key in entry and not _is_number(entry[key]):
            issues.append(ValueIssue(f"{path}.{key}", _not_a_number(entry[key], f"{what} {key}")))
            ok = False
    if not ok or not ("x" in entry and "y" in entry and "w" in entry and "h" in entry):
        return
    x, y, w, h = entry["x"], entry["y"], entry["w"], entry["h"]
    if w <= 0:
        issues.append(ValueIssue(f"{path}.w", f"{what} width {_num(w)} must be positive"))
    if h <= 0:
        issues.append(ValueIssue(f"{path}.h", f"{what} height {_num(h)} must be positive"))
    slack_x = EDGE_TOLERANCE * (width if width is not None else 1.0)
    slack_y = EDGE_TOLERANCE * (height if height is not None else 1.0)
    if x < -slack_x:
        issues.append(ValueIssue(f"{path}.x", f"{what} x {_num(x)} is left of the image"))
    if y < -slack_y:
        issues.append(ValueIssue(f"{path}.y", f"{what} y {_num(y)} is above the image"))
    if width is not None and w > 0 and x + w > width + slack_x:
        issues.append(
            ValueIssue(
                f"{path}.w", f"{what} right edge {_num(x + w)} (x + w) is past the image width {_num(width)}"
            )
        )
    if height is not None and h > 0 and y + h > height + slack_y:
        issues.append(
            ValueIssue(
                f"{path}.h",
                f"{what} bottom edge {_num(y + h)} (y + h) is past the image height {_num(height)}",
            )
        )


def _check_point(
    x: float,
    y: float,
    path: str,
    width: float | None,
    height: float | None,
    what: str,
    issues: list[ValueIssue],
) -> None:
    slack_x = EDGE_TOLERANCE * (width if width is not None else 1.0)
    slack_y = EDGE_TOLERANCE * (height if height is not None else 1.0)
    if (
        x < -slack_x
        or y < -slack_y
        or (width is not None and x > width + slack_x)
        or (height is not None and y > height + slack_y)
    ):
        size = f"{_num(width) if width is not None else '?'}x{_num(height) if height is not None else '?'}"
        issues.append(ValueIssue(path, f"{what} ({_num(x)}, {_num(y)}) is outside the image ({size})"))


# --------------------------------------------------------------------------- control checks


def _choices(control: Control) -> Check:
    assert isinstance(control, ChoicesControl)
    classes, names = control.class_set, control.classes

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not isinstance(answer, str):
            issues.append(ValueIssue(path, f"expected a class name (string), got {json_kind(answer)}"))
        elif answer not in classes:
            issues.append(ValueIssue(path, _unknown_class(answer, names)))

    return check


def _multi_choices(control: Control) -> Check:
    assert isinstance(control, MultiChoicesControl)
    classes, names = control.class_set, control.classes
    min_count, max_count = control.min_count, control.max_count

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _expect_list(answer, path, "class names", issues):
            return
        assert isinstance(answer, _ARRAY)
        first: dict[str, int] = {}
        for index, label in enumerate(answer):
            where = f"{path}[{index}]"
            if not isinstance(label, str):
                issues.append(ValueIssue(where, f"expected a class name (string), got {json_kind(label)}"))
            elif label not in classes:
                issues.append(ValueIssue(where, _unknown_class(label, names)))
            elif label in first:
                issues.append(ValueIssue(where, f"duplicate class {label!r} (also {path}[{first[label]}])"))
            else:
                first[label] = index
        count = len(answer)
        if count < min_count:
            issues.append(ValueIssue(path, f"{count} classes chosen, at least {min_count} needed"))
        if max_count is not None and count > max_count:
            issues.append(ValueIssue(path, f"{count} classes chosen, at most {max_count} allowed"))

    return check


def _spans(control: Control) -> Check:
    assert isinstance(control, SpansControl)
    classes, names, source = control.class_set, control.classes, control.source

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _expect_list(answer, path, "spans", issues):
            return
        assert isinstance(answer, _ARRAY)
        text: object = None  # looked up on the first span that needs it
        first: dict[str, int] = {}
        for index, span in enumerate(answer):
            where = f"{path}[{index}]"
            if not _SPAN.check(span, where, issues):
                continue
            assert isinstance(span, dict)
            _check_id(span, path, index, "span", first, issues)
            _check_label(span, where, classes, names, issues)
            shown = span.get("text")
            if "text" in span and not isinstance(shown, str):
                issues.append(
                    ValueIssue(f"{where}.text", f"span text must be a string, got {json_kind(shown)}")
                )
                shown = None
            start = _offset(span, "start", where, issues)
            end = _offset(span, "end", where, issues)
            if start is not None and start < 0:
                issues.append(ValueIssue(f"{where}.start", f"span start {_num(start)} is negative"))
                start = None
            if start is not None and end is not None and end <= start:
                issues.append(
                    ValueIssue(f"{where}.end", f"span end {_num(end)} is not after its start {_num(start)}")
                )
                continue
            if end is None:
                continue
            if text is None:
                text = item.field(source, path, "span offsets against", issues)
                if text is not _UNKNOWN and not isinstance(text, str):
                    issues.append(
                        ValueIssue(path, f"item data field {source!r} is {json_kind(text)}, not text")
                    )
                    text = _UNKNOWN
            if not isinstance(text, str):
                continue
            if end > len(text):
                issues.append(
                    ValueIssue(
                        f"{where}.end",
                        f"span end {_num(end)} is past the end of the text (length {len(text)})",
                    )
                )
            elif start is not None and shown is not None and shown != text[start:end]:
                issues.append(
                    ValueIssue(
                        f"{where}.text",
                        f"span text {_show(shown)} does not match the text at {start}..{end} "
                        f"({_show(text[start:end])})",
                    )
                )

    return check


def _offset(span: Mapping[Any, Any], key: str, where: str, issues: list[ValueIssue]) -> int | None:
    """A span offset if present and an integer (reported otherwise)."""
    if key not in span:
        return None
    offset = span[key]
    if isinstance(offset, int) and not isinstance(offset, bool):
        return offset
    issues.append(ValueIssue(f"{where}.{key}", _not_an_int(offset, f"span {key}")))
    return None


def _relations(control: Control) -> Check:
    assert isinstance(control, RelationsControl)
    classes, names, spans_name = control.class_set, control.classes, control.spans

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _expect_list(answer, path, "relations", issues):
            return
        assert isinstance(answer, _ARRAY)
        spans = item.value.get(spans_name, ())
        # spans that are not even a list are reported there; checking references against
        # them would only repeat that problem once per relation
        ids: set[str] | None = None
        if isinstance(spans, _ARRAY):
            ids = set()
            for span in spans:
                if isinstance(span, dict):
                    ident = span.get("id")
                    if isinstance(ident, str):
                        ids.add(ident)
        first: dict[tuple[str, str, str], int] = {}
        for index, relation in enumerate(answer):
            where = f"{path}[{index}]"
            if not _RELATION.check(relation, where, issues):
                continue
            assert isinstance(relation, dict)
            _check_label(relation, where, classes, names, issues)
            ends_ok = True
            for key in ("from", "to"):
                if key not in relation:
                    ends_ok = False
                    continue
                ref = relation[key]
                if not isinstance(ref, str):
                    issues.append(
                        ValueIssue(f"{where}.{key}", f"expected a span id (string), got {json_kind(ref)}")
                    )
                    ends_ok = False
                elif ids is not None and ref not in ids:
                    issues.append(
                        ValueIssue(f"{where}.{key}", f"no span with id {_show(ref)} in {spans_name!r}")
                    )
            if not ends_ok:
                continue
            source_id, target_id, label = relation["from"], relation["to"], relation.get("label")
            if source_id == target_id:
                issues.append(
                    ValueIssue(f"{where}.to", f"a relation cannot link span {_show(source_id)} to itself")
                )
            elif isinstance(label, str):
                key3 = (source_id, target_id, label)
                if key3 in first:
                    issues.append(ValueIssue(where, f"duplicate relation (also {path}[{first[key3]}])"))
                else:
                    first[key3] = index

    return check


def _boxes(control: Control) -> Check:
    assert isinstance(control, BoxesControl)
    classes, names, source = control.class_set, control.classes, control.source

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _expect_list(answer, path, "boxes", issues):
            return
        assert isinstance(answer, _ARRAY)
        width, height = item.measure(source, "width"), item.measure(source, "height")
        for index, box in enumerate(answer):
            where = f"{path}[{index}]"
            if _BOX.check(box, where, issues):
                assert isinstance(box, dict)
                _check_label(box, where, classes, names, issues)
                _check_rect(box, where, width, height, "box", issues)

    return check


def _polygons(control: Control) -> Check:
    assert isinstance(control, PolygonsControl)
    classes, names, source = control.class_set, control.classes, control.source

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _expect_list(answer, path, "polygons", issues):
            return
        assert isinstance(answer, _ARRAY)
        width, height = item.measure(source, "width"), item.measure(source, "height")
        for index, polygon in enumerate(answer):
            where = f"{path}[{index}]"
            if not _POLYGON.check(polygon, where, issues):
                continue
            assert isinstance(polygon, dict)
            _check_label(polygon, where, classes, names, issues)
            if "points" not in polygon:
                continue
            points = polygon["points"]
            if not _expect_list(points, f"{where}.points", "points", issues):
                continue
            assert isinstance(points, _ARRAY)
            if len(points) < 3:
                issues.append(
                    ValueIssue(f"{where}.points", f"a polygon needs at least 3 points, got {len(points)}")
                )
            for number, point in enumerate(points):
                at = f"{where}.points[{number}]"
                if not (isinstance(point, _ARRAY) and len(point) == 2):
                    issues.append(ValueIssue(at, f"expected a point [x, y], got {_show(point)}"))
                elif not (_is_number(point[0]) and _is_number(point[1])):
                    issues.append(
                        ValueIssue(at, f"point coordinates must be finite numbers, got {_show(point)}")
                    )
                else:
                    _check_point(point[0], point[1], at, width, height, "point", issues)

    return check


def _keypoints(control: Control) -> Check:
    assert isinstance(control, KeypointsControl)
    classes, names, source = control.class_set, control.classes, control.source

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _expect_list(answer, path, "keypoints", issues):
            return
        assert isinstance(answer, _ARRAY)
        width, height = item.measure(source, "width"), item.measure(source, "height")
        for index, keypoint in enumerate(answer):
            where = f"{path}[{index}]"
            if not _KEYPOINT.check(keypoint, where, issues):
                continue
            assert isinstance(keypoint, dict)
            _check_label(keypoint, where, classes, names, issues)
            ok = True
            for key in ("x", "y"):
                if key in keypoint and not _is_number(keypoint[key]):
                    issues.append(
                        ValueIssue(f"{where}.{key}", _not_a_number(keypoint[key], f"keypoint {key}"))
                    )
                    ok = False
            if ok and "x" in keypoint and "y" in keypoint:
                _check_point(keypoint["x"], keypoint["y"], where, width, height, "keypoint", issues)

    return check


def _segments(control: Control) -> Check:
    assert isinstance(control, SegmentsControl)
    classes, names, source = control.class_set, control.classes, control.source

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _expect_list(answer, path, "segments", issues):
            return
        assert isinstance(answer, _ARRAY)
        duration = item.measure(source, "duration")
        for index, segment in enumerate(answer):
            where = f"{path}[{index}]"
            if not _SEGMENT.check(segment, where, issues):
                continue
            assert isinstance(segment, dict)
            _check_label(segment, where, classes, names, issues)
            if "text" in segment and not isinstance(segment["text"], str):
                issues.append(
                    ValueIssue(
                        f"{where}.text", f"segment text must be a string, got {json_kind(segment['text'])}"
                    )
                )
            ok = True
            for key in ("start", "end"):
                if key in segment and not _is_number(segment[key]):
                    issues.append(ValueIssue(f"{where}.{key}", _not_a_number(segment[key], f"segment {key}")))
                    ok = False
            if not (ok and "start" in segment and "end" in segment):
                continue
            start, end = segment["start"], segment["end"]
            if start < 0:
                issues.append(ValueIssue(f"{where}.start", f"segment start {_num(start)} is negative"))
            if end <= start:
                issues.append(
                    ValueIssue(
                        f"{where}.end", f"segment end {_num(end)} is not after its start {_num(start)}"
                    )
                )
            elif duration is not None and end > duration * (1 + EDGE_TOLERANCE):
                issues.append(
                    ValueIssue(
                        f"{where}.end",
                        f"segment end {_num(end)} is past the end of the media (duration {_num(duration)})",
                    )
                )

    return check


def _tracks(control: Control) -> Check:
    assert isinstance(control, TracksControl)
    classes, names, source = control.class_set, control.classes, control.source

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _expect_list(answer, path, "tracks", issues):
            return
        assert isinstance(answer, _ARRAY)
        width, height = item.measure(source, "width"), item.measure(source, "height")
        frames = item.measure(source, "frames")
        first: dict[str, int] = {}
        for index, track in enumerate(answer):
            where = f"{path}[{index}]"
            if not _TRACK.check(track, where, issues):
                continue
            assert isinstance(track, dict)
            _check_id(track, path, index, "track", first, issues)
            _check_label(track, where, classes, names, issues)
            if "keyframes" not in track:
                continue
            keyframes = track["keyframes"]
            if not _expect_list(keyframes, f"{where}.keyframes", "keyframes", issues):
                continue
            assert isinstance(keyframes, _ARRAY)
            if not keyframes:
                issues.append(ValueIssue(f"{where}.keyframes", "a track needs at least one keyframe"))
            previous: int | None = None
            for number, keyframe in enumerate(keyframes):
                at = f"{where}.keyframes[{number}]"
                if not _KEYFRAME.check(keyframe, at, issues):
                    continue
                assert isinstance(keyframe, dict)
                _check_rect(keyframe, at, width, height, "keyframe box", issues)
                if "frame" not in keyframe:
                    continue
                frame = keyframe["frame"]
                if not _is_int(frame):
                    issues.append(ValueIssue(f"{at}.frame", _not_an_int(frame, "frame")))
                    continue
                assert isinstance(frame, int)
                if frame < 0:
                    issues.append(ValueIssue(f"{at}.frame", f"frame {_num(frame)} is negative"))
                elif frames is not None and frame >= frames:
                    issues.append(
                        ValueIssue(
                            f"{at}.frame",
                            f"frame {_num(frame)} is past the last frame (the video has {_num(frames)})",
                        )
                    )
                if previous is not None:
                    if frame == previous:
                        issues.append(
                            ValueIssue(f"{at}.frame", f"duplicate keyframe for frame {_num(frame)}")
                        )
                    elif frame < previous:
                        issues.append(
                            ValueIssue(
                                f"{at}.frame",
                                f"keyframes must be sorted by frame: {_num(frame)} after {_num(previous)}",
                            )
                        )
                previous = frame if previous is None else max(previous, frame)

    return check


def _text_like(control: Control) -> Check:
    assert isinstance(control, TextControl | TranscriptControl)
    max_length = control.max_length

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not isinstance(answer, str):
            issues.append(ValueIssue(path, f"expected a string, got {json_kind(answer)}"))
        elif max_length is not None and len(answer) > max_length:
            issues.append(
                ValueIssue(path, f"text is {len(answer)} characters long, over the limit of {max_length}")
            )

    return check


def _rating(control: Control) -> Check:
    assert isinstance(control, RatingControl)
    low, high = control.min, control.max

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if isinstance(answer, bool) or not isinstance(answer, int):
            issues.append(ValueIssue(path, _not_an_int(answer, f"rating ({low}..{high})")))
        elif not low <= answer <= high:
            issues.append(ValueIssue(path, f"rating {_num(answer)} is outside {low}..{high}"))

    return check


def _pairwise(control: Control) -> Check:
    assert isinstance(control, PairwiseControl)

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _PAIRWISE.check(answer, path, issues):
            return
        assert isinstance(answer, dict)
        if "choice" in answer and answer["choice"] not in PAIRWISE_CHOICES:
            choice = answer["choice"]
            shown = _show(choice) if isinstance(choice, str) else json_kind(choice)
            issues.append(ValueIssue(f"{path}.choice", f"choice must be 'a', 'b' or 'tie', got {shown}"))
        if "rationale" in answer and not isinstance(answer["rationale"], str):
            issues.append(
                ValueIssue(
                    f"{path}.rationale", f"rationale must be a string, got {json_kind(answer['rationale'])}"
                )
            )

    return check


def _ranking(control: Control) -> Check:
    assert isinstance(control, RankingControl)
    source = control.source

    def check(answer: object, path: str, item: _Item, issues: list[ValueIssue]) -> None:
        if not _expect_list(answer, path, "response ids", issues):
            return
        assert isinstance(answer, _ARRAY)
        known = _response_ids(item, source, path, issues)
        first: dict[str, int] = {}
        for index, ident in enumerate(answer):
            where = f"{path}[{index}]"
            if not isinstance(ident, str):
                issues.append(ValueIssue(where, f"expected a response id (string), got {json_kind(ident)}"))
            elif ident in first:
                issues.append(
                    ValueIssue(where, f"response {ident!r} is ranked twice (also {path}[{first[ident]}])")
                )
            elif known is not None and ident not in known:
                issues.append(
                    ValueIssue(where, f"no response with id {_show(ident)} in item field {source!r}")
                )
            else:
                first[ident] = index
        if known is not None:
            missing = [ident for ident in known if ident not in first]
            if missing:
                listed = ", ".join(repr(ident) for ident in missing[:_MAX_LISTED])
                issues.append(
                    ValueIssue(path, f"not ranked: {listed}{', ...' if len(missing) > _MAX_LISTED else ''}")
                )

    return check


def _response_ids(item: _Item, source: str, path: str, issues: list[ValueIssue]) -> list[str] | None:
    """The ids of the item's responses in order, or None when they cannot be known."""
    responses = item.field(source, path, "the ranking against", issues)
    if responses is _UNKNOWN:
        return None
    if not isinstance(responses, _ARRAY):
        issues.append(
            ValueIssue(path, f"item data field {source!r} is {json_kind(responses)}, not a list of responses")
        )
        return None
    ids: list[str] = []
    for number, response in enumerate(responses):
        ident = response.get("id") if isinstance(response, dict) else response
        if not isinstance(ident, str):
            issues.append(ValueIssue(path, f"item data field {source!r} entry {number} has no string id"))
            return None
        ids.append(ident)
    return list(dict.fromkeys(ids))


_CHECK_BUILDERS: dict[str, Callable[[Control], Check]] = {
    "choices": _choices,
    "multi_choices": _multi_choices,
    "spans": _spans,
    "relations": _relations,
    "boxes": _boxes,
    "polygons": _polygons,
    "keypoints": _keypoints,
    "segments": _segments,
    "tracks": _tracks,
    "transcript": _text_like,
    "text": _text_like,
    "rating": _rating,
    "pairwise": _pairwise,
    "ranking": _ranking,
}
