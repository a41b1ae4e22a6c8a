"""Reading Label Studio task exports and converting their results to labelmill annotation values.

Label Studio stores one ``result`` entry per region, in percent of the image for image regions, keyed
by ``from_name`` (the control) and ``type`` (the control's kind). labelmill stores one value object
per annotation, keyed by control name, in pixels (see DESIGN "Annotation values"). This module does
that conversion so teams can move a labelled dataset over without losing work.

Exports can be large JSON arrays, so tasks are decoded one at a time from a sliding buffer
(:func:`iter_json_objects`): memory is bounded by the largest single task, not the file.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator, Mapping
from typing import IO, Any, NoReturn

from labelmill.formats._io import SourceLike, display_name, open_binary, utf8_error_reason
from labelmill.formats.records import FormatError, ImportRecord

__all__ = ["convert_results", "iter_json_objects", "read_labelstudio"]

_CHUNK = 1 << 16
_WHITESPACE = " \t\n\r"
#: A truncated token ("tru", "\\ud83d\\ude0", "1.5e+") fails this close to the end of the buffer.
_TOKEN_MARGIN = 32
#: Bounds memory when an unterminated string would otherwise swallow the rest of a huge file.
MAX_VALUE_CHARS = 256 * 1024 * 1024

# Label Studio result type -> the labelmill control type it becomes by default.
_DEFAULT_CONTROL = {
    "choices": "choices",
    "labels": "",  # spans or segments: decided by control_types or by the region's shape
    "rectanglelabels": "boxes",
    "polygonlabels": "polygons",
    "keypointlabels": "keypoints",
    "rating": "rating",
    "textarea": "text",
    "taxonomy": "multi_choices",
    "pairwise": "pairwise",
    "relation": "relations",
}
#: Label Studio result types this module converts.
SUPPORTED_RESULT_TYPES = frozenset(_DEFAULT_CONTROL)


class _Buffer:
    """Incremental decoding of a stream of JSON values with :meth:`json.JSONDecoder.raw_decode`.

    Keeps only the undecoded tail of the file in memory. When a value straddles the end of the buffer
    the read size doubles, so a huge value costs O(size) re-parsing in total, not O(size^2 / chunk).
    """

    def __init__(self, fp: IO[bytes], source: str) -> None:
        self._fp = fp
        self._utf8 = codecs.getincrementaldecoder("utf-8-sig")()
        self._source = source
        self.text = ""
        self.pos = 0
        self.eof = False
        self.lines_before = 0  # newlines in text already discarded, for error positions
        self.columns_before = 0  # characters of the current line already discarded
        self._want = _CHUNK

    def more(self) -> bool:
        """Read another chunk; False at end of file."""
        if self.eof:
            return False
        raw = self._fp.read(self._want)
        try:
            chunk = self._utf8.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            raise FormatError(
                self._source, self.line_of(len(self.text)), "", utf8_error_reason(exc)
            ) from None
        if not raw:
            self.eof = True
        if self.pos:
            newlines = self.text.count("\n", 0, self.pos)
            self.lines_before += newlines
            if newlines:
                self.columns_before = self.pos - self.text.rfind("\n", 0, self.pos) - 1
            else:
                self.columns_before += self.pos
            self.text = self.text[self.pos :]
            self.pos = 0
        self.text += chunk
        return bool(raw)

    def peek(self) -> str:
        """Skip whitespace and return the next character ('' at end of file)."""
        while True:
            text, pos = self.text, self.pos
            while pos < len(text) and text[pos] in _WHITESPACE:
                pos += 1
            self.pos = pos
            if pos < len(text):
                self._want = _CHUNK
                return text[pos]
            if not self.more():
                return ""

    def line_of(self, pos: int) -> int:
        return self.lines_before + self.text.count("\n", 0, pos) + 1

    def column_of(self, pos: int) -> int:
        """1-based, counting characters; the line may have begun in text already discarded."""
        newline = self.text.rfind("\n", 0, pos)
        return pos - newline if newline >= 0 else self.columns_before + pos + 1

    def decode(self, decoder: json.JSONDecoder) -> Any:
        """Decode the value starting at ``pos`` (whitespace already skipped)."""
        while True:
            try:
                value, end = decoder.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise
                if exc.pos < len(self.text) - _TOKEN_MARGIN and not exc.msg.startswith("Unterminated"):
                    raise  # a real syntax error well inside the buffer: no need to read on
                if len(self.text) - self.pos > MAX_VALUE_CHARS:
                    raise json.JSONDecodeError(
                        f"a single task is larger than {MAX_VALUE_CHARS} characters", self.text, self.pos
                    ) from None
                self._want = max(self._want * 2, len(self.text))
                self.more()
                continue
            if end == len(self.text) and not self.eof:
                # A number could continue in the next chunk; tasks are objects so this is rare.
                self._want = max(self._want * 2, _CHUNK)
                if self.more():
                    continue
            self.pos = end
            return value


def iter_json_objects(fp: IO[bytes], source: str) -> Iterator[tuple[int, Any]]:
    """Yield ``(index + 1, value)`` for each element of a top-level JSON array, or for each of a
    sequence of whitespace-separated JSON values (one object, or JSONL)."""
    buf = _Buffer(fp, source)
    decoder = json.JSONDecoder()
    n = 0

    def fail(reason: str, pos: int) -> NoReturn:
        where = f"line {buf.line_of(pos)} column {buf.column_of(pos)}"
        raise FormatError(source, max(n, 1), "", f"{reason} at {where}")

    def decode() -> Any:
        buf.peek()  # raw_decode does not skip leading whitespace
        try:
            return buf.decode(decoder)
        except json.JSONDecodeError as exc:
            fail(f"invalid JSON: {exc.msg}", exc.pos)
        except RecursionError:
            fail("invalid JSON: nested too deeply", buf.pos)

    if buf.peek() != "[":
        while buf.peek() != "":
            n += 1
            yield n, decode()
        return
    buf.pos += 1
    if buf.peek() == "]":
        buf.pos += 1
    else:
        while True:
            n += 1
            yield n, decode()
            sep = buf.peek()
            buf.pos += 1
            if sep == "]":
                break
            if sep != ",":
                fail("invalid JSON: expected ',' or ']' after an array element", buf.pos - 1)
    if buf.peek() != "":
        fail("unexpected data after the JSON array", buf.pos)


def _fail(source: str, line: int, field: str, reason: str) -> NoReturn:
    raise FormatError(source, line, field, reason)


def _one_label(value: Mapping[str, Any], key: str, where: str, ctx: _Context) -> str:
    labels = value.get(key)
    if not isinstance(labels, list) or len(labels) != 1 or not isinstance(labels[0], str):
        ctx.fail(f"{where}.value.{key}", "expected a list of exactly one label")
    return labels[0]


def _number(value: Any, where: str, ctx: _Context) -> float:
    if type(value) not in (int, float):
        ctx.fail(where, "must be a number")
    return float(value)


class _Context:
    """Per-task conversion state: where we are (for errors) and notes for the item's ``meta``."""

    def __init__(self, source: str, line: int, control_types: Mapping[str, str], skip_unsupported: bool):
        self.source = source
        self.line = line
        self.control_types = control_types
        self.skip_unsupported = skip_unsupported
        self.percent_controls: set[str] = set()
        self.skipped_types: set[str] = set()
        self.image_sizes: dict[str, dict[str, int]] = {}
        self.dropped_rotation: set[str] = set()

    def fail(self, field: str, reason: str) -> NoReturn:
        _fail(self.source, self.line, field, reason)

    def meta_notes(self) -> dict[str, Any]:
        notes: dict[str, Any] = {}
        if self.image_sizes:
            notes["media"] = {name: dict(size) for name, size in sorted(self.image_sizes.items())}
        ls: dict[str, Any] = {}
        if self.percent_controls:
            # No original size in the export: coordinates stay in percent and the item says so.
            ls["percent_coordinates"] = sorted(self.percent_controls)
        if self.dropped_rotation:
            ls["rotation_dropped"] = sorted(self.dropped_rotation)
        if self.skipped_types:
            ls["skipped_result_types"] = sorted(self.skipped_types)
        if ls:
            notes["labelstudio"] = ls
        return notes


def _scale(result: Mapping[str, Any], control: str, where: str, ctx: _Context) -> tuple[float, float] | None:
    """Pixels per percent along x and y, or None when the export lacks the original image size."""
    width, height = result.get("original_width"), result.get("original_height")
    if width is None or height is None:
        ctx.percent_controls.add(control)
        return None
    w = _number(width, f"{where}.original_width", ctx)
    h = _number(height, f"{where}.original_height", ctx)
    to_name = result.get("to_name")
    if isinstance(to_name, str) and w > 0 and h > 0:
        ctx.image_sizes[to_name] = {"width": round(w), "height": round(h)}
    return w / 100.0, h / 100.0


def _convert_region(
    kind: str, control_type: str, control: str, result: Mapping[str, Any], where: str, ctx: _Context
) -> Any:
    """One Label Studio result -> (part of) one labelmill value."""
    value = result.get("value")
    if kind == "relation":
        labels = result.get("labels") or []
        rel = {"from": str(result.get("from_id")), "to": str(result.get("to_id"))}
        if labels:
            rel["label"] = str(labels[0])
        return [rel]
    if not isinstance(value, dict):
        ctx.fail(f"{where}.value", "must be an object")
    if kind == "choices":
        choices = value.get("choices")
        if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
            ctx.fail(f"{where}.value.choices", "expected a list of strings")
        if control_type == "multi_choices" or len(choices) != 1:
            return list(choices)
        return choices[0]
    if kind == "labels":
        start, end = value.get("start"), value.get("end")
        labels = value.get("labels")
        if not isinstance(labels, list) or not labels:
            ctx.fail(f"{where}.value.labels", "expected a non-empty list of labels")
        is_segment = control_type == "segments" or (
            control_type != "spans" and "text" not in value and not (type(start) is int and type(end) is int)
        )
        if is_segment:  # audio / time regions: seconds
            seconds = (_number(start, f"{where}.value.start", ctx), _number(end, f"{where}.value.end", ctx))
            return [{"start": seconds[0], "end": seconds[1], "label": str(label)} for label in labels]
        if type(start) is not int or type(end) is not int:
            ctx.fail(f"{where}.value", "text span needs integer 'start' and 'end' offsets")
        region_id = str(result["id"])
        # Several labels on one region become one span per label; the first keeps the region id so
        # relations that point at it still resolve.
        return [
            {
                "id": region_id if k == 0 else f"{region_id}-{k}",
                "start": start,
                "end": end,
                "label": str(label),
            }
            for k, label in enumerate(labels)
        ]
    if kind == "rectanglelabels":
        label = _one_label(value, "rectanglelabels", where, ctx)
        x, y = (
            _number(value.get("x"), f"{where}.value.x", ctx),
            _number(value.get("y"), f"{where}.value.y", ctx),
        )
        w = _number(value.get("width"), f"{where}.value.width", ctx)
        h = _number(value.get("height"), f"{where}.value.height", ctx)
        if value.get("rotation"):
            ctx.dropped_rotation.add(control)
        scale = _scale(result, control, where, ctx)
        if scale:
            x, w, y, h = x * scale[0], w * scale[0], y * scale[1], h * scale[1]
        return [{"x": x, "y": y, "w": w, "h": h, "label": label}]
    if kind == "polygonlabels":
        label = _one_label(value, "polygonlabels", where, ctx)
        points = value.get("points")
        if not isinstance(points, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(type(c) in (int, float) for c in p) for p in points
        ):
            ctx.fail(f"{where}.value.points", "expected a list of [x, y] pairs")
        scale = _scale(result, control, where, ctx)
        sx, sy = scale or (1.0, 1.0)
        return [{"points": [[float(px) * sx, float(py) * sy] for px, py in points], "label": label}]
    if kind == "keypointlabels":
        label = _one_label(value, "keypointlabels", where, ctx)
        x, y = (
            _number(value.get("x"), f"{where}.value.x", ctx),
            _number(value.get("y"), f"{where}.value.y", ctx),
        )
        scale = _scale(result, control, where, ctx)
        if scale:
            x, y = x * scale[0], y * scale[1]
        return [{"x": x, "y": y, "label": label}]
    if kind == "rating":
        rating = value.get("rating")
        if type(rating) is not int:
            ctx.fail(f"{where}.value.rating", "must be an integer")
        return rating
    if kind == "textarea":
        text = value.get("text")
        if isinstance(text, str):
            return text
        if not isinstance(text, list) or not all(isinstance(t, str) for t in text):
            ctx.fail(f"{where}.value.text", "expected a list of strings")
        return "\n".join(text)
    if kind == "taxonomy":
        paths = value.get("taxonomy")
        if not isinstance(paths, list) or not all(isinstance(p, list) for p in paths):
            ctx.fail(f"{where}.value.taxonomy", "expected a list of paths")
        return ["/".join(str(part) for part in path) for path in paths]
    if kind == "pairwise":
        selected = value.get("selected")
        choice = {"left": "a", "right": "b", "none": "tie"}.get(str(selected))
        if choice is None:
            ctx.fail(f"{where}.value.selected", "expected 'left', 'right' or 'none'")
        return {"choice": choice}
    raise AssertionError(kind)  # pragma: no cover - guarded by SUPPORTED_RESULT_TYPES


_LIST_TYPES = frozenset({"spans", "segments", "boxes", "polygons", "keypoints", "relations"})


def convert_results(results: Any, where: str, ctx: _Context) -> dict[str, Any]:
    """A Label Studio ``result`` list -> one labelmill value object keyed by control name."""
    if not isinstance(results, list):
        ctx.fail(where, "must be an array")
    out: dict[str, Any] = {}
    relation_controls = [name for name, t in ctx.control_types.items() if t == "relations"]
    for i, result in enumerate(results):
        here = f"{where}[{i}]"
        if not isinstance(result, dict):
            ctx.fail(here, "must be an object")
        kind = result.get("type")
        if not isinstance(kind, str):
            ctx.fail(f"{here}.type", "missing result type")
        if kind not in SUPPORTED_RESULT_TYPES:
            if ctx.skip_unsupported:
                ctx.skipped_types.add(kind)
                continue
            ctx.fail(
                f"{here}.type",
                f"Label Studio result type {kind!r} is not supported "
                f"(supported: {', '.join(sorted(SUPPORTED_RESULT_TYPES))})",
            )
        if "id" not in result:  # ML-backend predictions often omit region ids; spans need one
            result = {**result, "id": f"r{i + 1}"}
        if kind == "relation":
            control = relation_controls[0] if len(relation_controls) == 1 else "relations"
        else:
            from_name = result.get("from_name")
            if not isinstance(from_name, str) or not from_name:
                ctx.fail(f"{here}.from_name", "missing control name")
            control = from_name
        control_type = ctx.control_types.get(control, _DEFAULT_CONTROL[kind])
        part = _convert_region(kind, control_type, control, result, here, ctx)
        if isinstance(part, list) and (control_type in _LIST_TYPES or kind == "labels"):
            out.setdefault(control, []).extend(part)
        else:
            out[control] = part
    return out


def _annotator(raw: Any) -> str:
    """Label Studio's ``completed_by`` is a user id, or a user object when exported expanded."""
    if isinstance(raw, dict):
        raw = raw.get("email") or raw.get("username") or raw.get("id")
    if raw is None or raw == "":
        return "labelstudio"
    return str(raw)


def _task_record(
    task: Any, n: int, source: str, control_types: Mapping[str, str], skip_unsupported: bool
) -> ImportRecord:
    ctx = _Context(source, n, control_types, skip_unsupported)
    if not isinstance(task, dict):
        ctx.fail("", "each task must be a JSON object")
    data = task.get("data")
    if not isinstance(data, dict):
        ctx.fail("data", 'must be an object (a Label Studio task has its fields under "data")')
    task_id = task.get("id")
    if task_id is not None and not isinstance(task_id, str | int):
        ctx.fail("id", "must be a string or an integer")
    predictions = []
    for i, pred in enumerate(task.get("predictions") or []):
        where = f"predictions[{i}]"
        if not isinstance(pred, dict):
            ctx.fail(where, "must be an object")
        score = pred.get("score")
        if score is not None:
            score = _number(score, f"{where}.score", ctx)
        predictions.append(
            {
                "value": convert_results(pred.get("result", []), f"{where}.result", ctx),
                "score": score,
                "model_version": str(pred.get("model_version") or ""),
            }
        )
    annotations = []
    for i, ann in enumerate(task.get("annotations") or []):
        where = f"annotations[{i}]"
        if not isinstance(ann, dict):
            ctx.fail(where, "must be an object")
        converted: dict[str, Any] = {
            "annotator": _annotator(ann.get("completed_by")),
            "value": convert_results(ann.get("result", []), f"{where}.result", ctx),
        }
        lead_time = ann.get("lead_time")
        if lead_time is not None:
            converted["lead_seconds"] = _number(lead_time, f"{where}.lead_time", ctx)
        if ann.get("was_cancelled"):
            converted["status"] = "skipped"
        annotations.append(converted)
    meta = dict(task["meta"]) if isinstance(task.get("meta"), dict) else {}
    meta.update(ctx.meta_notes())
    return ImportRecord(
        source,
        n,
        data,
        None if task_id is None else str(task_id),
        predictions,
        None,
        meta or None,
        annotations,
    )


def read_labelstudio(
    src: SourceLike,
    source_name: str | None = None,
    *,
    control_types: Mapping[str, str] | None = None,
    skip_unsupported: bool = False,
) -> Iterator[ImportRecord]:
    """Stream records from a Label Studio export: a JSON array of tasks, one task, or JSONL of tasks.

    ``control_types`` maps control names to labelmill control types (from the project's schema) and
    settles what the export alone cannot: a one-element ``choices`` list is ``multi_choices`` or
    ``choices``, a ``labels`` region is a text ``spans`` or an audio ``segments`` entry. Without it
    the shape of each result decides. ``line`` is the task's 1-based position in the file. Result
    types with no labelmill equivalent are an error unless ``skip_unsupported``; then the item's
    ``meta["labelstudio"]["skipped_result_types"]`` lists them.
    """
    source = display_name(src, source_name)
    types = dict(control_types or {})
    with open_binary(src) as fp:
        for n, task in iter_json_objects(fp, source):
            yield _task_record(task, n, source, types, skip_unsupported)
