"""Consensus of entity spans and of the relations between them, on one item.

Spans ``{"id", "start", "end", "label"}`` (code-point offsets, end exclusive) from several
annotators are matched like boxes in one dimension (`labelmill.quality.geometry`): IoU of
the character (or token) intervals, greedy average-linkage clusters with at most one span
per annotator, a cluster kept when a quorum of annotator weight has a span in it. Within a
kept cluster each boundary is the weighted majority when one reading holds more than half
the cluster's weight, else the weighted (lower) median, so it is always an offset someone
chose; the label is the weighted vote. ``match="exact"`` only matches identical boundaries,
the strict protocol of CoNLL-style evaluation.

This is the span-level majority vote that Nguyen et al. ("Aggregating and Predicting Sequence
Labels from Crowd Annotations", ACL 2017) and Rodrigues, Pereira & Ribeiro ("Sequence labeling
with multiple annotators", Machine Learning 95, 2014) use as their strong baseline; it becomes
their weighted variant when `weights` carry annotator skills.

Relations ``{"from", "to", "label"}`` refer to span ids of the same annotation, so they are
first mapped to the consensus spans through the matching, then kept per (from, to) pair by
the same quorum rule, with the label by weighted vote.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from labelmill.quality.geometry import (
    AnnotatorValues,
    MatchedConsensus,
    Weights,
    canonical_rank,
    field_array,
    flatten_annotations,
    interval_iou,
    match_and_vote,
    weighted_median,
)

__all__ = ["relation_consensus", "span_consensus", "span_id_map"]


def _majority_or_median(values: NDArray[np.float64], weights: NDArray[np.float64]) -> int:
    totals: dict[float, float] = {}
    for v, w in zip(values.tolist(), weights.tolist(), strict=True):
        totals[v] = totals.get(v, 0.0) + w
    value, weight = max(sorted(totals.items()), key=lambda kv: kv[1])
    if weight > weights.sum() / 2:
        return int(value)
    return int(weighted_median(values, weights, lower=True))


def _token_intervals(bounds: NDArray[np.float64], tokens: Sequence[tuple[int, int]]) -> NDArray[np.float64]:
    """Map character intervals to the token intervals they touch, [first, last + 1)."""
    tok = np.asarray(tokens, dtype=np.float64).reshape(-1, 2)
    if len(tok) == 0:
        return bounds
    first = np.searchsorted(tok[:, 1], bounds[:, 0], side="right")
    last = np.searchsorted(tok[:, 0], bounds[:, 1], side="left")
    return np.stack([first, np.maximum(last, first)], axis=1).astype(np.float64)


def span_consensus(
    annotations: AnnotatorValues,
    *,
    weights: Weights = None,
    match: str = "overlap",
    iou_threshold: float = 0.5,
    quorum: float = 0.5,
    match_labels: bool = False,
    tokens: Sequence[tuple[int, int]] | None = None,
) -> MatchedConsensus:
    """Consensus spans of one item from several annotators' span lists.

    `match="overlap"` matches spans whose IoU is at least `iou_threshold`, measured in
    characters, or in tokens when `tokens` (the item's ``(start, end)`` token offsets) are
    given, so that "the Empire State" and "Empire State" count as the same 2-of-3-token span.
    `match="exact"` matches identical boundaries only. The result's spans get fresh ids
    ``s1, s2, ...`` in text order; `members` links them to the annotators' own spans.
    """
    if match not in ("overlap", "exact"):
        raise ValueError(f"match must be 'overlap' or 'exact'; got {match!r}")
    flat = flatten_annotations(annotations, weights)
    bounds = field_array(flat, ("start", "end"))
    if np.any(bounds[:, 1] < bounds[:, 0]) or np.any(bounds != np.round(bounds)):
        raise ValueError("spans: start and end must be integer offsets with start <= end")
    measured = _token_intervals(bounds, tokens) if tokens is not None else bounds
    sim = interval_iou(measured, measured)
    threshold = 1.0 if match == "exact" else iou_threshold
    if match == "exact":
        sim = np.where(np.all(bounds[:, None, :] == bounds[None, :, :], axis=2), 1.0, 0.0)
    if match_labels:
        labels = np.array([str(label) for label in flat.labels], dtype=object)
        sim = np.where(labels[:, None] == labels[None, :], sim, 0.0)

    def fuse(idx: NDArray[np.intp], w: NDArray[np.float64]) -> tuple[dict[str, Any], NDArray[np.float64]]:
        start = _majority_or_median(bounds[idx, 0], w)
        end = _majority_or_median(bounds[idx, 1], w)
        if end <= start:  # crossing medians of disjoint readings: fall back to the heaviest member
            best = int(idx[np.argmax(w)])
            start, end = int(bounds[best, 0]), int(bounds[best, 1])
        return {"start": start, "end": end}, interval_iou(bounds[idx], [[start, end]])[:, 0]

    kept, confidence = match_and_vote(
        flat, sim, threshold=threshold, quorum=quorum, rank=canonical_rank(flat, bounds), fuse=fuse
    )
    kept.sort(key=lambda entry: (entry[0]["start"], entry[0]["end"], str(entry[0]["label"])))
    value = [
        {"id": f"s{k + 1}", "start": fused["start"], "end": fused["end"], "label": fused["label"]}
        for k, (fused, _, _) in enumerate(kept)
    ]
    return MatchedConsensus(
        value=value,
        confidences=[entry[1] for entry in kept],
        confidence=confidence,
        members=[entry[2] for entry in kept],
        method=f"spans-{match}",
    )


def span_id_map(annotations: AnnotatorValues, consensus: MatchedConsensus) -> dict[Hashable, dict[Any, str]]:
    """For each annotator, its span ids mapped to the consensus span ids they were merged into."""
    lists: Mapping[Any, Sequence[Mapping[str, Any]]] = (
        annotations if isinstance(annotations, Mapping) else dict(enumerate(annotations))
    )
    out: dict[Hashable, dict[Any, str]] = {key: {} for key in lists}
    for span, members in zip(consensus.value, consensus.members, strict=True):
        for annotator, index in members:
            own_id = lists[annotator][index].get("id")
            if own_id is not None:
                out[annotator][own_id] = span["id"]
    return out


def relation_consensus(
    spans: AnnotatorValues,
    relations: AnnotatorValues,
    consensus: MatchedConsensus,
    *,
    weights: Weights = None,
    quorum: float = 0.5,
) -> MatchedConsensus:
    """Consensus relations ``{"from", "to", "label"}`` between the consensus spans.

    `spans` and `relations` are the same annotators' span and relation lists; `consensus` is
    `span_consensus` of `spans`. A relation whose end is a span that did not survive is a vote
    for nothing. Direction matters: (a, b) and (b, a) are different pairs.
    """
    id_map = span_id_map(spans, consensus)
    flat = flatten_annotations(relations, weights)
    total = float(flat.weight.sum()) if len(flat.weight) else 1.0
    votes: dict[tuple[str, str], dict[int, tuple[Any, int]]] = {}
    for r, relation in enumerate(flat.values):
        annotator = flat.annotators[flat.owner[r]]
        own = id_map.get(annotator, {})
        try:
            ends = own.get(relation["from"]), own.get(relation["to"])
        except KeyError as err:
            raise ValueError(
                f"annotator {annotator!r}, relation {flat.index[r]}: missing field {err}"
            ) from None
        if ends[0] is None or ends[1] is None:
            continue
        # one vote per annotator and pair: the first relation it drew there
        votes.setdefault((ends[0], ends[1]), {}).setdefault(int(flat.owner[r]), (relation.get("label"), r))
    kept: list[tuple[dict[str, Any], float, list[tuple[Hashable, int]]]] = []
    agreement: list[float] = []
    for (source, target), by_owner in sorted(votes.items()):
        owners = sorted(by_owner)
        w = flat.weight[owners]
        support = float(w.sum()) / total
        if support < quorum - 1e-12 or support <= 0:
            agreement.append(1.0 - support)
            continue
        labels: dict[str, float] = {}
        for owner, wi in zip(owners, w, strict=True):
            key = str(by_owner[owner][0])
            labels[key] = labels.get(key, 0.0) + float(wi)
        label_key, label_weight = max(sorted(labels.items()), key=lambda kv: kv[1])
        label = next(by_owner[o][0] for o in owners if str(by_owner[o][0]) == label_key)
        members = [(flat.annotators[o], int(flat.index[by_owner[o][1]])) for o in owners]
        kept.append(({"from": source, "to": target, "label": label}, label_weight / total, members))
        agreement.append(label_weight / total)
    return MatchedConsensus(
        value=[entry[0] for entry in kept],
        confidences=[entry[1] for entry in kept],
        confidence=float(np.mean(agreement)) if agreement else 1.0,
        members=[entry[2] for entry in kept],
        method="relations-vote",
    )
