"""Dawid–Skene: one full confusion matrix per worker, fitted by EM."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    IntArray,
    LabelAggregator,
    agreement_skills,
    clamp_gold,
    column_sum,
    normalize_rows,
    softmax_rows,
    vote_counts,
)
from labelmill.quality.spectral import spectral_probas
from labelmill.quality.wawa import weighted_probas

Init = Literal["mv", "wawa", "spectral"]
#: Floor for probabilities before taking logs (crowd-kit uses the same 1e-10).
EPS = 1e-10
#: Smoothing candidates of `smoothing="auto"`: none (plain Dawid–Skene) to strong.
SMOOTHING_GRID = (0.0, 0.5, 2.0, 8.0)
#: Candidates are fitted to this tolerance (or `tol`, if looser), and to the looser second one
#: on the subset of large data, where every step costs; the chosen smoothing is fitted to `tol`.
SELECTION_TOL = 1e-5
SUBSET_SELECTION_TOL = 1e-4
#: Labels scored for the choice on large data (a fixed random sample), and its seed.
HELDOUT_SAMPLE = 20_000
HELDOUT_SEED = 0
#: Above this many labels the candidates are compared on a random subset of items.
SELECTION_LABELS = 100_000


class DawidSkene(LabelAggregator):
    r"""Dawid–Skene: every worker has a confusion matrix, every item a latent true class.

    Worker $w$ answers $l$ to an item of true class $c$ with probability $\pi^w_{cl}$, classes
    have priors $\rho_c$, and labels are independent given the true class, so the posterior of
    item $i$ is $p_{ic} \propto \rho_c \prod_{(i,w,l)} \pi^w_{cl}$. EM alternates that E-step with
    the M-step $\pi^w_{cl} \propto \alpha q_l + \sum_{(i,w,l)} p_{ic}$ and
    $\rho_c \propto \alpha_\rho + \sum_i p_{ic}$. The Dirichlet pseudo-counts make it a MAP
    rather than an ML estimate: every confusion row gets `smoothing` ($\alpha$) pseudo-labels
    spread like the crowd's overall answers $q_l$, i.e. a worker is presumed to answer like the
    crowd regardless of the truth until their labels show otherwise. A worker with three labels
    then no longer gets a confusion row of exact zeros and ones (and a veto over items), which
    is what costs plain DS accuracy on sparse data; `prior_smoothing` ($\alpha_\rho$) does the
    same for the class priors.

    How much smoothing helps depends on the data: it saves sparse workers from vetoes, but when
    many workers answer at random on imbalanced classes it blurs the few good ones. So the
    default `smoothing="auto"` chooses it from the data: the least of `smoothing_grid` whose
    held-out log-likelihood (each label predicted without itself) is within one standard error
    of the best; with smoothing 0 the class prior is not smoothed either (plain maximum
    likelihood). A fixed number fixes it.

    EM is accelerated by SQUAREM and stops after `n_iter` steps or when the mean log-likelihood
    per label improves by less than `tol` over a cycle. A negative `tol` runs exactly `n_iter`
    plain EM steps: with `smoothing=0, prior_smoothing=0, init="mv", tol<0` this is crowd-kit's
    `DawidSkene` (labels equal, posteriors within float error).

    `init` chooses the posteriors EM starts from: majority-vote shares (`"mv"`, the default),
    agreement-weighted votes (`"wawa"`), or `"spectral"`: the E-step from confusions estimated by
    the method of moments of Zhang et al. (`quality.spectral.spectral_confusions`), which does not
    trust the majority and so starts EM near the right optimum when many workers are biased.

    A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using
    the EM Algorithm", Journal of the Royal Statistical Society C 28(1), 1979, 20–28.
    R. Varadhan and C. Roland, "Simple and Globally Convergent Methods for Accelerating the
    Convergence of Any EM Algorithm", Scandinavian Journal of Statistics 35(2), 2008, 335–353.

    Fitted: `confusions_[w, c, l]` = P(worker w answers l | true class c) (rows sum to one),
    `priors_`, `skills_` (each worker's expected accuracy under `priors_`), `n_iter_`, `loglik_`
    (mean log-likelihood per label), `smoothing_` (the smoothing used) and `heldout_loglik_`
    (mean held-out log-likelihood per label of each candidate; empty unless chosen).

    Example:
        >>> rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w2", 0)]
        >>> DawidSkene().fit_predict(rows)
        {'a': 1, 'b': 0}
    """

    confusions_: FloatArray
    priors_: FloatArray
    n_iter_: int
    loglik_: float
    smoothing_: float
    heldout_loglik_: dict[float, float]

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-6,
        smoothing: float | Literal["auto"] = "auto",
        prior_smoothing: float = 1.0,
        init: Init = "mv",
        smoothing_grid: tuple[float, ...] = SMOOTHING_GRID,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing
        self.prior_smoothing = prior_smoothing
        self.init = init
        self.smoothing_grid = smoothing_grid

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        by_item = label_matrix(coded)
        by_worker_label = by_item.T.tocsr()
        if self.smoothing == "auto":
            fit, scores = self._select_smoothing(coded, by_item, by_worker_label, gold_idx)
        elif isinstance(self.smoothing, int | float) and self.smoothing >= 0:
            fit = self._em(coded, by_item, by_worker_label, gold_idx, float(self.smoothing), None, self.tol)
            scores = {}
        else:
            raise ValueError(f"smoothing must be a number >= 0 or 'auto', not {self.smoothing!r}")
        self.probas_ = fit.probas
        self.priors_ = fit.priors
        self.confusions_ = fit.confusions
        self.skills_ = np.einsum("c,wcc->w", fit.priors, fit.confusions)
        self.n_iter_ = fit.n_iter
        self.loglik_ = fit.loglik
        self.smoothing_ = fit.smoothing
        self.heldout_loglik_ = scores

    def _select_smoothing(
        self, coded: CodedLabels, by_item: sp.csr_matrix, by_worker_label: sp.csr_matrix, gold_idx: IntArray
    ) -> tuple[_Fit, dict[float, float]]:
        """Choose the smoothing from the data, then fit it as if it had been given.

        The least smoothing whose held-out log-likelihood is within noise of the best wins: a
        mean per-label difference from the best under one standard error of the paired
        differences. Held out is each label in turn (leave-one-label-out: the label is divided
        out of its item's posterior and its expected count out of its worker's confusion row;
        labels whose item has others, up to `HELDOUT_SAMPLE` of them), so comparing needs one
        fit per candidate, not one per fold and candidate. Candidates are fitted from the most smoothed
        down, each from the last one's posteriors, to `SELECTION_TOL`. Above `SELECTION_LABELS`
        labels they are compared on a fixed random subset of items carrying about that many,
        with every candidate scaled by the subset's share so the pseudo-counts weigh the same
        against each worker's (fewer) labels; a subset makes everyone sparser, so this leans,
        if anywhere, towards more smoothing.
        """
        grid = sorted({float(a) for a in self.smoothing_grid}, reverse=True)
        if not grid or grid[-1] < 0:
            raise ValueError(f"smoothing_grid must hold numbers >= 0, got {self.smoothing_grid!r}")
        subset, sub_gold, share = coded, gold_idx, 1.0
        if coded.n_labels > SELECTION_LABELS:
            share = SELECTION_LABELS / coded.n_labels
            keep_item = np.random.default_rng(HELDOUT_SEED).random(coded.n_items) < share
            subset, sub_gold = _item_subset(coded, gold_idx, keep_item)
        chosen, scores = self._compare(subset, sub_gold, grid, share)
        if chosen is None:
            # Only a label whose item has other labels says anything about its worker's skill.
            # With none (one annotator an item) there is nothing to choose by, and no smoothing
            # keeps each item's one label instead of drifting towards the majority class.
            chosen = grid[-1]
        final = self._em(coded, by_item, by_worker_label, gold_idx, chosen, None, self.tol)
        return final, scores

    def _compare(
        self, coded: CodedLabels, gold_idx: IntArray, grid: list[float], share: float
    ) -> tuple[float | None, dict[float, float]]:
        """The chosen candidate of `grid` (None when no label can be held out) and each one's
        mean held-out log-likelihood per label."""
        per_item = np.bincount(coded.item_idx, minlength=coded.n_items)
        sample = np.flatnonzero(per_item[coded.item_idx] >= 2)
        if len(sample) == 0:
            return None, {}
        if len(sample) > HELDOUT_SAMPLE:
            rng = np.random.default_rng(HELDOUT_SEED)
            sample = np.sort(rng.choice(sample, size=HELDOUT_SAMPLE, replace=False))
        by_item = label_matrix(coded)
        by_worker_label = by_item.T.tocsr()
        gave = (by_worker_label.getnnz(axis=1) > 0).reshape(coded.n_workers, 1, coded.n_classes)
        loose = SELECTION_TOL if share == 1.0 else SUBSET_SELECTION_TOL
        tol = max(self.tol, loose) if self.tol >= 0 else self.tol
        fits: list[_Fit] = []
        heldout: list[FloatArray] = []
        for alpha in grid:
            start, start_loglik = (fits[-1].probas, fits[-1].loglik) if fits else (None, -np.inf)
            fit = self._em(coded, by_item, by_worker_label, gold_idx, alpha * share, start, tol, start_loglik)
            counts = _expected_counts(by_worker_label, fit.probas, coded.n_workers)
            heldout.append(_heldout_loglik(coded, sample, fit.probas, counts, gave, alpha * share))
            fits.append(fit)
        means = np.array([h.mean() for h in heldout])
        best = int(np.argmax(means))
        chosen = best
        for k in range(len(grid) - 1, -1, -1):  # least smoothing first
            diff = heldout[k] - heldout[best]
            spread = float(diff.std(ddof=1)) / np.sqrt(len(diff)) if len(diff) > 1 else 0.0
            if diff.mean() >= -spread:
                chosen = k
                break
        return grid[chosen], {alpha: float(m) for alpha, m in zip(grid, means, strict=True)}

    def _em(
        self,
        coded: CodedLabels,
        by_item: sp.csr_matrix,
        by_worker_label: sp.csr_matrix,
        gold_idx: IntArray,
        smoothing: float,
        start: FloatArray | None,
        tol: float,
        start_loglik: float = -np.inf,
    ) -> _Fit:
        """EM from `start` (or the `init` posteriors), accelerated by SQUAREM unless `tol` < 0.

        From a warm `start` (another smoothing's optimum, whose log-likelihood is `start_loglik`)
        a first step that moves the likelihood by less than `tol` either way ends the fit.

        With many near-random workers the likelihood has long flat ridges that plain EM climbs
        by tiny steps (each under `tol`, so it stops early, far from the optimum): SQUAREM
        (Varadhan and Roland, Scand. J. Statistics 35, 2008) extrapolates along the direction of
        two EM steps and keeps the result only when the likelihood does not drop. A negative
        `tol` runs exactly `n_iter` plain EM steps, as crowd-kit does.
        """
        n_classes = coded.n_classes
        # With no smoothing of the confusions the class prior is not smoothed either: plain ML.
        prior_smoothing = self.prior_smoothing if smoothing > 0 else 0.0
        # Which answers each worker ever gave: only those cells are read by the E-step, and (as in
        # crowd-kit) a true class a worker never met spreads over their own answers, not all K.
        gave = (by_worker_label.getnnz(axis=1) > 0).reshape(coded.n_workers, 1, n_classes)

        def step(
            theta: tuple[FloatArray, FloatArray],
        ) -> tuple[tuple[FloatArray, FloatArray], float, FloatArray]:
            priors, confusions = theta
            log_table = np.log(np.where(gave, confusions, 1.0)).transpose(0, 2, 1).reshape(-1, n_classes)
            probas, log_evidence = softmax_rows(by_item @ log_table + np.log(priors))
            clamp_gold(probas, gold_idx)
            loglik = float(log_evidence.sum()) / coded.n_labels
            return _m_step(by_worker_label, probas, gave, smoothing, prior_smoothing), loglik, probas

        probas = clamp_gold(initial_probas(coded, self.init) if start is None else start.copy(), gold_idx)
        theta = _m_step(by_worker_label, probas, gave, smoothing, prior_smoothing)
        accelerate = tol >= 0
        before, n_done = -np.inf, 0
        first = True
        fallback: tuple[tuple[FloatArray, FloatArray], float] | None = None
        while True:
            following, loglik, probas = step(theta)
            n_done += 1
            if fallback is not None and not loglik >= fallback[1]:  # the extrapolation lost ground
                theta, fallback = fallback[0], None
                continue
            fallback = None
            settled = first and abs(loglik - start_loglik) < tol
            first = False
            if settled or loglik - before < tol or n_done >= self.n_iter:
                return _Fit(probas, *following, n_done, loglik, smoothing)
            before = loglik
            if not accelerate:
                theta = following
                continue
            # Convergence is judged once a cycle (two steps and a jump): on a ridge a single EM
            # step gains less than `tol` while the extrapolated cycle still climbs.
            second, loglik_next, probas_next = step(following)
            n_done += 1
            if n_done >= self.n_iter:
                return _Fit(probas_next, *second, n_done, loglik_next, smoothing)
            theta = _squarem(theta, following, second, gave)
            fallback = (second, loglik_next)


@dataclass(frozen=True)
class _Fit:
    probas: FloatArray
    priors: FloatArray
    confusions: FloatArray
    n_iter: int
    loglik: float
    smoothing: float


def _squarem(
    theta: tuple[FloatArray, FloatArray],
    first: tuple[FloatArray, FloatArray],
    second: tuple[FloatArray, FloatArray],
    gave: npt.NDArray[np.bool_],
) -> tuple[FloatArray, FloatArray]:
    """One SQUAREM extrapolation (scheme S3) from two EM steps, projected back onto probabilities."""
    flat = [np.concatenate([p.ravel(), c.ravel()]) for p, c in (theta, first, second)]
    r = flat[1] - flat[0]
    v = flat[2] - flat[1] - r
    # einsum, not np.linalg.norm: a threaded BLAS dot is slow on a busy machine.
    v_norm = float(np.sqrt(np.einsum("i,i->", v, v)))
    alpha = min(-float(np.sqrt(np.einsum("i,i->", r, r))) / v_norm, -1.0) if v_norm > 0 else -1.0
    if alpha == -1.0:
        return second
    jumped = flat[0] - 2.0 * alpha * r + alpha**2 * v
    n_priors = theta[0].size
    priors = np.maximum(jumped[:n_priors], EPS)
    confusions = np.maximum(jumped[n_priors:].reshape(theta[1].shape), 0.0)
    confusions = np.where(gave, np.maximum(confusions, EPS), confusions)
    confusions /= np.maximum(confusions.sum(axis=2, keepdims=True), EPS)
    return priors / priors.sum(), confusions


def _m_step(
    by_worker_label: sp.csr_matrix,
    probas: FloatArray,
    gave: npt.NDArray[np.bool_],
    smoothing: float,
    prior_smoothing: float,
) -> tuple[FloatArray, FloatArray]:
    n_items, n_classes = probas.shape
    n_workers = gave.shape[0]
    priors = (column_sum(probas) + prior_smoothing) / (n_items + n_classes * prior_smoothing)
    counts = _expected_counts(by_worker_label, probas, n_workers)
    answered = counts.sum(axis=(0, 1))
    pseudo = smoothing * answered / max(answered.sum(), EPS)
    confusions = counts + pseudo
    confusions = np.where(gave, np.maximum(confusions, EPS), confusions)
    confusions /= np.maximum(confusions.sum(axis=2, keepdims=True), EPS)
    return np.maximum(priors, EPS), confusions


def _expected_counts(by_worker_label: sp.csr_matrix, probas: FloatArray, n_workers: int) -> FloatArray:
    """counts[w, c, l]: expected number of times worker w said l when the truth was c."""
    n_classes = probas.shape[1]
    counts = np.asarray(by_worker_label @ probas).reshape(n_workers, n_classes, n_classes)
    return np.asarray(counts.transpose(0, 2, 1))


def _heldout_loglik(
    coded: CodedLabels,
    sample: IntArray,
    probas: FloatArray,
    counts: FloatArray,
    gave: npt.NDArray[np.bool_],
    smoothing: float,
) -> FloatArray:
    """Log-probability of each sampled label predicted without it (leave-one-label-out).

    From posteriors `probas` and their expected `counts`, with the confusions `smoothing` gives
    them: the item side divides the label out of the posterior, the worker side takes the
    label's expected count out of its worker's confusion row, so a worker seen answering `l`
    once cannot predict that very answer from it: exactly where unsmoothed Dawid–Skene
    overfits sparse workers.
    """
    worker, item, answer = coded.worker_idx[sample], coded.item_idx[sample], coded.label_idx[sample]
    answered = counts.sum(axis=(0, 1))
    pseudo = smoothing * answered / max(answered.sum(), EPS)  # (L,)
    confusions = counts + pseudo
    confusions = np.where(gave, np.maximum(confusions, EPS), confusions)
    confusions /= np.maximum(confusions.sum(axis=2, keepdims=True), EPS)
    row_totals = counts.sum(axis=2)  # (W, C)
    own = probas[item]  # (n, C): the label's share of each class count
    mine = confusions[worker, :, answer]  # (n, C)
    cavity, _ = softmax_rows(np.log(np.maximum(own, EPS)) - np.log(np.maximum(mine, EPS)))
    numerator = counts[worker, :, answer] - own + pseudo[answer][:, None]
    denominator = row_totals[worker] - own + smoothing
    rates = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > EPS)
    predicted = np.einsum("nc,nc->n", cavity, np.clip(rates, 0.0, 1.0))
    return np.asarray(np.log(np.maximum(predicted, EPS)))


def _item_subset(
    coded: CodedLabels, gold_idx: IntArray, keep_item: npt.NDArray[np.bool_]
) -> tuple[CodedLabels, IntArray]:
    """The labels of the kept items (renumbered), with every worker and class kept."""
    new_index = np.cumsum(keep_item) - 1
    rows = keep_item[coded.item_idx]
    subset = CodedLabels(
        new_index[coded.item_idx[rows]].astype(np.intp),
        coded.worker_idx[rows],
        coded.label_idx[rows],
        coded.items[keep_item],
        coded.workers,
        coded.classes,
    )
    return subset, gold_idx[keep_item]


def label_matrix(coded: CodedLabels) -> sp.csr_matrix:
    """Sparse (n_items, n_workers * n_classes) count of each worker's answers on each item.

    With it an E-step is one sparse-dense product (`matrix @ log_table`) and an M-step another
    (`matrix.T @ probas`), so an EM iteration never touches a Python object.
    """
    column = coded.worker_idx * coded.n_classes + coded.label_idx
    shape = (coded.n_items, coded.n_workers * coded.n_classes)
    ones = np.ones(coded.n_labels)
    matrix = sp.csr_matrix((ones, (coded.item_idx, column)), shape=shape)
    matrix.sum_duplicates()
    return matrix


def initial_probas(coded: CodedLabels, init: Init) -> FloatArray:
    """Starting posteriors: plain vote shares (`"mv"`), agreement-weighted ones (`"wawa"`), or the
    E-step from the spectral estimate of the confusions (`"spectral"`, `quality.spectral`)."""
    plain = normalize_rows(vote_counts(coded))
    if init == "mv":
        return plain
    if init == "wawa":
        return weighted_probas(coded, agreement_skills(coded, plain.argmax(axis=1)), plain)
    if init == "spectral":
        return spectral_probas(coded)
    raise ValueError(f"init must be 'mv', 'wawa' or 'spectral', not {init!r}")
