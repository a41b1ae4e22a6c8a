"""Consensus of list-valued regions: boxes, polygons, keypoints and time segments.

Several annotators each draw a list of regions on one item. Consensus is three steps:

1. **match**: a similarity matrix between every pair of regions (IoU for boxes, polygons and
   segments; ``1 - distance / threshold`` for keypoints), then clusters in which each annotator
   contributes at most one region (`cluster_by_iou`);
2. **fuse**: one region per cluster (weighted box fusion or coordinate median for boxes and
   segments, the medoid for polygons, the coordinate median for keypoints), its label by
   weighted vote;
3. **keep** the clusters that a quorum of annotator weight supports.

Matching is a *greedy average-linkage* agglomeration over the pairs sorted by similarity,
not a Hungarian assignment against running clusters: the Hungarian pass depends on the order
the annotators are visited in, and a consensus should not change when the same annotations
arrive in another order. With two annotators both give the same matching in practice
(greedy is the usual approximation of the optimal assignment when IoUs are well separated).

Confidence of one consensus region is the share of all annotator weight that drew it with
the same label, each vote counted by its overlap with the fused region, so identical
annotations give 1. The item's confidence averages that over the clusters, counting a
dropped cluster by the weight that did *not* draw it (they agree it is not there).

References: Solovyev, Wang & Gabruseva, "Weighted boxes fusion: Ensembling boxes from
different object detection models", Image and Vision Computing 107 (2021); Everingham et
al., "The PASCAL Visual Object Classes (VOC) Challenge", IJCV 88 (2010) for IoU matching.

Polygon IoU is exact (no rasterisation, shapely is not a dependency): the plane is cut into
horizontal slabs at every vertex and every edge crossing, inside which the length of each
horizontal chord through a polygon or through the intersection is linear in y, so the
midpoint rule integrates it exactly. It follows the even-odd rule, so non-convex and even
self-intersecting rings are handled; holes are not part of the value shape.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from labelmill.quality.transcripts import transcript_consensus

__all__ = [
    "AnnotatorValues",
    "MatchedConsensus",
    "Weights",
    "box_consensus",
    "box_iou",
    "cluster_by_iou",
    "interval_iou",
    "keypoint_consensus",
    "polygon_consensus",
    "polygon_iou",
    "polygon_iou_matrix",
    "segment_consensus",
    "weighted_median",
]

#: One list of regions per annotator, keyed by annotator id or given positionally.
AnnotatorValues = Mapping[Any, Sequence[Mapping[str, Any]]] | Sequence[Sequence[Mapping[str, Any]]]
#: Annotator weights (skills): by annotator id, positionally, or None for equal weights.
Weights = Mapping[Any, float] | Sequence[float] | None

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]


@dataclass(frozen=True)
class MatchedConsensus:
    """The consensus of one list-valued control on one item.

    `value` is the control's value in DESIGN's shape (a list of boxes, spans, ...);
    `confidences[k]` belongs to `value[k]`; `confidence` is the agreement on the whole item;
    `members[k]` lists the ``(annotator, index)`` pairs whose regions were fused into
    `value[k]` (annotator as given: its key, or its position for a sequence input).
    """

    value: list[dict[str, Any]]
    confidences: list[float]
    confidence: float
    members: list[list[tuple[Hashable, int]]]
    method: str


# --------------------------------------------------------------------------- similarity


def box_iou(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """IoU between every box of `a` (N, 4) and every box of `b` (M, 4), boxes as x, y, w, h.

    Empty boxes (zero area) have IoU 0 with everything, except an identical empty box.
    """
    a_ = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b_ = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ax1, ay1, ax2, ay2 = a_[:, 0], a_[:, 1], a_[:, 0] + a_[:, 2], a_[:, 1] + a_[:, 3]
    bx1, by1, bx2, by2 = b_[:, 0], b_[:, 1], b_[:, 0] + b_[:, 2], b_[:, 1] + b_[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None, :]) - np.maximum(ax1[:, None], bx1[None, :]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None, :]) - np.maximum(ay1[:, None], by1[None, :]), 0, None)
    inter = iw * ih
    union = (a_[:, 2] * a_[:, 3])[:, None] + (b_[:, 2] * b_[:, 3])[None, :] - inter
    same = np.all(a_[:, None, :] == b_[None, :, :], axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.where(same, 1.0, iou)


def interval_iou(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """IoU between every interval of `a` (N, 2) and of `b` (M, 2), intervals as [start, end).

    Used for text spans (code points) and time segments (seconds): the 1-D analogue of `box_iou`.
    """
    a_ = np.asarray(a, dtype=np.float64).reshape(-1, 2)
    b_ = np.asarray(b, dtype=np.float64).reshape(-1, 2)
    inter = np.clip(
        np.minimum(a_[:, 1][:, None], b_[:, 1][None, :]) - np.maximum(a_[:, 0][:, None], b_[:, 0][None, :]),
        0,
        None,
    )
    union = (a_[:, 1] - a_[:, 0])[:, None] + (b_[:, 1] - b_[:, 0])[None, :] - inter
    same = np.all(a_[:, None, :] == b_[None, :, :], axis=2)
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return np.where(same, 1.0, iou)


def _ring(points: ArrayLike) -> FloatArray:
    ring = np.asarray(points, dtype=np.float64)
    if ring.ndim != 2 or ring.shape[1] != 2 or len(ring) < 3:
        raise ValueError(f"a polygon needs at least 3 points [x, y]; got shape {ring.shape}")
    if np.array_equal(ring[0], ring[-1]):
        ring = ring[:-1]
    return ring


def _edges(ring: FloatArray) -> FloatArray:
    """Edges of a closed ring as rows x0, y0, x1, y1."""
    return np.hstack([ring, np.roll(ring, -1, axis=0)])


def _crossing_ys(edges: FloatArray) -> FloatArray:
    """The y of every proper crossing between two edges (vectorised over all pairs)."""
    p, r = edges[:, :2], edges[:, 2:] - edges[:, :2]
    dp = p[None, :, :] - p[:, None, :]  # q - p for q = column edge, p = row edge
    denom = r[:, None, 0] * r[None, :, 1] - r[:, None, 1] * r[None, :, 0]
    ok = np.abs(denom) > 1e-300
    safe = np.where(ok, denom, 1.0)
    t = (dp[..., 0] * r[None, :, 1] - dp[..., 1] * r[None, :, 0]) / safe
    u = (dp[..., 0] * r[:, None, 1] - dp[..., 1] * r[:, None, 0]) / safe
    hit = ok & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    ys = p[:, None, 1] + t * r[:, None, 1]
    return ys[hit]


def _chords(edges: FloatArray, ys: FloatArray, big: float) -> FloatArray:
    """Inside intervals of a ring on each horizontal line y (even-odd rule), shape (K, n, 2).

    Missing intervals are padded with ``[big, big]`` so they have zero length and overlap nothing.
    """
    x0, y0, x1, y1 = edges.T
    y = ys[:, None]
    crosses = (y0[None, :] <= y) != (y1[None, :] <= y)
    dy = np.where(y1 != y0, y1 - y0, 1.0)
    xs = np.where(crosses, x0[None, :] + (y - y0[None, :]) * ((x1 - x0) / dy)[None, :], big)
    xs.sort(axis=1)
    width = int(crosses.sum(axis=1).max(initial=0))
    width += width % 2
    xs = xs[:, : max(width, 2)]
    return np.stack([xs[:, 0::2], xs[:, 1::2]], axis=2)


def _overlap(a: FloatArray, b: FloatArray) -> FloatArray:
    """Total length of the intersection of two sets of disjoint intervals, per row."""
    lo = np.maximum(a[:, :, None, 0], b[:, None, :, 0])
    hi = np.minimum(a[:, :, None, 1], b[:, None, :, 1])
    return np.clip(hi - lo, 0, None).sum(axis=(1, 2))


def polygon_iou(p: ArrayLike, q: ArrayLike) -> float:
    """Exact IoU of two polygons given as point lists ``[[x, y], ...]`` (even-odd rule).

    Slab decomposition (see the module docstring): O((V_p + V_q)^2) for the crossings, then
    one vectorised pass per slab line. Exact up to floating point for any simple polygon,
    convex or not. Two identical degenerate (zero-area) polygons have IoU 1.
    """
    ring_p, ring_q = _ring(p), _ring(q)
    if ring_p.shape == ring_q.shape and np.array_equal(ring_p, ring_q):
        return 1.0
    edges_p, edges_q = _edges(ring_p), _edges(ring_q)
    both = np.vstack([edges_p, edges_q])
    ys = np.unique(np.concatenate([ring_p[:, 1], ring_q[:, 1], _crossing_ys(both)]))
    if len(ys) < 2:
        return 0.0
    mids, heights = (ys[1:] + ys[:-1]) / 2, np.diff(ys)
    big = float(np.abs(both).max()) * 2 + 1.0
    chords_p, chords_q = _chords(edges_p, mids, big), _chords(edges_q, mids, big)
    area_p = float(heights @ (chords_p[..., 1] - chords_p[..., 0]).sum(axis=1))
    area_q = float(heights @ (chords_q[..., 1] - chords_q[..., 0]).sum(axis=1))
    inter = float(heights @ _overlap(chords_p, chords_q))
    union = area_p + area_q - inter
    return inter / union if union > 0 else 0.0


def polygon_iou_matrix(polygons: Sequence[ArrayLike]) -> FloatArray:
    """Symmetric IoU matrix of a list of polygons (bounding boxes prune pairs that cannot touch)."""
    rings = [_ring(points) for points in polygons]
    n = len(rings)
    out = np.eye(n)
    if n < 2:
        return out
    lo = np.array([ring.min(axis=0) for ring in rings])
    hi = np.array([ring.max(axis=0) for ring in rings])
    touch = np.all((np.minimum(hi[:, None], hi[None, :]) >= np.maximum(lo[:, None], lo[None, :])), axis=2)
    for i, j in zip(*np.nonzero(np.triu(touch, 1)), strict=True):
        out[i, j] = out[j, i] = polygon_iou(rings[i], rings[j])
    return out


# --------------------------------------------------------------------------- clustering


def cluster_by_iou(
    similarity: ArrayLike,
    owners: ArrayLike,
    threshold: float,
    rank: ArrayLike | None = None,
) -> IntArray:
    """Cluster regions so that each cluster holds at most one region per annotator.

    Greedy average linkage: visit pairs of regions from different annotators by decreasing
    similarity (ties by `rank`, a canonical order of the regions, so the result does not
    depend on input order), and merge their two clusters when they share no annotator and the
    mean similarity between their members is at least `threshold`. Average rather than single
    linkage so that a chain of slightly shifted boxes does not collapse into one cluster.

    Returns a cluster number per region, numbered by the lowest rank in each cluster.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    owner = np.asarray(owners, dtype=np.intp)
    n = len(owner)
    order_rank = np.arange(n) if rank is None else np.asarray(rank)
    parent = list(range(n))
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    annotators: dict[int, set[int]] = {i: {int(owner[i])} for i in range(n)}
    if n > 1:
        i_idx, j_idx = np.triu_indices(n, 1)
        s = sim[i_idx, j_idx]
        keep = (owner[i_idx] != owner[j_idx]) & (s >= threshold)
        i_idx, j_idx, s = i_idx[keep], j_idx[keep], s[keep]
        lo = np.minimum(order_rank[i_idx], order_rank[j_idx])
        hi = np.maximum(order_rank[i_idx], order_rank[j_idx])
        for e in np.lexsort((hi, lo, -s)):
            a, b = parent[i_idx[e]], parent[j_idx[e]]
            if a == b or annotators[a] & annotators[b]:
                continue
            if sim[np.ix_(members[a], members[b])].mean() < threshold:
                continue
            for m in members[b]:
                parent[m] = a
            members[a].extend(members.pop(b))
            annotators[a] |= annotators.pop(b)
    roots = sorted(members, key=lambda r: min(order_rank[m] for m in members[r]))
    number = {root: k for k, root in enumerate(roots)}
    return np.array([number[parent[i]] for i in range(n)], dtype=np.intp)


def weighted_median(values: ArrayLike, weights: ArrayLike | None = None, *, lower: bool = False) -> float:
    """Weighted median; with `lower`, always one of the values (the lower one on an even split)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if len(v) == 0:
        raise ValueError("weighted_median of no values")
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    cum = np.cumsum(w)
    half = cum[-1] / 2
    k = int(np.searchsorted(cum, half * (1 - 1e-12)))
    k = min(k, len(v) - 1)
    if not lower and abs(cum[k] - half) <= 1e-12 * cum[-1] and k + 1 < len(v):
        return float((v[k] + v[k + 1]) / 2)
    return float(v[k])


# --------------------------------------------------------------------------- shared voting


@dataclass(frozen=True)
class _Flat:
    """All annotators' regions of one item in one flat list."""

    annotators: list[Hashable]
    weight: FloatArray  # per annotator
    owner: IntArray  # annotator position per region
    index: IntArray  # index inside the annotator's list
    values: list[Mapping[str, Any]]

    @property
    def labels(self) -> list[Any]:
        return [value.get("label") for value in self.values]


def _annotator_weights(keys: list[Hashable], weights: Weights) -> FloatArray:
    if weights is None:
        w = np.ones(len(keys))
    elif isinstance(weights, Mapping):
        known = [float(v) for v in weights.values()]
        fallback = float(np.mean(known)) if known else 1.0
        w = np.array([float(weights.get(key, fallback)) for key in keys])
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (len(keys),):
            raise ValueError(f"weights: expected {len(keys)} weights, one per annotator; got {w.shape}")
    if np.any(~np.isfinite(w)) or np.any(w < 0):
        raise ValueError("weights: annotator weights must be finite and non-negative")
    if len(keys) and w.sum() <= 0:
        raise ValueError("weights: at least one annotator needs a positive weight")
    return w


def flatten_annotations(annotations: AnnotatorValues, weights: Weights = None) -> _Flat:
    """One flat list of every annotator's regions (an internal step shared with `spans`)."""
    if isinstance(annotations, Mapping):
        keys: list[Hashable] = list(annotations.keys())
        lists = [annotations[key] for key in keys]
    else:
        lists = list(annotations)
        keys = list(range(len(lists)))
    owner: list[int] = []
    index: list[int] = []
    values: list[Mapping[str, Any]] = []
    for pos, (key, regions) in enumerate(zip(keys, lists, strict=True)):
        if isinstance(regions, (str, bytes, Mapping)):
            raise ValueError(f"annotator {key!r}: expected a list of regions, got {type(regions).__name__}")
        for i, region in enumerate(regions):
            if not isinstance(region, Mapping):
                raise ValueError(f"annotator {key!r}, region {i}: expected an object, got {region!r}")
            owner.append(pos)
            index.append(i)
            values.append(region)
    return _Flat(
        annotators=keys,
        weight=_annotator_weights(keys, weights),
        owner=np.array(owner, dtype=np.intp),
        index=np.array(index, dtype=np.intp),
        values=values,
    )


def field_array(flat: _Flat, fields: Sequence[str]) -> FloatArray:
    """Numeric fields of every region as an (N, len(fields)) array, with a clear error on bad input."""
    out = np.empty((len(flat.values), len(fields)))
    for r, value in enumerate(flat.values):
        for c, name in enumerate(fields):
            try:
                out[r, c] = float(value[name])
            except (KeyError, TypeError, ValueError):
                key, i = flat.annotators[flat.owner[r]], flat.index[r]
                got = value.get(name)
                raise ValueError(
                    f"annotator {key!r}, region {i}, field {name!r}: expected a number, got {got!r}"
                ) from None
    if not np.all(np.isfinite(out)):
        raise ValueError("regions: coordinates must be finite numbers")
    return out


def _label_key(label: Any) -> str:
    return "" if label is None else str(label)


def canonical_rank(flat: _Flat, coords: FloatArray) -> IntArray:
    """A content-based order of the regions, so ties break the same way whatever the input order."""
    keys = [
        (_label_key(label), tuple(row), int(owner))
        for label, row, owner in zip(flat.labels, coords.tolist(), flat.owner, strict=True)
    ]
    order = sorted(range(len(keys)), key=keys.__getitem__)
    rank = np.empty(len(keys), dtype=np.intp)
    rank[order] = np.arange(len(keys))
    return rank


def _vote_label(labels: Sequence[Any], weights: FloatArray) -> Any:
    totals: dict[str, tuple[float, Any]] = {}
    for label, w in zip(labels, weights, strict=True):
        key = _label_key(label)
        totals[key] = (totals.get(key, (0.0, label))[0] + float(w), label)
    # max() keeps the first of equal weights, so a tie goes to the alphabetically first label
    best = max(sorted(totals.items()), key=lambda kv: kv[1][0])
    return best[1][1]


#: fuse(member positions, their weights) -> (fused value without label, agreement of each member)
Fuse = Callable[[IntArray, FloatArray], tuple[dict[str, Any], FloatArray]]


def match_and_vote(
    flat: _Flat,
    similarity: FloatArray,
    *,
    threshold: float,
    quorum: float,
    rank: IntArray,
    fuse: Fuse,
) -> tuple[list[tuple[dict[str, Any], float, list[tuple[Hashable, int]]]], float]:
    """Cluster, fuse and keep (see the module docstring). Returns kept regions and item confidence."""
    if not 0 <= quorum <= 1:
        raise ValueError(f"quorum must be in [0, 1]; got {quorum}")
    total = float(flat.weight.sum()) if len(flat.weight) else 1.0
    clusters = cluster_by_iou(similarity, flat.owner, threshold, rank)
    labels = flat.labels
    kept: list[tuple[dict[str, Any], float, list[tuple[Hashable, int]]]] = []
    agreement: list[float] = []
    for k in range(int(clusters.max(initial=-1)) + 1):
        idx = np.flatnonzero(clusters == k)
        idx = idx[np.argsort(rank[idx])]
        w = flat.weight[flat.owner[idx]]
        support = float(w.sum()) / total
        if support < quorum - 1e-12 or support <= 0:
            agreement.append(1.0 - support)
            continue
        label = _vote_label([labels[i] for i in idx], w)
        fused, agree = fuse(idx, w)
        same = np.array([_label_key(labels[i]) == _label_key(label) for i in idx])
        confidence = float(np.clip((w * agree * same).sum() / total, 0.0, 1.0))
        fused["label"] = label
        members = [(flat.annotators[flat.owner[i]], int(flat.index[i])) for i in idx]
        kept.append((fused, confidence, members))
        agreement.append(confidence)
    return kept, float(np.mean(agreement)) if agreement else 1.0


def _result(
    kept: list[tuple[dict[str, Any], float, list[tuple[Hashable, int]]]],
    confidence: float,
    method: str,
    sort_key: Callable[[dict[str, Any]], Any],
) -> MatchedConsensus:
    kept = sorted(kept, key=lambda entry: sort_key(entry[0]))
    return MatchedConsensus(
        value=[entry[0] for entry in kept],
        confidences=[entry[1] for entry in kept],
        confidence=confidence,
        members=[entry[2] for entry in kept],
        method=method,
    )


def _label_similarity(flat: _Flat, sim: FloatArray, floor: float) -> FloatArray:
    keys = np.array([_label_key(label) for label in flat.labels], dtype=object)
    return np.where(keys[:, None] == keys[None, :], sim, floor)


# --------------------------------------------------------------------------- boxes


def box_consensus(
    annotations: AnnotatorValues,
    *,
    weights: Weights = None,
    iou_threshold: float = 0.5,
    quorum: float = 0.5,
    fusion: str = "wbf",
    match_labels: bool = False,
    image_size: tuple[float, float] | None = None,
) -> MatchedConsensus:
    """Consensus of bounding boxes ``{"x", "y", "w", "h", "label"}`` drawn by several annotators.

    `fusion="wbf"` averages the corners weighted by annotator weight (weighted boxes fusion,
    Solovyev et al. 2021, with annotator skill in place of detector score); `"median"` takes
    the weighted median of each corner, which ignores one annotator's stray corner. With
    `match_labels`, boxes of different labels never match; otherwise label is voted per cluster.
    `image_size` ``(width, height)`` clips the fused boxes to the image.
    """
    if fusion not in ("wbf", "median"):
        raise ValueError(f"fusion must be 'wbf' or 'median'; got {fusion!r}")
    flat = flatten_annotations(annotations, weights)
    xywh = field_array(flat, ("x", "y", "w", "h"))
    if np.any(xywh[:, 2:] < 0):
        raise ValueError("boxes: w and h must be non-negative")
    corners = np.hstack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
    sim = box_iou(xywh, xywh)
    if match_labels:
        sim = _label_similarity(flat, sim, 0.0)

    def fuse(idx: IntArray, w: FloatArray) -> tuple[dict[str, Any], FloatArray]:
        if fusion == "wbf":
            box = (w @ corners[idx]) / w.sum()
        else:
            box = np.array([weighted_median(corners[idx, c], w) for c in range(4)])
        if image_size is not None:
            box = np.clip(box, 0.0, np.array([image_size[0], image_size[1]] * 2, dtype=np.float64))
        fused = np.array([box[0], box[1], box[2] - box[0], box[3] - box[1]])
        value = {"x": float(fused[0]), "y": float(fused[1]), "w": float(fused[2]), "h": float(fused[3])}
        return value, box_iou(xywh[idx], fused)[:, 0]

    kept, confidence = match_and_vote(
        flat, sim, threshold=iou_threshold, quorum=quorum, rank=canonical_rank(flat, xywh), fuse=fuse
    )
    return _result(kept, confidence, f"boxes-{fusion}", lambda v: (v["y"], v["x"], _label_key(v["label"])))


# --------------------------------------------------------------------------- polygons


def polygon_consensus(
    annotations: AnnotatorValues,
    *,
    weights: Weights = None,
    iou_threshold: float = 0.5,
    quorum: float = 0.5,
    match_labels: bool = False,
    image_size: tuple[float, float] | None = None,
) -> MatchedConsensus:
    """Consensus of polygons ``{"points": [[x, y], ...], "label"}``.

    The fused polygon is the cluster's medoid: the member with the highest weighted mean IoU
    to the other members. Averaging vertices is undefined when annotators click different
    numbers of points, and the medoid is always a polygon someone actually drew.
    """
    flat = flatten_annotations(annotations, weights)
    rings: list[FloatArray] = []
    for r, value in enumerate(flat.values):
        try:
            rings.append(_ring(value["points"]))
        except (KeyError, TypeError, ValueError) as err:
            key, i = flat.annotators[flat.owner[r]], flat.index[r]
            raise ValueError(f"annotator {key!r}, polygon {i}, field 'points': {err}") from None
    sim = polygon_iou_matrix(rings)
    if match_labels:
        sim = _label_similarity(flat, sim, 0.0)
    summary = np.array([[*ring.min(axis=0), *ring.max(axis=0), len(ring)] for ring in rings]).reshape(-1, 5)

    def fuse(idx: IntArray, w: FloatArray) -> tuple[dict[str, Any], FloatArray]:
        block = sim[np.ix_(idx, idx)]
        if len(idx) > 1:
            others = w.sum() - w
            score = (block @ w - np.diag(block) * w) / np.where(others > 0, others, 1.0)
            best = int(np.argmax(score))  # idx is in canonical order, so ties are stable
        else:
            best = 0
        ring = rings[idx[best]]
        if image_size is not None:
            ring = np.clip(ring, 0.0, np.asarray(image_size, dtype=np.float64))
        return {"points": ring.tolist()}, block[best]

    kept, confidence = match_and_vote(
        flat, sim, threshold=iou_threshold, quorum=quorum, rank=canonical_rank(flat, summary), fuse=fuse
    )
    return _result(
        kept,
        confidence,
        "polygons-medoid",
        lambda v: (min(p[1] for p in v["points"]), min(p[0] for p in v["points"]), _label_key(v["label"])),
    )


# --------------------------------------------------------------------------- keypoints


def keypoint_consensus(
    annotations: AnnotatorValues,
    *,
    distance_threshold: float,
    weights: Weights = None,
    quorum: float = 0.5,
    image_size: tuple[float, float] | None = None,
) -> MatchedConsensus:
    """Consensus of keypoints ``{"x", "y", "label"}``: per label, points within a distance.

    Points of the same label are clustered with similarity ``1 - distance / distance_threshold``
    (so a cluster's mean pairwise distance is at most the threshold, e.g. a few pixels or a
    fraction of the object size); the fused point is the weighted coordinate median. A vote
    counts ``max(0, 1 - d / distance_threshold)`` toward confidence, d its distance to the fused point.
    """
    if distance_threshold <= 0:
        raise ValueError(f"distance_threshold must be positive; got {distance_threshold}")
    flat = flatten_annotations(annotations, weights)
    xy = field_array(flat, ("x", "y"))
    dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2))
    sim = _label_similarity(flat, 1.0 - dist / distance_threshold, -np.inf)

    def fuse(idx: IntArray, w: FloatArray) -> tuple[dict[str, Any], FloatArray]:
        point = np.array([weighted_median(xy[idx, 0], w), weighted_median(xy[idx, 1], w)])
        if image_size is not None:
            point = np.clip(point, 0.0, np.asarray(image_size, dtype=np.float64))
        d = np.sqrt(((xy[idx] - point) ** 2).sum(axis=1))
        return {"x": float(point[0]), "y": float(point[1])}, np.clip(1.0 - d / distance_threshold, 0.0, 1.0)

    kept, confidence = match_and_vote(
        flat, sim, threshold=0.0, quorum=quorum, rank=canonical_rank(flat, xy), fuse=fuse
    )
    return _result(kept, confidence, "keypoints-median", lambda v: (_label_key(v["label"]), v["y"], v["x"]))


# --------------------------------------------------------------------------- time segments


def segment_consensus(
    annotations: AnnotatorValues,
    *,
    weights: Weights = None,
    iou_threshold: float = 0.5,
    quorum: float = 0.5,
    fusion: str = "median",
    match_labels: bool = False,
) -> MatchedConsensus:
    """Consensus of time segments ``{"start", "end", "label", "text"?}`` (seconds).

    Boxes in one dimension: temporal IoU, the same clustering, boundaries by weighted median
    (`fusion="median"`) or weighted mean (`"mean"`). When members carry a ``text``, the fused
    segment's text is their ROVER consensus (`labelmill.quality.transcripts`).
    """
    if fusion not in ("median", "mean"):
        raise ValueError(f"fusion must be 'median' or 'mean'; got {fusion!r}")
    flat = flatten_annotations(annotations, weights)
    bounds = field_array(flat, ("start", "end"))
    if np.any(bounds[:, 1] < bounds[:, 0]):
        raise ValueError("segments: end must not be before start")
    sim = interval_iou(bounds, bounds)
    if match_labels:
        sim = _label_similarity(flat, sim, 0.0)

    def fuse(idx: IntArray, w: FloatArray) -> tuple[dict[str, Any], FloatArray]:
        if fusion == "mean":
            start, end = (w @ bounds[idx]) / w.sum()
        else:
            start, end = weighted_median(bounds[idx, 0], w), weighted_median(bounds[idx, 1], w)
        end = max(end, start)
        value: dict[str, Any] = {"start": float(start), "end": float(end)}
        texts = [(flat.values[i].get("text"), wi) for i, wi in zip(idx, w, strict=True)]
        if any(isinstance(text, str) for text, _ in texts):
            with_text = [(text, wi) for text, wi in texts if isinstance(text, str)]
            value["text"] = transcript_consensus(
                [text for text, _ in with_text], weights=[wi for _, wi in with_text]
            ).text
        return value, interval_iou(bounds[idx], [[start, end]])[:, 0]

    kept, confidence = match_and_vote(
        flat, sim, threshold=iou_threshold, quorum=quorum, rank=canonical_rank(flat, bounds), fuse=fuse
    )
    return _result(
        kept, confidence, f"segments-{fusion}", lambda v: (v["start"], v["end"], _label_key(v["label"]))
    )
