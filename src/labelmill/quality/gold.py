"""How right one annotation is against a gold (honeypot) answer, per control, in [0, 1].

The annotation queue mixes gold items, whose true value is known, into an annotator's work and
scores each submission with `gold_score`; `is_correct` turns a score into the right/wrong count
behind an annotator's accuracy. Values have the shapes of DESIGN.md "Annotation values".

Per control type (``value`` is the annotator's answer, ``gold`` the known one):

- ``choices``: 1 when equal, else 0. ``pairwise``: the same on ``choice`` (the rationale is free
  text and not scored). ``rating``: 1 when ``|value - gold| <= rating_tolerance``, else 0.
- ``text`` and ``transcript``: ``1 - WER`` (word error rate against the gold text, words split on
  whitespace, case-sensitive), clipped to [0, 1].
- ``multi_choices``: Jaccard index of the two sets (1 when both are empty).
- ``spans``: F1 of exact ``(start, end, label)`` matches, counted as multisets (1 when both are
  empty). Span ids are ignored: they are per annotation.
- ``relations``: F1 of exact ``(from, to, label)`` matches. Span ids are per annotation, so an
  endpoint is compared by the ``(start, end)`` of the span it names when the spans of *both*
  annotations are given (``spans_value`` and ``spans_gold``: the value of the spans control the
  relations link; `gold_score` passes them itself, see there). Otherwise the span ids themselves
  are compared, which is only meaningful when the annotator's spans were pre-filled from the gold
  item. An id missing from its spans list is compared as an id; a duplicated span id resolves to
  its first span.
- ``boxes``, ``polygons``, ``segments``: F1 of a one-to-one matching in which a pair matches when
  the labels are equal and the IoU (`box_iou`, `polygon_iou`, `interval_iou`) is at least
  ``iou_threshold``; the matching has the most matched pairs (`scipy.optimize.linear_sum_assignment`,
  as in PASCAL VOC / COCO detection scoring but optimal rather than greedy). A segment's ``text``
  is not scored.
- ``keypoints``: the same, a pair matching when the labels are equal and the points are at most
  ``distance_threshold`` pixels apart.
- ``tracks``: tracks are matched one-to-one by content, not by id (ids are per annotation, like
  span ids). Two tracks with the same label have a similarity: the share of frames, over the
  union of both tracks' keyframe frames, at which both tracks have a box (linearly interpolated
  between keyframes, none outside the first..last keyframe) with IoU >= ``iou_threshold``. The
  score is a soft F1, ``2 * (sum of matched similarities) / (n_value + n_gold)``, with the
  matching that maximises that sum (1 when both are empty).
- ``ranking``: Kendall's tau mapped to [0, 1] as ``(tau + 1) / 2``, over all pairs of the gold's
  responses: a pair ordered as in the gold counts +1, reversed -1, and a pair with a response the
  annotator left out -1 (an incomplete ranking earns no credit for what it omits). Responses the
  gold does not rank are ignored; repeated ids count at their first place.

A value that does not have its control's shape (wrong JSON type, missing key, non-finite number,
negative box size, end before start, a polygon of fewer than 3 points, an unhashable label, ...)
scores 0; so does a malformed gold. `control_score` never raises for any value, only for an
unknown control type or an invalid option.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import linear_sum_assignment

from labelmill.quality.geometry import box_iou, interval_iou, polygon_iou
from labelmill.quality.pairwise import kendall_tau
from labelmill.quality.transcripts import word_error_rate
from labelmill.schema import CONTROL_TYPES as SCHEMA_CONTROL_TYPES

__all__ = ["CONTROL_TYPES", "control_score", "gold_score", "is_correct"]

#: Every control type `control_score` knows: all of DESIGN.md's "Annotation values".
CONTROL_TYPES = frozenset(SCHEMA_CONTROL_TYPES)

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


class _Malformed(Exception):
    """A value (or gold) that does not have its control's shape: it scores 0."""


# --------------------------------------------------------------------------- parsing


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise _Malformed
    return list(value)


def _dict(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Malformed
    return value


def _field(entry: Mapping[str, Any], key: str) -> Any:
    if key not in entry:
        raise _Malformed
    return entry[key]


def _number(value: Any) -> float:
    """A finite real number (not a bool) as float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed
    try:
        out = float(value)
    except OverflowError:  # an int beyond float range
        raise _Malformed from None
    if not math.isfinite(out):
        raise _Malformed
    return out


def _integer(value: Any) -> int:
    """An integer, or a float with an integral value (JSON may carry 4 as 4.0)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = _number(value)
    if not number.is_integer():
        raise _Malformed
    return int(number)


def _scalar(value: Any) -> Hashable:
    """A label, choice or id: a string, an integer or a finite float."""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise _Malformed


def _entries(value: Any) -> list[Mapping[str, Any]]:
    return [_dict(entry) for entry in _list(value)]


def _labels(entries: Sequence[Mapping[str, Any]]) -> list[Hashable]:
    return [_scalar(_field(entry, "label")) for entry in entries]


def _coords(entries: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> FloatArray:
    rows = [[_number(_field(entry, key)) for key in keys] for entry in entries]
    return np.asarray(rows, dtype=np.float64).reshape(-1, len(keys))


def _boxes(value: Any) -> tuple[FloatArray, list[Hashable]]:
    entries = _entries(value)
    coords = _coords(entries, ("x", "y", "w", "h"))
    if np.any(coords[:, 2:] < 0):
        raise _Malformed
    return coords, _labels(entries)


def _segments(value: Any) -> tuple[FloatArray, list[Hashable]]:
    entries = _entries(value)
    coords = _coords(entries, ("start", "end"))
    if np.any(coords[:, 1] < coords[:, 0]):
        raise _Malformed
    return coords, _labels(entries)


def _polygon(points: Any) -> FloatArray:
    rows = _list(points)
    if len(rows) < 3:
        raise _Malformed
    out = []
    for row in rows:
        pair = _list(row)
        if len(pair) != 2:
            raise _Malformed
        out.append([_number(pair[0]), _number(pair[1])])
    return np.asarray(out, dtype=np.float64)


def _span_key(entry: Mapping[str, Any]) -> tuple[int, int]:
    start, end = _integer(_field(entry, "start")), _integer(_field(entry, "end"))
    if end < start:
        raise _Malformed
    return start, end


def _unique(items: Sequence[Hashable]) -> list[Hashable]:
    """Items in order, each at its first place only."""
    return list(dict.fromkeys(items))


# --------------------------------------------------------------------------- matching


def _f1(matched: float, n_value: int, n_gold: int) -> float:
    if n_value + n_gold == 0:
        return 1.0
    return min(max(2.0 * matched / (n_value + n_gold), 0.0), 1.0)


def _same_label(a: Sequence[Hashable], b: Sequence[Hashable]) -> BoolArray:
    return np.array([[x == y for y in b] for x in a], dtype=bool).reshape(len(a), len(b))


def _best_total(weights: FloatArray) -> float:
    """Largest total weight of a one-to-one matching (rows to columns)."""
    if weights.size == 0:
        return 0.0
    rows, cols = linear_sum_assignment(weights, maximize=True)
    return float(weights[rows, cols].sum())


def _match_f1(ok: BoolArray) -> float:
    """F1 of the largest one-to-one matching among the allowed pairs `ok` (value x gold)."""
    n_value, n_gold = ok.shape
    return _f1(_best_total(ok.astype(np.float64)), n_value, n_gold)


# --------------------------------------------------------------------------- per type


def _score_choices(value: Any, gold: Any) -> float:
    return 1.0 if _scalar(value) == _scalar(gold) else 0.0


def _score_pairwise(value: Any, gold: Any) -> float:
    return _score_choices(_field(_dict(value), "choice"), _field(_dict(gold), "choice"))


def _score_text(value: Any, gold: Any) -> float:
    if not isinstance(value, str) or not isinstance(gold, str):
        raise _Malformed
    return min(max(1.0 - word_error_rate(gold, value), 0.0), 1.0)


def _score_multi_choices(value: Any, gold: Any) -> float:
    mine = {_scalar(item) for item in _list(value)}
    truth = {_scalar(item) for item in _list(gold)}
    if not mine and not truth:
        return 1.0
    return len(mine & truth) / len(mine | truth)


def _score_spans(value: Any, gold: Any) -> float:
    def keys(spans: Any) -> Counter[tuple[int, int, Hashable]]:
        entries = _entries(spans)
        return Counter((*_span_key(e), label) for e, label in zip(entries, _labels(entries), strict=True))

    mine, truth = keys(value), keys(gold)
    return _f1(sum((mine & truth).values()), mine.total(), truth.total())


def _span_offsets(spans: Any) -> dict[Hashable, tuple[int, int]] | None:
    """Span id -> (start, end), first span per id; None when `spans` is not a usable spans value."""
    if spans is None:
        return None
    try:
        out: dict[Hashable, tuple[int, int]] = {}
        for entry in _entries(spans):
            out.setdefault(_scalar(_field(entry, "id")), _span_key(entry))
        return out
    except _Malformed:
        return None


def _score_relations(value: Any, gold: Any, spans_value: Any, spans_gold: Any) -> float:
    offsets_value, offsets_gold = _span_offsets(spans_value), _span_offsets(spans_gold)
    use_offsets = offsets_value is not None and offsets_gold is not None

    def keys(relations: Any, offsets: dict[Hashable, tuple[int, int]] | None) -> Counter[Hashable]:
        def end(ref: Any) -> Hashable:
            ident = _scalar(ref)
            if use_offsets and offsets is not None and ident in offsets:
                return ("span", *offsets[ident])
            return ("id", ident)

        out: Counter[Hashable] = Counter()
        for entry in _entries(relations):
            out[(end(_field(entry, "from")), end(_field(entry, "to")), _scalar(_field(entry, "label")))] += 1
        return out

    mine, truth = keys(value, offsets_value), keys(gold, offsets_gold)
    return _f1(sum((mine & truth).values()), mine.total(), truth.total())


def _score_boxes(value: Any, gold: Any, iou_threshold: float) -> float:
    (box_v, label_v), (box_g, label_g) = _boxes(value), _boxes(gold)
    ok = _same_label(label_v, label_g) & (box_iou(box_v, box_g) >= iou_threshold)
    return _match_f1(ok)


def _score_segments(value: Any, gold: Any, iou_threshold: float) -> float:
    (seg_v, label_v), (seg_g, label_g) = _segments(value), _segments(gold)
    ok = _same_label(label_v, label_g) & (interval_iou(seg_v, seg_g) >= iou_threshold)
    return _match_f1(ok)


def _score_polygons(value: Any, gold: Any, iou_threshold: float) -> float:
    def parse(polygons: Any) -> tuple[list[FloatArray], list[Hashable]]:
        entries = _entries(polygons)
        return [_polygon(_field(entry, "points")) for entry in entries], _labels(entries)

    (poly_v, label_v), (poly_g, label_g) = parse(value), parse(gold)
    ok = _same_label(label_v, label_g)
    for i, j in zip(*np.nonzero(ok), strict=True):
        ok[i, j] = polygon_iou(poly_v[i], poly_g[j]) >= iou_threshold
    return _match_f1(ok)


def _score_keypoints(value: Any, gold: Any, distance_threshold: float) -> float:
    def parse(points: Any) -> tuple[FloatArray, list[Hashable]]:
        entries = _entries(points)
        return _coords(entries, ("x", "y")), _labels(entries)

    (pt_v, label_v), (pt_g, label_g) = parse(value), parse(gold)
    diff = pt_v[:, None, :] - pt_g[None, :, :]
    distance = np.hypot(diff[..., 0], diff[..., 1])
    return _match_f1(_same_label(label_v, label_g) & (distance <= distance_threshold))


class _Track:
    """One track's keyframes, sorted by frame (first keyframe per frame), boxes as x, y, w, h."""

    def __init__(self, entry: Mapping[str, Any]) -> None:
        self.label = _scalar(_field(entry, "label"))
        keyframes = _entries(_field(entry, "keyframes"))
        frames = np.array([_number(_integer(_field(k, "frame"))) for k in keyframes], dtype=np.float64)
        boxes, _ = _boxes([{**k, "label": ""} for k in keyframes])
        self.frames, first = np.unique(frames, return_index=True)
        self.boxes = boxes[first]

    def at(self, frames: FloatArray) -> tuple[FloatArray, BoolArray]:
        """Boxes interpolated at `frames`, and which frames the track covers."""
        if len(self.frames) == 0:
            return np.zeros((len(frames), 4)), np.zeros(len(frames), dtype=bool)
        boxes = np.stack([np.interp(frames, self.frames, self.boxes[:, c]) for c in range(4)], axis=1)
        return boxes, (frames >= self.frames[0]) & (frames <= self.frames[-1])


def _track_similarity(a: _Track, b: _Track, iou_threshold: float) -> float:
    frames = np.union1d(a.frames, b.frames)
    if len(frames) == 0:
        return 1.0
    box_a, on_a = a.at(frames)
    box_b, on_b = b.at(frames)
    iou = np.array([box_iou(x, y)[0, 0] for x, y in zip(box_a, box_b, strict=True)], dtype=np.float64)
    return float(np.mean(on_a & on_b & (iou >= iou_threshold)))


def _score_tracks(value: Any, gold: Any, iou_threshold: float) -> float:
    tracks_v = [_Track(entry) for entry in _entries(value)]
    tracks_g = [_Track(entry) for entry in _entries(gold)]
    sim = np.zeros((len(tracks_v), len(tracks_g)))
    for i, a in enumerate(tracks_v):
        for j, b in enumerate(tracks_g):
            if a.label == b.label:
                sim[i, j] = _track_similarity(a, b, iou_threshold)
    return _f1(_best_total(sim), len(tracks_v), len(tracks_g))


def _score_ranking(value: Any, gold: Any) -> float:
    mine = _unique([_scalar(item) for item in _list(value)])
    truth = _unique([_scalar(item) for item in _list(gold)])
    present = set(mine)
    n = len(truth)
    if n < 2:
        return 1.0 if present.issuperset(truth) else 0.0
    common = sum(1 for item in truth if item in present)
    pairs, common_pairs = n * (n - 1) // 2, common * (common - 1) // 2
    net = kendall_tau(mine, truth) * common_pairs if common_pairs else 0.0  # concordant - discordant
    tau = (net - (pairs - common_pairs)) / pairs
    return min(max((tau + 1.0) / 2.0, 0.0), 1.0)


# --------------------------------------------------------------------------- public API


def control_score(
    control_type: str,
    value: Any,
    gold: Any,
    *,
    iou_threshold: float = 0.5,
    rating_tolerance: int = 0,
    distance_threshold: float = 10.0,
    spans_value: Any = None,
    spans_gold: Any = None,
) -> float:
    """How right `value` is against `gold` for one control of type `control_type`, in [0, 1].

    See the module docstring for each type's rule. `iou_threshold` applies to boxes, polygons,
    segments and tracks; `rating_tolerance` to ratings; `distance_threshold` (pixels) to
    keypoints; `spans_value` / `spans_gold` (the two annotations' values of the spans control)
    to relations. A malformed value or gold scores 0.

    Raises:
        ValueError: unknown `control_type`, or an option out of range.
    """
    if control_type not in CONTROL_TYPES:
        raise ValueError(f"unknown control type {control_type!r} (expected one of: {sorted(CONTROL_TYPES)})")
    if not 0.0 <= iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in [0, 1], got {iou_threshold!r}")
    if not rating_tolerance >= 0:
        raise ValueError(f"rating_tolerance must be >= 0, got {rating_tolerance!r}")
    if not distance_threshold >= 0:
        raise ValueError(f"distance_threshold must be >= 0, got {distance_threshold!r}")

    scorers: dict[str, Callable[[Any, Any], float]] = {
        "choices": _score_choices,
        "pairwise": _score_pairwise,
        "rating": lambda v, g: 1.0 if abs(_integer(v) - _integer(g)) <= rating_tolerance else 0.0,
        "text": _score_text,
        "transcript": _score_text,
        "multi_choices": _score_multi_choices,
        "spans": _score_spans,
        "relations": lambda v, g: _score_relations(v, g, spans_value, spans_gold),
        "boxes": lambda v, g: _score_boxes(v, g, iou_threshold),
        "polygons": lambda v, g: _score_polygons(v, g, iou_threshold),
        "keypoints": lambda v, g: _score_keypoints(v, g, distance_threshold),
        "segments": lambda v, g: _score_segments(v, g, iou_threshold),
        "tracks": lambda v, g: _score_tracks(v, g, iou_threshold),
        "ranking": _score_ranking,
    }
    try:
        with np.errstate(all="ignore"):  # huge finite coordinates may overflow to inf: no match
            score = scorers[control_type](value, gold)
    except _Malformed:
        return 0.0
    return score if 0.0 <= score <= 1.0 else 0.0


def gold_score(
    controls: Mapping[str, str],
    value: Mapping[str, Any],
    gold: Mapping[str, Any],
    **options: Any,
) -> float | None:
    """Mean `control_score` over the controls of `controls` (name -> type) that `gold` answers.

    A control missing from `value` scores 0. A control whose gold is ``None`` (or that
    `controls` does not name) is not scored. Returns None when nothing is scored. `options`
    go to `control_score`, plus ``relation_spans`` (relations control name -> the name of the
    spans control it links): a relations control is scored on span offsets, taking
    `spans_value` / `spans_gold` from that spans control in `value` and `gold`; without
    ``relation_spans`` the schema's only spans control is used, and with several (or none) the
    relations compare span ids. Explicit ``spans_value`` / ``spans_gold`` options win.

    Raises:
        ValueError: a scored control has an unknown type.
    """
    relation_spans: Mapping[str, str] = options.pop("relation_spans", None) or {}
    explicit_spans = "spans_value" in options or "spans_gold" in options
    span_controls = [name for name, kind in controls.items() if kind == "spans"]
    answers: Mapping[str, Any] = value if isinstance(value, Mapping) else {}
    if not isinstance(gold, Mapping):
        return None
    scores: list[float] = []
    for name, kind in controls.items():
        if name not in gold or gold[name] is None:
            continue
        extra: dict[str, Any] = {}
        if kind == "relations" and not explicit_spans:
            spans_name = relation_spans.get(name, span_controls[0] if len(span_controls) == 1 else None)
            if spans_name is not None:
                extra = {"spans_value": answers.get(spans_name), "spans_gold": gold.get(spans_name)}
        if name not in answers:
            control_score(kind, None, None, **options)  # still rejects an unknown type
            scores.append(0.0)
        else:
            scores.append(control_score(kind, answers[name], gold[name], **options, **extra))
    return sum(scores) / len(scores) if scores else None


def is_correct(score: float, *, threshold: float = 0.999) -> bool:
    """Whether a score counts as a correct answer in accuracy counts (near 1; NaN is not)."""
    return bool(score >= threshold)
