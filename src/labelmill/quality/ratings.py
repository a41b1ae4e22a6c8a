"""Consensus of ratings (the ``rating`` control: an integer on the control's scale).

Three methods:

- ``median``: per-item median; ignores annotators' habits, robust to one wild rating.
- ``trimmed_mean``: per-item mean after dropping the `trim` share at each end.
- ``bias_corrected``: the additive-bias model of peer grading, Piech et al., "Tuned Models of
  Peer Assessment in MOOCs" (EDM 2013, model PG1)::

      r_iw = c + a_w (mu_i - c) + b_w + e_iw,     e_iw ~ N(0, sigma_w^2)

  item score ``mu_i``, annotator bias ``b_w`` (a lenient rater rates everything higher),
  optional annotator scale ``a_w`` (``rescale=True``: a rater who uses only the middle of the
  scale), annotator noise ``sigma_w``, ``c`` the overall mean rating. Fitted by alternating
  robust updates: each step is a Huber M-estimate (Huber, "Robust Estimation of a Location
  Parameter", Ann. Math. Statist. 35, 1964) by one reweighting, so one absurd rating cannot
  drag a bias or a score; biases are shrunk toward 0 and scales toward 1 by one
  pseudo-rating each (a rater with two ratings keeps almost no bias), and the biases are
  centred every sweep (the model only knows scores up to a shift).

Every method reports per-item ``score`` (float), ``value`` (rounded to the scale's integer,
when asked, clipped to the scale), ``stderr`` and ``confidence``: the probability, under a
normal approximation, that the true score lies within half a step of ``value`` — 1 when all
ratings agree everywhere, lower the more ratings of this item (and of this project, which
pools the spread, empirical-Bayes style) disagree. Per annotator: ``bias``, ``scale``,
``noise`` and ``skill``, the share of the annotator's rating variance that is signal,
``a^2 var(mu) / (a^2 var(mu) + sigma^2)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import ndtr

__all__ = ["ItemRating", "RatingAggregator", "RatingConsensus", "rating_consensus"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
METHODS = ("median", "trimmed_mean", "bias_corrected")
_HUBER_K = 1.345  # 95% efficiency at the normal
_PSEUDO = 1.0  # prior pseudo-ratings for bias, scale and noise


@dataclass(frozen=True)
class ItemRating:
    """Consensus rating of one item."""

    value: int | float
    score: float
    confidence: float
    stderr: float
    n_ratings: int


@dataclass(frozen=True)
class RatingConsensus:
    """Result of `rating_consensus`: per-item ratings and per-annotator habits."""

    items: dict[Hashable, ItemRating]
    bias: dict[Hashable, float]
    scale: dict[Hashable, float]
    noise: dict[Hashable, float]
    skills: dict[Hashable, float]
    method: str


def _rows(labels: Any) -> tuple[list[Hashable], list[Hashable], FloatArray]:
    """(item, worker, rating) triples, mappings with those keys, or a DataFrame, as columns."""
    if hasattr(labels, "columns"):
        rating_col = next((c for c in ("rating", "label", "value") if c in labels.columns), None)
        item_col = "item" if "item" in labels.columns else "task"
        if rating_col is None or item_col not in labels.columns or "worker" not in labels.columns:
            raise ValueError("labels: a DataFrame needs columns item (or task), worker and rating")
        items, workers = list(labels[item_col]), list(labels["worker"])
        raw: list[Any] = list(labels[rating_col])
    else:
        items, workers, raw = [], [], []
        for n, row in enumerate(labels):
            try:
                if isinstance(row, Mapping):
                    item, worker, rating = row["item"], row["worker"], row["rating"]
                else:
                    item, worker, rating = row
            except (KeyError, ValueError, TypeError):
                raise ValueError(f"labels row {n}: expected (item, worker, rating), got {row!r}") from None
            items.append(item)
            workers.append(worker)
            raw.append(rating)
    ratings = np.empty(len(raw))
    for n, rating in enumerate(raw):
        if isinstance(rating, bool) or not isinstance(rating, (int, float, np.integer, np.floating)):
            raise ValueError(f"labels row {n}, field 'rating': expected a number, got {rating!r}")
        ratings[n] = float(rating)
    if not np.all(np.isfinite(ratings)):
        raise ValueError("labels: ratings must be finite numbers")
    return items, workers, ratings


def _codes(values: list[Hashable]) -> tuple[list[Hashable], IntArray]:
    """Sorted distinct values and each value's position among them (input order plays no part)."""
    unique = list(dict.fromkeys(values))
    try:
        unique.sort()  # type: ignore[call-arg]
    except TypeError:
        unique.sort(key=repr)
    index = {v: k for k, v in enumerate(unique)}
    return unique, np.array([index[v] for v in values], dtype=np.intp)


def _group_sum(groups: IntArray, values: FloatArray, n: int) -> FloatArray:
    return np.bincount(groups, weights=values, minlength=n).astype(np.float64)


def _sorted_groups(groups: IntArray, values: FloatArray, n: int) -> tuple[FloatArray, IntArray, IntArray]:
    """Values sorted by (group, value), each group's start offset and size."""
    order = np.lexsort((values, groups))
    counts = np.bincount(groups, minlength=n)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.intp)
    return values[order], starts, counts.astype(np.intp)


def group_median(groups: IntArray, values: FloatArray, n: int) -> FloatArray:
    """Median of `values` within each group, vectorised (groups are 0..n-1, none empty)."""
    v, starts, counts = _sorted_groups(groups, values, n)
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    return (v[lo] + v[hi]) / 2


def group_trimmed_mean(groups: IntArray, values: FloatArray, n: int, trim: float) -> FloatArray:
    """Mean after cutting ``floor(trim * n)`` values from each end of every group (as scipy's trim_mean)."""
    v, starts, counts = _sorted_groups(groups, values, n)
    cut = np.floor(trim * counts).astype(np.intp)
    cut = np.minimum(cut, (counts - 1) // 2)
    rank = np.arange(len(v)) - np.repeat(starts, counts)
    g = np.repeat(np.arange(n), counts)
    keep = (rank >= cut[g]) & (rank < counts[g] - cut[g])
    return _group_sum(g[keep], v[keep], n) / np.bincount(g[keep], minlength=n)


def _fallback_var(r: FloatArray) -> float:
    """Rating variance to assume when no item has two ratings: the spread of all ratings, else 1 step."""
    return float(np.var(r)) if len(r) > 1 and np.var(r) > 0 else 1.0


def _huber_weights(residuals: FloatArray, scale: FloatArray) -> FloatArray:
    """IRLS weights of the Huber loss: 1 inside ``k * scale``, ``k * scale / |r|`` beyond."""
    limit = _HUBER_K * np.maximum(scale, 1e-12)
    absr = np.abs(residuals)
    return np.where(absr <= limit, 1.0, limit / np.maximum(absr, 1e-300))


class RatingAggregator:
    """Estimator behind `rating_consensus` (scikit-learn style: parameters here, fit later).

    Fitted attributes: ``items_``, ``scores_`` (float per item), ``stderr_``, ``n_ratings_``,
    ``workers_``, ``bias_``, ``scale_``, ``noise_``, ``skills_`` (arrays aligned with
    ``workers_``) and ``n_iter_``.
    """

    def __init__(
        self,
        method: str = "median",
        *,
        rescale: bool = False,
        trim: float = 0.2,
        max_iter: int = 100,
        tol: float = 1e-6,
    ) -> None:
        self.method = method
        self.rescale = rescale
        self.trim = trim
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, labels: Any) -> RatingAggregator:
        """Fit on (item, worker, rating) rows; see the module docstring for the model."""
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}; got {self.method!r}")
        if not 0 <= self.trim < 0.5:
            raise ValueError(f"trim must be in [0, 0.5); got {self.trim}")
        item_ids, worker_ids, r = _rows(labels)
        if len(r) == 0:
            raise ValueError("labels: no ratings")
        self.items_, item = _codes(item_ids)
        self.workers_, worker = _codes(worker_ids)
        order = np.lexsort((r, worker, item))  # canonical row order: sums ignore input order
        item, worker, r = item[order], worker[order], r[order]
        n_items, n_workers = len(self.items_), len(self.workers_)
        self.n_ratings_ = np.bincount(item, minlength=n_items)
        n_iter = 0
        if self.method == "median":
            mu = group_median(item, r, n_items)
        elif self.method == "trimmed_mean":
            mu = group_trimmed_mean(item, r, n_items, self.trim)
        if self.method == "bias_corrected":
            mu, bias, scale, noise, n_iter = self._alternate(item, worker, r, n_items, n_workers)
            precision = _group_sum(item, scale[worker] ** 2 / noise[worker] ** 2, n_items)
            stderr = 1.0 / np.sqrt(precision)
        else:
            bias, scale, noise = self._habits(item, worker, r, mu, n_workers)
            stderr = self._pooled_stderr(item, r, mu, n_items)
        spread = float(np.var(mu)) if n_items > 1 else 0.0
        signal = scale**2 * spread
        self.scores_, self.stderr_ = mu, stderr
        self.bias_, self.scale_, self.noise_ = bias, scale, noise
        # a rater who never strays from consensus is fully reliable even if all items look alike
        self.skills_ = np.where(noise <= 1e-6, 1.0, signal / np.maximum(signal + noise**2, 1e-300))
        self.n_iter_ = n_iter
        return self

    # -- the plain methods: per-annotator habits as residual summaries, pooled standard error

    def _habits(
        self, item: IntArray, worker: IntArray, r: FloatArray, mu: FloatArray, n_workers: int
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        resid = r - mu[item]
        counts = np.bincount(worker, minlength=n_workers)
        bias = _group_sum(worker, resid, n_workers) / (counts + _PSEUDO)
        noise = np.sqrt(_group_sum(worker, (resid - bias[worker]) ** 2, n_workers) / np.maximum(counts, 1))
        return bias, np.ones(n_workers), np.maximum(noise, 1e-9)

    def _pooled_stderr(self, item: IntArray, r: FloatArray, mu: FloatArray, n_items: int) -> FloatArray:
        counts = self.n_ratings_
        sq = _group_sum(item, (r - mu[item]) ** 2, n_items)
        multi = counts > 1
        pooled = float(sq[multi].sum() / (counts[multi] - 1).sum()) if multi.any() else _fallback_var(r)
        var = (_PSEUDO * pooled + sq) / (_PSEUDO + np.maximum(counts - 1, 0))
        efficiency = np.sqrt(np.pi / 2) if self.method == "median" else 1.0
        return efficiency * np.sqrt(var / counts)

    # -- the bias-corrected model

    def _alternate(
        self, item: IntArray, worker: IntArray, r: FloatArray, n_items: int, n_workers: int
    ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, int]:
        centre = float(r.mean())
        mu = group_median(item, r, n_items)
        bias, scale = np.zeros(n_workers), np.ones(n_workers)
        counts = np.bincount(worker, minlength=n_workers).astype(np.float64)
        # only items rated more than once say anything about noise; n/(n-1) undoes the fit's shrinkage
        n_on_item = self.n_ratings_[item].astype(np.float64)
        dof = np.where(n_on_item > 1, n_on_item / np.maximum(n_on_item - 1, 1), 0.0)
        resid = r - mu[item]
        pooled = float(
            np.sqrt(_fallback_var(r) if dof.sum() == 0 else (dof * resid**2).sum() / (dof > 0).sum())
        )
        noise = np.full(n_workers, max(pooled, 1e-9))
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):  # noqa: B007 - n_iter is reported
            x = mu[item] - centre
            resid = r - centre - scale[worker] * x - bias[worker]
            h = _huber_weights(resid, noise[worker])
            # annotator bias (and scale): ridge-shrunk weighted least squares, Huber weights
            if self.rescale:
                # normal equations with ridge terms pulling scale toward 1 and bias toward 0
                ridge = _PSEUDO * max(float(np.mean(x * x)), 1e-12)
                y = r - centre
                sxx = _group_sum(worker, h * x * x, n_workers) + ridge
                sxy = _group_sum(worker, h * x * y, n_workers) + ridge
                sx = _group_sum(worker, h * x, n_workers)
                sy = _group_sum(worker, h * y, n_workers)
                sh = _group_sum(worker, h, n_workers) + _PSEUDO
                det = sxx * sh - sx * sx
                scale = np.clip((sxy * sh - sx * sy) / np.where(det > 0, det, 1.0), 0.2, 5.0)
                bias = (sy - scale * sx) / sh
            else:
                bias = _group_sum(worker, h * (r - centre - x), n_workers) / (
                    _group_sum(worker, h, n_workers) + _PSEUDO
                )
            shift = float(bias @ counts / counts.sum())
            bias = bias - shift
            resid = r - centre - scale[worker] * x - bias[worker]
            ss = _group_sum(worker, dof * h * resid**2, n_workers)
            hw = _group_sum(worker, h * (dof > 0), n_workers)
            if hw.sum() > 0:
                pooled = float(np.sqrt(ss.sum() / hw.sum()))
            noise = np.maximum(np.sqrt((ss + _PSEUDO * pooled**2) / (hw + _PSEUDO)), 1e-9)
            # item score: precision-weighted Huber location of the de-biased ratings
            z = centre + (r - centre - bias[worker]) / scale[worker]
            z_noise = noise[worker] / scale[worker]
            hz = _huber_weights(z - mu[item], z_noise)
            precision = hz / z_noise**2
            new_mu = _group_sum(item, precision * z, n_items) / _group_sum(item, precision, n_items)
            if self.rescale:  # fix the gauge: geometric-mean scale 1
                g = float(np.exp(np.mean(np.log(scale))))
                scale = scale / g
                new_mu = centre + (new_mu - centre) * g
            change = float(np.max(np.abs(new_mu - mu)))
            mu = new_mu
            if change < self.tol:
                break
        return mu, bias, scale, noise, n_iter


def _confidence(score: FloatArray, value: FloatArray, stderr: FloatArray) -> FloatArray:
    """P(true score within half a step of `value`) under N(score, stderr^2)."""
    se = np.maximum(stderr, 1e-12)
    p = ndtr((value + 0.5 - score) / se) - ndtr((value - 0.5 - score) / se)
    return np.clip(p, 0.0, 1.0)


def rating_consensus(
    labels: Iterable[Any] | Any,
    *,
    method: str = "median",
    scale: tuple[int, int] | None = None,
    rounding: bool = True,
    rescale: bool = False,
    trim: float = 0.2,
    max_iter: int = 100,
) -> RatingConsensus:
    """Per-item consensus ratings from (item, worker, rating) rows.

    `scale` is the control's ``(min, max)``: values are clipped to it. With `rounding` the
    ``value`` is the nearest integer of the scale (halves round up) and ``score`` keeps the
    float; without it, ``value`` is the float. See the module docstring for the methods.
    """
    model = RatingAggregator(method, rescale=rescale, trim=trim, max_iter=max_iter).fit(labels)
    score = model.scores_
    if scale is not None:
        lo, hi = scale
        if lo > hi:
            raise ValueError(f"scale: min {lo} is above max {hi}")
        score = np.clip(score, lo, hi)
    value = np.floor(score + 0.5) if rounding else score
    confidence = _confidence(score, value, model.stderr_)
    items = {
        item: ItemRating(
            value=int(value[k]) if rounding else float(value[k]),
            score=float(score[k]),
            confidence=float(confidence[k]),
            stderr=float(model.stderr_[k]),
            n_ratings=int(model.n_ratings_[k]),
        )
        for k, item in enumerate(model.items_)
    }

    def per_worker(values: FloatArray) -> dict[Hashable, float]:
        return {w: float(v) for w, v in zip(model.workers_, values, strict=True)}

    return RatingConsensus(
        items=items,
        bias=per_worker(model.bias_),
        scale=per_worker(model.scale_),
        noise=per_worker(model.noise_),
        skills=per_worker(model.skills_),
        method=method,
    )
