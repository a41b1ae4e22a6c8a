"""Dawid–Skene: one full confusion matrix per worker, fitted by EM."""

from __future__ import annotations

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
from labelmill.quality.wawa import weighted_probas

Init = Literal["mv", "wawa"]
#: Floor for probabilities before taking logs (crowd-kit uses the same 1e-10).
EPS = 1e-10


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
    same for the class priors. It stops after `n_iter`
    iterations or when the mean log-likelihood per label improves by less than `tol` (a negative
    `tol` always runs `n_iter`). With `smoothing=0, prior_smoothing=0, init="mv"` this is
    crowd-kit's `DawidSkene` (labels equal, posteriors within float error).

    A. P. Dawid and A. M. Skene, "Maximum Likelihood Estimation of Observer Error-Rates Using
    the EM Algorithm", Journal of the Royal Statistical Society C 28(1), 1979, 20–28.

    Fitted: `confusions_[w, c, l]` = P(worker w answers l | true class c) (rows sum to one),
    `priors_`, `skills_` (each worker's expected accuracy under `priors_`), `n_iter_`, `loglik_`
    (mean log-likelihood per label).

    Example:
        >>> rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w2", 0)]
        >>> DawidSkene().fit_predict(rows)
        {'a': 1, 'b': 0}
    """

    confusions_: FloatArray
    priors_: FloatArray
    n_iter_: int
    loglik_: float

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        smoothing: float = 2.0,
        prior_smoothing: float = 1.0,
        init: Init = "mv",
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.smoothing = smoothing
        self.prior_smoothing = prior_smoothing
        self.init = init

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        n_classes = coded.n_classes
        by_item = label_matrix(coded)
        by_worker_label = by_item.T.tocsr()
        # Which answers each worker ever gave: only those cells are read by the E-step, and (as in
        # crowd-kit) a true class a worker never met spreads over their own answers, not all K.
        gave = (by_worker_label.getnnz(axis=1) > 0).reshape(coded.n_workers, 1, n_classes)
        probas = clamp_gold(initial_probas(coded, self.init), gold_idx)
        priors, confusions = self._m_step(by_worker_label, probas, gave)
        loglik, n_done = -np.inf, 0
        for _ in range(self.n_iter):
            n_done += 1
            log_table = np.log(np.where(gave, confusions, 1.0)).transpose(0, 2, 1).reshape(-1, n_classes)
            probas, log_evidence = softmax_rows(by_item @ log_table + np.log(priors))
            clamp_gold(probas, gold_idx)
            previous, loglik = loglik, float(log_evidence.sum()) / coded.n_labels
            priors, confusions = self._m_step(by_worker_label, probas, gave)
            if loglik - previous < self.tol:
                break
        self.probas_ = probas
        self.priors_ = priors
        self.confusions_ = confusions
        self.skills_ = np.einsum("c,wcc->w", priors, confusions)
        self.n_iter_ = n_done
        self.loglik_ = loglik

    def _m_step(
        self, by_worker_label: sp.csr_matrix, probas: FloatArray, gave: npt.NDArray[np.bool_]
    ) -> tuple[FloatArray, FloatArray]:
        n_items, n_classes = probas.shape
        n_workers = gave.shape[0]
        priors = (column_sum(probas) + self.prior_smoothing) / (n_items + n_classes * self.prior_smoothing)
        # counts[w, c, l]: expected number of times worker w said l when the truth was c.
        counts = np.asarray(by_worker_label @ probas).reshape(n_workers, n_classes, n_classes)
        counts = counts.transpose(0, 2, 1)
        answered = counts.sum(axis=(0, 1))
        pseudo = self.smoothing * answered / max(answered.sum(), EPS)
        confusions = counts + pseudo
        confusions = np.where(gave, np.maximum(confusions, EPS), confusions)
        confusions /= confusions.sum(axis=2, keepdims=True)
        return np.maximum(priors, EPS), confusions


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
    """Starting posteriors: plain vote shares (`"mv"`) or agreement-weighted ones (`"wawa"`)."""
    plain = normalize_rows(vote_counts(coded))
    if init == "mv":
        return plain
    if init == "wawa":
        return weighted_probas(coded, agreement_skills(coded, plain.argmax(axis=1)), plain)
    raise ValueError(f"init must be 'mv' or 'wawa', not {init!r}")
