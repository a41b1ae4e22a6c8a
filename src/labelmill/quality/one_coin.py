"""One-coin Dawid–Skene: one accuracy per worker instead of a confusion matrix."""

from __future__ import annotations

import numpy as np

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    IntArray,
    LabelAggregator,
    clamp_gold,
    column_sum,
    softmax_rows,
    weighted_count,
)
from labelmill.quality.dawid_skene import EPS, Init, initial_probas


class OneCoinDawidSkene(LabelAggregator):
    r"""One-coin Dawid–Skene: worker $w$ is right with probability $s_w$, else picks a wrong class at random.

    The confusion matrix collapses to $\pi^w_{cl} = s_w$ if $l = c$ and $(1 - s_w)/(K - 1)$
    otherwise, so the posterior is $p_{ic} \propto \rho_c \prod_{(i,w,l)} \pi^w_{cl}$ and the
    M-step sets $s_w$ to the worker's expected accuracy,
    $s_w = (\sum_{(i,w,l)} p_{il} + \alpha / K) / (|L_w| + \alpha)$, with `smoothing` ($\alpha$)
    pseudo-labels at chance accuracy, and $\rho_c \propto \alpha_\rho + \sum_i p_{ic}$. One
    parameter per worker fits sparse workers better than a full matrix, at the price of
    ignoring systematic confusions. With `smoothing=0, prior_smoothing=0` this is crowd-kit's
    `OneCoinDawidSkene`.

    Y. Zhang, X. Chen, D. Zhou and M. I. Jordan, "Spectral Methods Meet EM: A Provably Optimal
    Algorithm for Crowdsourcing", Journal of Machine Learning Research 17, 2016, 1–44.

    Fitted: `skills_` ($s_w$), `priors_`, `n_iter_`, `loglik_` (mean log-likelihood per label).

    Example:
        >>> rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w2", 0)]
        >>> OneCoinDawidSkene().fit_predict(rows)
        {'a': 1, 'b': 0}
    """

    priors_: FloatArray
    n_iter_: int
    loglik_: float

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 0.0,
        prior_smoothing: float = 0.0,
        init: Init = "mv",
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing
        self.prior_smoothing = prior_smoothing
        self.init = init

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        n_classes = coded.n_classes
        cell = coded.item_idx * n_classes + coded.label_idx
        answered = np.bincount(coded.worker_idx, minlength=coded.n_workers).astype(np.float64)
        probas = clamp_gold(initial_probas(coded, self.init), gold_idx)
        priors, skills = self._m_step(coded, cell, answered, probas)
        loglik, n_done = -np.inf, 0
        for _ in range(self.n_iter):
            n_done += 1
            probas, log_evidence = softmax_rows(_log_posterior(coded, cell, skills, priors))
            clamp_gold(probas, gold_idx)
            previous, loglik = loglik, float(log_evidence.sum()) / coded.n_labels
            priors, skills = self._m_step(coded, cell, answered, probas)
            if loglik - previous < self.tol:
                break
        self.probas_ = probas
        self.priors_ = priors
        self.skills_ = skills
        self.n_iter_ = n_done
        self.loglik_ = loglik

    def _m_step(
        self, coded: CodedLabels, cell: IntArray, answered: FloatArray, probas: FloatArray
    ) -> tuple[FloatArray, FloatArray]:
        n_items, n_classes = probas.shape
        priors = (column_sum(probas) + self.prior_smoothing) / (n_items + n_classes * self.prior_smoothing)
        hits = weighted_count(coded.worker_idx, probas.ravel()[cell], coded.n_workers)
        skills = (hits + self.smoothing / n_classes) / np.maximum(answered + self.smoothing, EPS)
        return np.maximum(priors, EPS), np.clip(skills, EPS, 1 - EPS)


def _log_posterior(coded: CodedLabels, cell: IntArray, skills: FloatArray, priors: FloatArray) -> FloatArray:
    """log rho_c + sum of log pi(l | c): every label adds log-wrong to all classes, and the
    log-odds of right over wrong to the class it names; two bincounts instead of a K-wide pass."""
    n_classes = priors.shape[0]
    log_right = np.log(skills)
    log_wrong = np.log(np.maximum((1 - skills) / max(n_classes - 1, 1), EPS))
    wrong = weighted_count(coded.item_idx, log_wrong[coded.worker_idx], coded.n_items)
    bonus = weighted_count(cell, (log_right - log_wrong)[coded.worker_idx], coded.n_items * n_classes)
    return bonus.reshape(coded.n_items, n_classes) + wrong[:, None] + np.log(priors)
