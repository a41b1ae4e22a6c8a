"""Adaptive overlap: does this item need another label?

A fixed overlap wastes labels on easy items and leaves hard ones under-labelled. The project
settings (DESIGN.md "Project settings") say each item gets ``overlap`` labels, and then more, up to
``max_overlap``, while the consensus confidence is below ``target_confidence``. This module holds
that rule and the Bayes update the queue needs to apply it after every submitted label without
refitting an aggregation model: the model's per-worker confusion matrices (Dawid–Skene) or
one-coin skills are fitted now and then by a job, and between refits each item's posterior is
recomputed from its few labels in microseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

__all__ = [
    "item_needs_another_label",
    "item_posterior",
    "least_confidence",
    "min_labels_to_target",
    "needs_another_label",
    "update_posterior",
]

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]

#: Probabilities are clipped here before taking logs, so a confusion-matrix zero (a worker who
#: "never" makes some mistake) weakens a class instead of ruling it out for good.
_FLOOR = 1e-12


def _check_overlap(target_confidence: float, overlap: int, max_overlap: int | None) -> int:
    if not 0.0 < target_confidence <= 1.0:
        raise ValueError(f"target_confidence must be in (0, 1], got {target_confidence}")
    if overlap < 1:
        raise ValueError(f"overlap must be at least 1, got {overlap}")
    ceiling = overlap if max_overlap is None else max_overlap
    if ceiling < overlap:
        raise ValueError(f"max_overlap ({ceiling}) must not be below overlap ({overlap})")
    return ceiling


def _confidence(posterior: npt.ArrayLike) -> FloatArray:
    """Largest posterior per item (last axis = classes); an unknown (NaN) posterior has confidence 0."""
    probabilities = np.asarray(posterior, dtype=np.float64)
    if probabilities.ndim not in (1, 2) or probabilities.shape[-1] == 0:
        raise ValueError(f"posterior must be (n_classes,) or (n_items, n_classes), got {probabilities.shape}")
    return np.asarray(np.nan_to_num(probabilities, nan=0.0).max(axis=-1), dtype=np.float64)


def needs_another_label(
    posterior: npt.ArrayLike,
    n_labels: npt.ArrayLike,
    *,
    target_confidence: float = 0.95,
    overlap: int = 1,
    max_overlap: int | None = None,
) -> BoolArray:
    """Which items need one more label: fewer than ``overlap`` labels, or not yet confident enough
    (largest posterior below ``target_confidence``) while under ``max_overlap`` labels.

    ``max_overlap`` defaults to ``overlap`` (no adaptive labels), as in the project settings, and an
    item at ``max_overlap`` never needs more, whatever its confidence: the budget is a promise to
    the project owner. ``posterior`` is ``(n_items, n_classes)`` or one item's ``(n_classes,)``;
    the result has the shape of ``posterior`` without its class axis.
    """
    ceiling = _check_overlap(target_confidence, overlap, max_overlap)
    confidence = _confidence(posterior)
    counts = np.asarray(n_labels, dtype=np.float64)
    if counts.size and (np.isnan(counts).any() or counts.min() < 0):
        raise ValueError("n_labels must be non-negative label counts")
    counts = np.broadcast_to(counts, confidence.shape)
    return np.asarray((counts < overlap) | ((confidence < target_confidence) & (counts < ceiling)))


def item_needs_another_label(
    posterior: npt.ArrayLike,
    n_labels: int,
    *,
    target_confidence: float = 0.95,
    overlap: int = 1,
    max_overlap: int | None = None,
) -> bool:
    """The queue's single-item form of :func:`needs_another_label`."""
    return bool(
        needs_another_label(
            np.asarray(posterior, dtype=np.float64).reshape(-1),
            np.int64(n_labels),
            target_confidence=target_confidence,
            overlap=overlap,
            max_overlap=max_overlap,
        )
    )


def min_labels_to_target(
    posterior: npt.ArrayLike,
    n_labels: npt.ArrayLike,
    *,
    worker_accuracy: float = 0.8,
    target_confidence: float = 0.95,
    overlap: int = 1,
) -> FloatArray:
    """Fewest further labels that could bring each item to ``target_confidence``.

    Assumes every further label agrees with the current leading class and comes from a one-coin
    worker of ``worker_accuracy`` over ``K`` classes, so each multiplies the leader's odds against
    the rest by ``r = a (K − 1) / (1 − a)``. That is the best case, hence a lower bound: useful to
    rank items by how close they are to done and to estimate the remaining labelling cost. Items
    short of ``overlap`` need at least the difference. ``inf`` where such workers can never get
    there (``a ≤ 1/K``). Compare with ``max_overlap − n_labels`` to see what the budget allows.
    """
    _check_overlap(target_confidence, overlap, None)
    if not 0.0 < worker_accuracy < 1.0:
        raise ValueError(f"worker_accuracy must be in (0, 1), got {worker_accuracy}")
    probabilities = np.atleast_2d(np.asarray(posterior, dtype=np.float64))
    n_classes = probabilities.shape[-1]
    leader = np.clip(_confidence(probabilities), _FLOOR, 1.0)
    ratio = worker_accuracy * (n_classes - 1) / (1.0 - worker_accuracy)
    with np.errstate(divide="ignore"):
        needed_log_odds = np.log(target_confidence / max(1.0 - target_confidence, _FLOOR)) - np.log(
            leader / np.maximum(1.0 - leader, _FLOOR)
        )
    if ratio <= 1.0:
        steps = np.where(needed_log_odds <= 0, 0.0, math.inf)
    else:
        steps = np.ceil(np.maximum(needed_log_odds, 0.0) / math.log(ratio) - 1e-9)
    short = np.maximum(overlap - np.asarray(n_labels, dtype=np.float64), 0.0)
    result = np.maximum(steps, short)
    return result if np.ndim(posterior) == 2 else result.reshape(())


def _log_likelihoods(
    labels: npt.NDArray[np.intp],
    n_classes: int,
    workers: npt.NDArray[np.intp] | None,
    confusions: npt.ArrayLike | None,
    skills: npt.ArrayLike | None,
) -> FloatArray:
    """``log P(label_i | true class k)`` as an ``(n_labels, n_classes)`` array."""
    if (confusions is None) == (skills is None):
        raise ValueError("give exactly one of confusions or skills")
    if confusions is not None:
        matrices = np.asarray(confusions, dtype=np.float64)
        if matrices.ndim == 2:
            matrices = np.broadcast_to(matrices, (len(labels), n_classes, n_classes))
        elif workers is not None:
            matrices = matrices[workers]
        if matrices.shape != (len(labels), n_classes, n_classes):
            raise ValueError(
                f"confusions must be (K, K), (n_labels, K, K) or (n_workers, K, K); K = {n_classes}"
            )
        # matrices[i, true, observed]: the column of the observed label, for every true class.
        likelihood = matrices[np.arange(len(labels)), :, labels]
    else:
        accuracy = np.asarray(skills, dtype=np.float64)
        if accuracy.ndim == 1 and workers is not None:
            accuracy = accuracy[workers]
        accuracy = np.broadcast_to(accuracy, (len(labels),))
        if np.any((accuracy < 0) | (accuracy > 1)):
            raise ValueError("skills are one-coin accuracies and must be in [0, 1]")
        wrong = (1.0 - accuracy) / max(n_classes - 1, 1)
        likelihood = np.where(
            np.arange(n_classes)[None, :] == labels[:, None], accuracy[:, None], wrong[:, None]
        )
    return np.asarray(np.log(np.clip(likelihood, _FLOOR, 1.0)), dtype=np.float64)


def _normalise_log(log_posterior: FloatArray) -> FloatArray:
    shifted = np.exp(log_posterior - log_posterior.max())
    return np.asarray(shifted / shifted.sum(), dtype=np.float64)


def item_posterior(
    labels: npt.ArrayLike,
    priors: npt.ArrayLike,
    *,
    workers: npt.ArrayLike | None = None,
    confusions: npt.ArrayLike | None = None,
    skills: npt.ArrayLike | None = None,
) -> FloatArray:
    """Posterior over the true class of one item from its labels, by Bayes' rule in log space.

    ``P(k | labels) ∝ priors[k] · Π_i P(label_i | k)`` with the labels independent given the true
    class, which is the Dawid–Skene model with its parameters held fixed. Give either
    ``confusions`` (``[true, observed]`` rows summing to 1, as a Dawid–Skene fit yields) or
    ``skills`` (one-coin accuracy: right with probability ``s``, else uniformly wrong). Both are
    aligned with ``labels`` one per label, or, with ``workers`` (integer worker codes per label),
    indexed by worker; one shared ``(K, K)`` matrix or scalar skill also works. A worker the model
    has not seen yet should get a prior skill from the caller. Log space keeps dozens of labels
    from underflowing; with no labels the result is the prior.
    """
    class_priors = np.asarray(priors, dtype=np.float64)
    if (
        class_priors.ndim != 1
        or class_priors.size == 0
        or np.any(class_priors < 0)
        or class_priors.sum() <= 0
    ):
        raise ValueError("priors must be a non-empty 1-D array of non-negative weights")
    codes = np.asarray(labels, dtype=np.intp).reshape(-1)
    n_classes = len(class_priors)
    if codes.size and (codes.min() < 0 or codes.max() >= n_classes):
        raise ValueError(f"labels must be class indices in 0..{n_classes - 1}")
    worker_codes = None if workers is None else np.asarray(workers, dtype=np.intp).reshape(-1)
    if worker_codes is not None and len(worker_codes) != len(codes):
        raise ValueError("workers must give one worker per label")
    log_posterior = np.log(np.clip(class_priors / class_priors.sum(), _FLOOR, 1.0))
    if codes.size:
        log_posterior = log_posterior + _log_likelihoods(
            codes, n_classes, worker_codes, confusions, skills
        ).sum(axis=0)
    return _normalise_log(log_posterior)


def update_posterior(
    posterior: npt.ArrayLike,
    label: int,
    *,
    confusion: npt.ArrayLike | None = None,
    skill: float | None = None,
) -> FloatArray:
    """Fold one new label into an item's posterior: the incremental form of :func:`item_posterior`.

    Lets the queue keep a stored posterior current as each label arrives, for the cost of one
    multiply, rather than re-reading every earlier label of the item.
    """
    current = np.asarray(posterior, dtype=np.float64).reshape(-1)
    if current.size == 0 or np.any(current < 0) or current.sum() <= 0:
        raise ValueError("posterior must be a non-empty array of probabilities")
    if not 0 <= label < len(current):
        raise ValueError(f"label must be a class index in 0..{len(current) - 1}, got {label}")
    skills: Any = None if skill is None else np.float64(skill)
    log_likelihood = _log_likelihoods(np.array([label], dtype=np.intp), len(current), None, confusion, skills)
    return _normalise_log(np.log(np.clip(current / current.sum(), _FLOOR, 1.0)) + log_likelihood[0])


def least_confidence(votes: Iterable[tuple[Sequence[int], Sequence[float], int]]) -> float:
    """Confidence of an item's least certain categorical control: for each control, its labels
    (class indices), the one-coin skills of the annotators who gave them and its number of
    classes; the posterior under a uniform prior (:func:`item_posterior`), and the smallest of
    the controls' largest posteriors. 1.0 when no control has a label (nothing to be unsure of).
    This is what :func:`item_needs_another_label` compares with ``target_confidence``."""
    confidence = 1.0
    for labels, skills, n_classes in votes:
        if len(labels):
            posterior = item_posterior(labels, np.full(n_classes, 1.0 / n_classes), skills=skills)
            confidence = min(confidence, float(posterior.max()))
    return confidence
