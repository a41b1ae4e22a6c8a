"""MACE: each worker either knows the answer or is spamming with a personal answer habit."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy.special import digamma

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    IntArray,
    LabelAggregator,
    clamp_gold,
    row_sum,
    softmax_rows,
    weighted_count,
)

Method = Literal["vb", "em"]
MaceInit = Literal["random", "crowdkit"]


class MACE(LabelAggregator):
    r"""MACE (Multi-Annotator Competence Estimation).

    The true class $T_i$ is uniform over the $K$ classes. On each label worker $w$ is spamming
    with probability $1 - \theta_w$ ($S_{iw} \sim \text{Bernoulli}(1 - \theta_w)$); a worker who is
    not spamming gives the true class, one who is spamming draws from their own answer habit
    $\xi_w$ (a distribution over classes). So $P(l \mid c) = \theta_w [l = c] + (1 - \theta_w)
    \xi_{wl}$. EM alternates the posterior of $T_i$ (and of each $S_{iw}$) with re-estimating
    $\theta$ and $\xi$ from the expected counts; `method="vb"` (default) does variational Bayes
    with $\theta_w \sim \text{Beta}(\beta, \alpha)$ (parameters `beta` for knowing, `alpha` for
    spamming) and $\xi_w \sim \text{Dirichlet}(\text{strategy\_prior})$, `"em"` adds `smoothing`
    (default $0.01/K$) to the counts. The likelihood has many local optima, so the best of
    `n_restarts` random starts (by marginal likelihood) wins. A worker who answers the same class
    whatever the item is recognised as a spammer rather than rewarded for agreeing with a
    frequent class.

    D. Hovy, T. Berg-Kirkpatrick, A. Vaswani and E. Hovy, "Learning Whom to Trust with MACE",
    NAACL-HLT 2013, 1120–1130.

    `init="random"` (default) draws every restart's start from one `random_state` generator.
    `init="crowdkit"` reproduces crowd-kit's `MACE`: every restart starts from
    `numpy.random.RandomState(random_state)` (so all restarts coincide) and `tol` should be
    negative to run all `n_iter` iterations as crowd-kit does (labels equal, posteriors within
    float error, provided workers and classes sort in order of first appearance: crowd-kit
    mixes the two orders in its M-step).

    Fitted: `skills_` ($\theta_w$), `spamming_` ($1 - \theta_w$), `strategies_` ($\xi$, workers x
    classes), `n_iter_` and `loglik_` (mean marginal log-likelihood per label) of the best restart.

    Example:
        >>> rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w2", 0)]
        >>> MACE().fit_predict(rows)
        {'a': 1, 'b': 0}
    """

    spamming_: FloatArray
    strategies_: FloatArray
    n_iter_: int
    loglik_: float

    def __init__(
        self,
        n_restarts: int = 10,
        n_iter: int = 50,
        tol: float = 1e-5,
        method: Method = "vb",
        smoothing: float | None = None,
        default_noise: float = 0.5,
        alpha: float = 0.5,
        beta: float = 0.5,
        strategy_prior: float = 10.0,
        random_state: int | None = 0,
        init: MaceInit = "random",
    ) -> None:
        self.n_restarts = n_restarts
        self.n_iter = n_iter
        self.tol = tol
        self.method = method
        self.smoothing = smoothing
        self.default_noise = default_noise
        self.alpha = alpha
        self.beta = beta
        self.strategy_prior = strategy_prior
        self.random_state = random_state
        self.init = init

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        if self.method not in ("vb", "em"):
            raise ValueError(f"method must be 'vb' or 'em', not {self.method!r}")
        if self.init not in ("random", "crowdkit"):
            raise ValueError(f"init must be 'random' or 'crowdkit', not {self.init!r}")
        model = _MaceModel(coded, gold_idx)
        rng = np.random.default_rng(self.random_state)
        best: tuple[float, FloatArray, FloatArray, FloatArray, int] | None = None
        for _ in range(max(self.n_restarts, 1)):
            knowing, strategies = self._start(coded.n_workers, coded.n_classes, rng)
            loglik, n_done = -np.inf, 0
            for _ in range(self.n_iter):
                n_done += 1
                previous = loglik
                probas, loglik = model.e_step(knowing, strategies)
                knowing_counts, strategy_counts = model.expected_counts(knowing, strategies, probas)
                knowing, strategies = self._m_step(knowing_counts, strategy_counts, coded.n_classes)
                if loglik - previous < self.tol:
                    break
            probas, loglik = model.e_step(knowing, strategies)
            if best is None or loglik > best[0]:
                best = (loglik, probas, knowing, strategies, n_done)
        assert best is not None
        self.loglik_, self.probas_, knowing, strategies, self.n_iter_ = best
        self.skills_ = knowing[:, 1] / row_sum(knowing)
        self.spamming_ = 1.0 - self.skills_
        self.strategies_ = strategies / row_sum(strategies)[:, None]

    def _start(
        self, n_workers: int, n_classes: int, rng: np.random.Generator
    ) -> tuple[FloatArray, FloatArray]:
        """Random (spamming, knowing) and answer-habit rows, each from U[1, 2 + noise) and normalised."""
        if self.init == "crowdkit":
            knowing = np.random.RandomState(self.random_state).uniform(size=(n_workers, 2))
            strategies = np.random.RandomState(self.random_state).uniform(size=(n_workers, n_classes))
        else:
            knowing, strategies = rng.uniform(size=(n_workers, 2)), rng.uniform(size=(n_workers, n_classes))
        knowing = 1.0 + (1.0 + self.default_noise) * knowing
        strategies = 1.0 + (1.0 + self.default_noise) * strategies
        return knowing / row_sum(knowing)[:, None], strategies / row_sum(strategies)[:, None]

    def _m_step(
        self, knowing_counts: FloatArray, strategy_counts: FloatArray, n_classes: int
    ) -> tuple[FloatArray, FloatArray]:
        if self.method == "vb":
            priors = np.array([self.alpha, self.beta])
            return _variational_normalize(knowing_counts, priors), _variational_normalize(
                strategy_counts, np.full(n_classes, self.strategy_prior)
            )
        smoothing = 0.01 / n_classes if self.smoothing is None else self.smoothing
        return _smoothed_normalize(knowing_counts, smoothing), _smoothed_normalize(strategy_counts, smoothing)


class _MaceModel:
    """The E-step on coded labels: two bincounts for the posteriors, one for the expected counts."""

    def __init__(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        self.coded = coded
        self.gold_idx = gold_idx
        self.cell = coded.item_idx * coded.n_classes + coded.label_idx
        self.answer = coded.worker_idx * coded.n_classes + coded.label_idx
        self.answer_counts = np.bincount(self.answer, minlength=coded.n_workers * coded.n_classes).astype(
            np.float64
        )

    def e_step(self, knowing: FloatArray, strategies: FloatArray) -> tuple[FloatArray, float]:
        """Posteriors and mean log-likelihood per label.

        With a = (1 - theta) xi_l (spamming into l) and b = a + theta, every label adds log a to
        all classes and log(b / a) to the class it names: two bincounts, not a K-wide pass.
        """
        coded = self.coded
        n_classes = coded.n_classes
        spam = (knowing[:, :1] * strategies).ravel()
        hit = spam + np.repeat(knowing[:, 1], n_classes)
        log_spam = np.log(spam)
        base = weighted_count(coded.item_idx, log_spam[self.answer], coded.n_items)
        bonus = weighted_count(self.cell, (np.log(hit) - log_spam)[self.answer], coded.n_items * n_classes)
        log_post = bonus.reshape(coded.n_items, n_classes) + base[:, None] - np.log(n_classes)
        probas, log_evidence = softmax_rows(log_post)
        clamp_gold(probas, self.gold_idx)
        return probas, float(log_evidence.sum()) / coded.n_labels

    def expected_counts(
        self, knowing: FloatArray, strategies: FloatArray, probas: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        """Expected (spamming, knowing) counts per worker and spamming answers per (worker, class).

        Given the posterior p of the class a label names, it came from knowing with probability
        r = p theta / b; the rest of each (worker, answer) count is spamming.
        """
        coded = self.coded
        n_classes = coded.n_classes
        hit = (knowing[:, :1] * strategies + knowing[:, 1:]).ravel()
        from_knowing = probas.ravel()[self.cell] * (np.repeat(knowing[:, 1], n_classes) / hit)[self.answer]
        knowing_by_answer = weighted_count(self.answer, from_knowing, hit.shape[0])
        knowing_by_answer = knowing_by_answer.reshape(coded.n_workers, n_classes)
        strategy_counts = self.answer_counts.reshape(coded.n_workers, n_classes) - knowing_by_answer
        knowing_total = row_sum(knowing_by_answer)
        knowing_counts = np.column_stack([row_sum(strategy_counts), knowing_total])
        return knowing_counts, np.maximum(strategy_counts, 0.0)


def _variational_normalize(counts: FloatArray, prior: FloatArray) -> FloatArray:
    """exp(E[log p]) under the Dirichlet posterior: not normalised, which is the point of VB."""
    shifted = counts + prior
    return np.exp(digamma(shifted) - digamma(row_sum(shifted))[:, None])


def _smoothed_normalize(counts: FloatArray, smoothing: float) -> FloatArray:
    shifted = counts + smoothing
    return shifted / row_sum(shifted)[:, None]
