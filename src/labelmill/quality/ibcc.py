"""IBCC: Independent Bayesian Classifier Combination, variational Bayes Dawid–Skene."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma, entr, gammaln

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    IntArray,
    LabelAggregator,
    clamp_gold,
    column_sum,
    normalize_rows,
    softmax_rows,
    vote_counts,
)
from labelmill.quality.dawid_skene import label_matrix

ClassPrior = float | Sequence[float] | Literal["empirical"]


class IBCC(LabelAggregator):
    r"""IBCC: Dawid–Skene with Dirichlet priors, fitted by mean-field variational Bayes.

    Item $i$ has a latent class $z_i \sim \text{Cat}(\tau)$, $\tau \sim \text{Dir}(\alpha)$; worker
    $w$ answers $l$ to an item of class $c$ with probability $V^w_{cl}$, every confusion row
    $V^w_{c\cdot} \sim \text{Dir}(\beta_c)$ with $\beta_{cc} = $ `diagonal_prior` and
    $\beta_{cl} = $ `off_diagonal_prior` ($l \ne c$), so a worker is presumed better than chance
    until their labels say otherwise. The posterior is approximated by
    $q(z)\,q(\tau)\,\prod_{w,c} q(V^w_{c\cdot})$; coordinate ascent alternates
    $q(\tau) = \text{Dir}(\alpha + \sum_i r_i)$, $q(V^w_{c\cdot}) = \text{Dir}(\beta_c + N^w_{c\cdot})$
    (with $N^w_{cl} = \sum_{(i,w,l)} r_{ic}$ the expected counts) and
    $r_{ic} \propto \exp(\mathbb{E}\log\tau_c + \sum_{(i,w,l)} \mathbb{E}\log V^w_{cl})$, where
    $\mathbb{E}\log$ of a Dirichlet component is $\psi(a_l) - \psi(\sum a)$. Each update maximises
    the evidence lower bound (ELBO) in its block, so the ELBO never decreases; with $q(\tau)$ and
    $q(V)$ in step with $r$ it is
    $\ln B(\nu) - \ln B(\alpha) + \sum_{w,c} [\ln B(\mu^w_c) - \ln B(\beta_c)] + H(r)$
    ($B$ the multivariate Beta function). Fitting stops when it rises by less than `tol` per
    label, or after `n_iter` rounds. Items with a known (gold) class keep a one-hot $r_i$.

    Unlike Dawid–Skene's point estimates, a worker with three labels gets a confusion row that
    is mostly prior, and the uncertainty of the row enters every item posterior through
    $\psi$ (which penalises thinly observed cells), so sparse workers cannot veto items.

    `class_prior` is $\alpha$: one number for every class (default 1), one per class, or
    `"empirical"` for the majority-vote class counts (as Li et al.'s reference code offers).
    `diagonal_prior` and `off_diagonal_prior` default to 4 and 1 as in that code. With
    `prior_grid`, a sequence of (diagonal, off-diagonal) pairs, each is fitted and the one with
    the highest ELBO (the bound on the labels' marginal likelihood, comparable across priors
    since it includes their normalisers) is kept: a choice from the data alone.

    H.-C. Kim and Z. Ghahramani, "Bayesian Classifier Combination", AISTATS 2012, 619–627.
    E. Simpson, S. Roberts, I. Psorakis and A. Smith, "Dynamic Bayesian Combination of Multiple
    Imperfect Classifiers", in Decision Making and Imperfection, Springer 2013, 1–35.

    Fitted: `confusions_[w, c, l]` (posterior mean of $V^w_{cl}$), `confusion_counts_` (the
    Dirichlet parameters $\mu$ of $q(V)$), `priors_` (posterior mean of $\tau$), `skills_` (each
    worker's expected accuracy under `priors_`), `elbo_` (the final ELBO, in nats, for the whole
    data set), `elbo_history_` (the ELBO after every round, non-decreasing), `n_iter_`,
    `confusion_prior_` (the (diagonal, off-diagonal) pair used) and `grid_elbos_` (each grid
    pair's ELBO; empty without `prior_grid`).

    Example:
        >>> rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w2", 0)]
        >>> IBCC().fit_predict(rows)
        {'a': 1, 'b': 0}
    """

    confusions_: FloatArray
    confusion_counts_: FloatArray
    priors_: FloatArray
    elbo_: float
    elbo_history_: list[float]
    n_iter_: int
    confusion_prior_: tuple[float, float]
    grid_elbos_: dict[tuple[float, float], float]

    def __init__(
        self,
        n_iter: int = 500,
        tol: float = 1e-7,
        class_prior: ClassPrior = 1.0,
        diagonal_prior: float = 4.0,
        off_diagonal_prior: float = 1.0,
        prior_grid: Sequence[tuple[float, float]] | None = None,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.class_prior = class_prior
        self.diagonal_prior = diagonal_prior
        self.off_diagonal_prior = off_diagonal_prior
        self.prior_grid = prior_grid

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        start = clamp_gold(normalize_rows(vote_counts(coded)), gold_idx)
        alpha = class_prior_vector(self.class_prior, start)
        by_item = label_matrix(coded)
        by_worker_label = by_item.T.tocsr()
        gold = GoldMask(gold_idx, coded.n_classes, 1)
        if self.prior_grid is None:
            candidates = [(float(self.diagonal_prior), float(self.off_diagonal_prior))]
        else:
            candidates = list(dict.fromkeys((float(d), float(o)) for d, o in self.prior_grid))
            if not candidates:
                raise ValueError("prior_grid must hold at least one (diagonal, off_diagonal) pair")
        best: _Fit | None = None
        elbos: dict[tuple[float, float], float] = {}
        for diagonal, off_diagonal in candidates:
            beta = confusion_prior(coded.n_classes, diagonal, off_diagonal)
            fit = self._vb(coded, by_item, by_worker_label, gold, alpha, beta, start)
            elbos[(diagonal, off_diagonal)] = fit.history[-1]
            if best is None or fit.history[-1] > best.history[-1]:
                best = fit
        assert best is not None
        self.probas_ = best.probas
        self.confusion_counts_ = np.ascontiguousarray(best.mu.transpose(0, 2, 1))
        self.confusions_ = self.confusion_counts_ / self.confusion_counts_.sum(axis=2, keepdims=True)
        self.priors_ = best.nu / best.nu.sum()
        self.skills_ = np.einsum("c,wcc->w", self.priors_, self.confusions_)
        self.elbo_ = best.history[-1]
        self.elbo_history_ = best.history
        self.n_iter_ = best.n_iter
        self.confusion_prior_ = max(elbos, key=elbos.__getitem__)
        self.grid_elbos_ = elbos if self.prior_grid is not None else {}

    def _vb(
        self,
        coded: CodedLabels,
        by_item: sp.csr_matrix,
        by_worker_label: sp.csr_matrix,
        gold: GoldMask,
        alpha: FloatArray,
        beta: FloatArray,
        start: FloatArray,
    ) -> _Fit:
        """Coordinate ascent from the posteriors `start` under the confusion prior `beta`."""
        n_workers, n_classes = coded.n_workers, coded.n_classes
        prior_norm = float(log_beta(alpha)) + n_workers * float(log_beta(beta).sum())
        beta_by_answer = np.ascontiguousarray(beta.T)  # [l, c]: the confusions are kept as [w, l, c]
        probas, held = start, entropy(start)
        history: list[float] = []
        n_done = 0
        while True:
            nu = alpha + column_sum(probas)
            mu = answer_counts(by_worker_label, probas, n_workers) + beta_by_answer
            total = mu.sum(axis=1, keepdims=True)
            elbo = float(log_beta(nu)) + float(gammaln(mu).sum() - gammaln(total).sum()) - prior_norm + held
            history.append(elbo)
            if n_done >= self.n_iter or (
                len(history) > 1 and history[-1] - history[-2] < self.tol * coded.n_labels
            ):
                return _Fit(probas, nu, mu, history, n_done)
            n_done += 1
            log_table = (digamma(mu) - digamma(total)).reshape(n_workers * n_classes, n_classes)
            log_joint = np.asarray(by_item @ log_table) + dirichlet_log_mean(nu)
            posterior, entropies = gold.posterior(log_joint[:, None, :])
            probas, held = posterior[:, 0, :], float(entropies[0])


@dataclass(frozen=True)
class _Fit:
    probas: FloatArray
    nu: FloatArray
    mu: FloatArray  # [w, l, c]
    history: list[float]
    n_iter: int


def confusion_prior(n_classes: int, diagonal: float, off_diagonal: float) -> FloatArray:
    """(K, K) Dirichlet parameters of the confusion rows: `diagonal` on the diagonal, else `off_diagonal`."""
    if not (diagonal > 0 and off_diagonal > 0):
        raise ValueError(
            f"diagonal_prior and off_diagonal_prior must be > 0, got {diagonal!r} and {off_diagonal!r}"
        )
    return np.full((n_classes, n_classes), float(off_diagonal)) + np.eye(n_classes) * (
        diagonal - off_diagonal
    )


def class_prior_vector(class_prior: ClassPrior, start: FloatArray) -> FloatArray:
    """Dirichlet parameters of the class proportions; `"empirical"` takes the start's class totals."""
    n_classes = start.shape[1]
    if isinstance(class_prior, str):
        if class_prior != "empirical":
            raise ValueError(
                f"class_prior must be a number, one per class, or 'empirical', not {class_prior!r}"
            )
        return np.maximum(column_sum(start), 1e-3)
    alpha = np.asarray(class_prior, dtype=np.float64)
    if alpha.ndim == 0:
        alpha = np.full(n_classes, float(alpha))
    if alpha.shape != (n_classes,) or np.any(~(alpha > 0)):
        raise ValueError(
            f"class_prior must be > 0 (one number, or {n_classes}, one per class), got {class_prior!r}"
        )
    return alpha


def answer_counts(by_worker_label: sp.csr_matrix, probas: FloatArray, n_workers: int) -> FloatArray:
    """counts[w, l, s]: expected times worker w answered l on items in state s (a column of `probas`)."""
    return np.asarray(by_worker_label @ probas).reshape(n_workers, -1, probas.shape[1])


class GoldMask:
    """Holds gold items to their class through the E-step, and gives the posterior's entropy cheaply.

    The latent states are `n_classes` blocks of `n_subtypes` columns; a gold item may only take the
    states of its class (log-score -inf elsewhere, so its posterior there is exactly zero).
    """

    def __init__(self, gold_idx: IntArray, n_classes: int, n_subtypes: int) -> None:
        self.rows = np.flatnonzero(gold_idx >= 0)
        mask = np.ones((self.rows.size, n_classes, n_subtypes), dtype=bool)
        mask[np.arange(self.rows.size), gold_idx[self.rows]] = False
        self.mask = mask.reshape(self.rows.size, n_classes * n_subtypes)

    def posterior(
        self, log_joint: FloatArray, states: IntArray | None = None
    ) -> tuple[FloatArray, FloatArray]:
        """Softmax of `log_joint` (n_items, n_runs, n_states; changed in place) over the states, and
        each run's total entropy. `states` names the states the columns hold (default: all).

        The entropy comes from the softmax's log normalisers (log Z minus the posterior-weighted
        log-scores), not from a log of every posterior cell.
        """
        n_items, n_runs, n_states = log_joint.shape
        if self.rows.size:
            block = log_joint[self.rows]
            columns = self.mask if states is None else self.mask[:, states]
            mask = np.broadcast_to(columns[:, None, :], block.shape)
            block[mask] = -np.inf
            log_joint[self.rows] = block
        flat, log_norm = softmax_rows(log_joint.reshape(n_items * n_runs, n_states))
        if self.rows.size:
            block[mask] = 0.0  # the posterior is zero there: no contribution to the entropy
            log_joint[self.rows] = block
        probas = flat.reshape(n_items, n_runs, n_states)
        held = log_norm.reshape(n_items, n_runs).sum(axis=0) - np.einsum("irs,irs->r", probas, log_joint)
        return probas, held


def dirichlet_log_mean(params: FloatArray) -> FloatArray:
    """E[log p] under Dirichlet(params) along the last axis."""
    return np.asarray(digamma(params) - digamma(params.sum(axis=-1, keepdims=True)))


def log_beta(params: FloatArray) -> FloatArray:
    """Log of the multivariate Beta function along the last axis."""
    return np.asarray(gammaln(params).sum(axis=-1) - gammaln(params.sum(axis=-1)))


def entropy(probas: FloatArray) -> float:
    """Total entropy of the rows of `probas` (0 log 0 = 0)."""
    return float(entr(probas).sum())
