"""BWA: Bayesian weighted averaging, one precision per worker and class, for highly redundant labels."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    IntArray,
    LabelAggregator,
    clamp_gold,
    normalize_rows,
    vote_counts,
    weighted_count,
)

#: Floor of the prior's rate, relative to its shape: with every item unanimous the empirical rate
#: is zero and every precision would be infinite; this keeps them finite (and huge).
MIN_RATE = 1e-10


class BWA(LabelAggregator):
    r"""Bayesian weighted averaging (BWA): each class is a one-vs-rest regression of the labels.

    For class $k$ every item has a score $z_{ik} \in [0, 1]$ and every answer is a noisy reading
    of it, $y_{iwk} = [l_{iw} = k] \sim N(z_{ik}, 1/v_{wk})$, with worker precisions
    $v_{wk} \sim \mathrm{Gamma}$ and scores $z_{ik} \sim N(\mu_k, 1/\lambda)$. Coordinate ascent
    on the joint log-density alternates three closed forms:
    $\mu_k = \overline{z_{\cdot k}}$,
    $v_{wk} = (a + N_w) / (b_k + \sum_{i} (z_{ik} - y_{iwk})^2)$ over the worker's $N_w$ labels,
    and $z_{ik} = (\lambda \mu_k + \sum_w v_{wk} y_{iwk}) / (\lambda + \sum_w v_{wk})$, i.e. each
    item's score is a precision-weighted average of its answers shrunk towards the class mean.
    Each class stops on its own once no score moves by more than `tol` relative (as in the
    authors' code). The prior's rate is set from the data (empirical Bayes): $b_k = a \cdot c
    \sum_i n_i z_{ik}(1 - z_{ik}) / N$ on the vote shares, with $n_i$ labels on item $i$, $N$
    labels in all, and $c = 4(1 - 1/K)$ when `prior_correction` is on, so that the prior
    precision $a / b_k$ matches the spread of the answers around the vote shares. Posteriors
    are the scores normalised over classes.

    With many labels per item the precisions are well determined and BWA weights workers about
    as Dawid–Skene would, with far fewer parameters (K per worker, not K²) and no EM local
    optima to speak of; with few labels per item it stays close to majority vote.

    Y. Li, B. I. P. Rubinstein and T. Cohn, "Truth Inference at Scale: A Bayesian Model for
    Adjudicating Highly Redundant Crowd Annotations", The Web Conference (WWW) 2019. Defaults
    (`a = 15`, `lambda = 1`, prior correction on, relative tolerance 1e-3, at most 500 steps)
    are those of the authors' code.

    Fitted: `scores_` ($z$, before normalising), `precisions_[w, k]` ($v$), `class_means_`
    ($\mu$), `prior_rates_` ($b$), `skills_` (each worker's mean precision over the classes:
    larger is more reliable), `n_iter_` (steps of the slowest class), `objective_` (the
    log-density per label at the end) and `objective_path_` (after every step; it never
    decreases).

    Example:
        >>> rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w2", 0)]
        >>> BWA().fit_predict(rows)
        {'a': 1, 'b': 0}
    """

    scores_: FloatArray
    precisions_: FloatArray
    class_means_: FloatArray
    prior_rates_: FloatArray
    n_iter_: int
    objective_: float
    objective_path_: list[float]

    def __init__(
        self,
        n_iter: int = 500,
        tol: float = 1e-3,
        prior_shape: float = 15.0,
        score_precision: float = 1.0,
        prior_correction: bool = True,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.prior_shape = prior_shape
        self.score_precision = score_precision
        self.prior_correction = prior_correction

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        if not self.prior_shape >= 0 or not self.score_precision > 0:
            raise ValueError(
                f"prior_shape must be >= 0 and score_precision > 0, got {self.prior_shape!r} "
                f"and {self.score_precision!r}"
            )
        model = _BwaModel(coded, self.prior_shape, self.score_precision)
        scores = clamp_gold(normalize_rows(vote_counts(coded)), gold_idx)
        per_item = np.bincount(coded.item_idx, minlength=coded.n_items).astype(np.float64)
        correction = 4.0 * (1.0 - 1.0 / coded.n_classes) if self.prior_correction else 1.0
        spread = per_item @ (scores * (1.0 - scores)) / coded.n_labels
        rates = np.maximum(self.prior_shape * spread * correction, MIN_RATE * max(self.prior_shape, 1.0))
        active = np.ones(coded.n_classes, dtype=bool)
        path: list[float] = []
        means = scores.mean(axis=0)
        precisions = model.precisions(scores, rates)
        n_done = 0
        while active.any() and n_done < self.n_iter:
            n_done += 1
            means = np.where(active, scores.mean(axis=0), means)
            precisions = np.where(active, model.precisions(scores, rates), precisions)
            updated = clamp_gold(model.scores(precisions, means), gold_idx)
            moved = np.abs(updated - scores) > 1e-8 + self.tol * np.abs(updated)
            scores = np.where(active, updated, scores)
            active &= moved.any(axis=0)
            path.append(model.objective(scores, precisions, means, rates))
        self.scores_ = scores
        self.probas_ = normalize_rows(scores)
        self.precisions_ = precisions
        self.class_means_ = means
        self.prior_rates_ = rates
        self.skills_ = precisions.mean(axis=1)
        self.n_iter_ = n_done
        self.objective_path_ = path
        self.objective_ = path[-1] if path else model.objective(scores, precisions, means, rates)


class _BwaModel:
    """The data-dependent pieces of BWA: each closed-form update is a sparse product or a bincount."""

    def __init__(self, coded: CodedLabels, prior_shape: float, score_precision: float) -> None:
        self.coded = coded
        self.prior_shape = prior_shape
        self.score_precision = score_precision
        n_classes = coded.n_classes
        ones = np.ones(coded.n_labels)
        shape = (coded.n_items, coded.n_workers)
        self.by_item = sp.csr_matrix((ones, (coded.item_idx, coded.worker_idx)), shape=shape)
        self.by_item.sum_duplicates()
        self.by_worker = self.by_item.T.tocsr()
        self.item_cell = coded.item_idx * n_classes + coded.label_idx
        self.worker_cell = coded.worker_idx * n_classes + coded.label_idx
        said = weighted_count(self.worker_cell, ones, coded.n_workers * n_classes)
        self.said = said.reshape(coded.n_workers, n_classes)  # sum_i y_iwk (= sum_i y_iwk^2)
        self.per_worker = np.bincount(coded.worker_idx, minlength=coded.n_workers).astype(np.float64)

    def squared_errors(self, scores: FloatArray) -> FloatArray:
        """(W, K) sum over each worker's labels of (z_ik - y_iwk)^2, expanded into three products."""
        coded = self.coded
        squares = np.asarray(self.by_worker @ (scores * scores))
        size = coded.n_workers * coded.n_classes
        hits = weighted_count(self.worker_cell, scores.ravel()[self.item_cell], size)
        return np.maximum(squares - 2.0 * hits.reshape(coded.n_workers, coded.n_classes) + self.said, 0.0)

    def precisions(self, scores: FloatArray, rates: FloatArray) -> FloatArray:
        errors = self.squared_errors(scores)
        return (self.prior_shape + self.per_worker[:, None]) / (rates[None, :] + errors)

    def scores(self, precisions: FloatArray, means: FloatArray) -> FloatArray:
        coded = self.coded
        votes = weighted_count(
            self.item_cell, precisions.ravel()[self.worker_cell], coded.n_items * coded.n_classes
        ).reshape(coded.n_items, coded.n_classes)
        weight = np.asarray(self.by_item @ precisions)
        return np.asarray((self.score_precision * means + votes) / (self.score_precision + weight))

    def objective(
        self, scores: FloatArray, precisions: FloatArray, means: FloatArray, rates: FloatArray
    ) -> float:
        """Joint log-density of labels, precisions and scores (up to constants), per label."""
        errors = self.squared_errors(scores)
        shape = self.prior_shape + self.per_worker[:, None]
        workers = 0.5 * float((shape * np.log(precisions) - precisions * (rates[None, :] + errors)).sum())
        items = -0.5 * self.score_precision * float(np.square(scores - means[None, :]).sum())
        return (workers + items) / self.coded.n_labels
