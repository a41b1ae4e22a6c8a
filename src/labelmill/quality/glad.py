"""GLAD: worker ability times item easiness decides how likely a label is right."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    IntArray,
    LabelAggregator,
    clamp_gold,
    softmax_rows,
    weighted_count,
)

MStep = Literal["newton", "cg"]
#: Largest change of one parameter in one Newton step; keeps the first steps from a poor start sane.
MAX_STEP = 2.0


class GLAD(LabelAggregator):
    r"""GLAD (Generative model of Labels, Abilities, and Difficulties).

    Worker $w$ has ability $\alpha_w \in \mathbb{R}$, item $i$ an easiness $e^{\beta_i} > 0$, and
    a label is right with probability $a_{iw} = \sigma(\alpha_w e^{\beta_i})$, otherwise one of
    the $K - 1$ wrong classes uniformly: $P(l \mid c) = a_{iw}$ if $l = c$, else
    $(1 - a_{iw})/(K - 1)$. Class priors $\rho$ are fixed (uniform unless `class_priors` is
    given) and $\alpha_w \sim N(\mu_\alpha, 1)$, $\beta_i \sim N(\mu_\beta, 1)$. EM alternates the
    posterior $p_{ic} \propto \rho_c \prod P(l \mid c)$ with a MAP M-step on $(\alpha, \beta)$
    of the expected log-likelihood $Q$. Adversarial workers ($\alpha_w < 0$) are modelled, and
    hard items ($\beta_i$ small) pull every answer towards chance so they cannot mislead.

    The M-step: `"newton"` (default) takes alternating one-dimensional Newton steps on all
    $\alpha$ then all $\beta$ (each Hessian is diagonal given the other block, so a step is a few
    `bincount`s); `"cg"` runs scipy's conjugate gradient on $(\alpha, \beta)$ jointly, exactly as
    crowd-kit's `GLAD` does (with `n_iter` one less than crowd-kit's, since crowd-kit's posterior
    lags its last M-step by one iteration: labels equal, posteriors within float error).

    J. Whitehill, P. Ruvolo, T. Wu, J. Bergsma and J. Movellan, "Whose Vote Should Count More:
    Optimal Integration of Labels from Labelers of Unknown Expertise", NeurIPS 2009.

    Fitted: `alphas_` (per worker), `betas_` (per item, log-easiness), `difficulties_`
    ($e^{-\beta_i}$: larger is harder), `skills_` (each worker's mean $a_{iw}$ over their items),
    `priors_`, `n_iter_`, `loglik_` (mean log-posterior of the parameters per label).

    Example:
        >>> rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w2", 0)]
        >>> GLAD().fit_predict(rows)
        {'a': 1, 'b': 0}
    """

    alphas_: FloatArray
    betas_: FloatArray
    difficulties_: FloatArray
    priors_: FloatArray
    n_iter_: int
    loglik_: float

    def __init__(
        self,
        n_iter: int = 100,
        tol: float = 1e-5,
        alpha_prior_mean: float = 1.0,
        beta_prior_mean: float = 1.0,
        class_priors: Sequence[float] | None = None,
        m_step: MStep = "newton",
        m_step_max_iter: int = 25,
        m_step_tol: float = 1e-2,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.alpha_prior_mean = alpha_prior_mean
        self.beta_prior_mean = beta_prior_mean
        self.class_priors = class_priors
        self.m_step = m_step
        self.m_step_max_iter = m_step_max_iter
        self.m_step_tol = m_step_tol

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        if self.m_step not in ("newton", "cg"):
            raise ValueError(f"m_step must be 'newton' or 'cg', not {self.m_step!r}")
        model = _GladModel(coded, self._priors(coded.n_classes), self.alpha_prior_mean, self.beta_prior_mean)
        alphas = np.ones(coded.n_workers)
        betas = np.ones(coded.n_items)
        probas, objective = model.e_step(alphas, betas, gold_idx)
        n_done = 0
        for _ in range(self.n_iter):
            n_done += 1
            p_observed = probas.ravel()[model.cell]
            if self.m_step == "cg":
                alphas, betas = model.cg_m_step(
                    alphas, betas, p_observed, self.m_step_max_iter, self.m_step_tol
                )
            else:
                alphas, betas = model.newton_m_step(
                    alphas, betas, p_observed, self.m_step_max_iter, self.m_step_tol
                )
            previous = objective
            probas, objective = model.e_step(alphas, betas, gold_idx)
            if objective - previous < self.tol:
                break
        self.probas_ = probas
        self.priors_ = model.priors
        self.alphas_ = alphas
        self.betas_ = betas
        self.difficulties_ = np.exp(-betas)
        accuracy = expit(alphas[coded.worker_idx] * np.exp(betas[coded.item_idx]))
        answered = np.bincount(coded.worker_idx, minlength=coded.n_workers)
        self.skills_ = weighted_count(coded.worker_idx, accuracy, coded.n_workers) / answered
        self.n_iter_ = n_done
        self.loglik_ = objective

    def _priors(self, n_classes: int) -> FloatArray:
        if self.class_priors is None:
            return np.full(n_classes, 1.0 / n_classes)
        priors = np.asarray(self.class_priors, dtype=np.float64)
        if priors.shape != (n_classes,) or np.any(priors <= 0):
            raise ValueError(f"class_priors must be {n_classes} positive numbers, one per class in classes_")
        return priors / priors.sum()


class _GladModel:
    """The data-dependent pieces of GLAD: the E-step, Q and its gradient, the two M-steps."""

    def __init__(self, coded: CodedLabels, priors: FloatArray, alpha_mean: float, beta_mean: float) -> None:
        self.coded = coded
        self.priors = priors
        self.alpha_mean = alpha_mean
        self.beta_mean = beta_mean
        self.cell = coded.item_idx * coded.n_classes + coded.label_idx
        self.log_wrong_classes = np.log(max(coded.n_classes - 1, 1))

    def _margin(self, alphas: FloatArray, betas: FloatArray) -> tuple[FloatArray, FloatArray]:
        easiness = np.exp(betas)[self.coded.item_idx]
        return alphas[self.coded.worker_idx] * easiness, easiness

    def _log_prior(self, alphas: FloatArray, betas: FloatArray) -> float:
        return -0.5 * float(
            np.square(alphas - self.alpha_mean).sum() + np.square(betas - self.beta_mean).sum()
        )

    def e_step(self, alphas: FloatArray, betas: FloatArray, gold_idx: IntArray) -> tuple[FloatArray, float]:
        """Posteriors, and the log-posterior of (alpha, beta) per label (the stopping criterion).

        log P(l | c) is log(1 - a) - log(K - 1) for every class plus, for the class l names,
        log a - log(1 - a) + log(K - 1) = margin + log(K - 1).
        """
        coded = self.coded
        margin, _ = self._margin(alphas, betas)
        log_wrong = -np.logaddexp(0.0, margin) - self.log_wrong_classes
        wrong = weighted_count(coded.item_idx, log_wrong, coded.n_items)
        bonus = weighted_count(self.cell, margin + self.log_wrong_classes, coded.n_items * coded.n_classes)
        log_post = bonus.reshape(coded.n_items, coded.n_classes) + wrong[:, None] + np.log(self.priors)
        probas, log_evidence = softmax_rows(log_post)
        clamp_gold(probas, gold_idx)
        objective = (float(log_evidence.sum()) + self._log_prior(alphas, betas)) / coded.n_labels
        return probas, objective

    def q_and_gradient(
        self, alphas: FloatArray, betas: FloatArray, p_observed: FloatArray
    ) -> tuple[float, FloatArray, FloatArray]:
        """Expected complete-data log-likelihood (plus the Gaussian log-priors) and its gradient."""
        coded = self.coded
        margin, easiness = self._margin(alphas, betas)
        log_right = -np.logaddexp(0.0, -margin)
        log_wrong = -np.logaddexp(0.0, margin) - self.log_wrong_classes
        q = float((p_observed * log_right).sum() + ((1 - p_observed) * log_wrong).sum())
        q += self._log_prior(alphas, betas)
        residual = p_observed - expit(margin)
        d_alpha = weighted_count(coded.worker_idx, residual * easiness, coded.n_workers)
        d_beta = weighted_count(coded.item_idx, residual * margin, coded.n_items)
        return q, d_alpha - (alphas - self.alpha_mean), d_beta - (betas - self.beta_mean)

    def cg_m_step(
        self, alphas: FloatArray, betas: FloatArray, p_observed: FloatArray, max_iter: int, tol: float
    ) -> tuple[FloatArray, FloatArray]:
        n_workers = alphas.shape[0]

        def negative_q(x: FloatArray) -> tuple[float, FloatArray]:
            q, d_alpha, d_beta = self.q_and_gradient(x[:n_workers], x[n_workers:], p_observed)
            return -q, -np.concatenate([d_alpha, d_beta])

        result = minimize(
            negative_q,
            np.concatenate([alphas, betas]),
            method="CG",
            jac=True,
            tol=tol,
            options={"disp": False, "maxiter": max_iter},
        )
        return result.x[:n_workers], result.x[n_workers:]

    def newton_m_step(
        self, alphas: FloatArray, betas: FloatArray, p_observed: FloatArray, max_iter: int, tol: float
    ) -> tuple[FloatArray, FloatArray]:
        """Block-coordinate ascent on Q: a Newton step on every alpha, then one on every beta.

        Given the betas each alpha's Q is concave with curvature -sum a(1-a) e^{2 beta} - 1, so its
        Newton step is exact. Q is not concave in beta; there the step divides by an upper bound
        of the curvature (dropping the sign-indefinite term only when that makes the bound larger),
        which makes it an ascent step. Steps are capped at MAX_STEP.
        """
        coded = self.coded
        for _ in range(max_iter):
            easiness = np.exp(betas)[coded.item_idx]
            margin = alphas[coded.worker_idx] * easiness
            right = expit(margin)
            residual = p_observed - right
            spread = right * (1 - right)
            grad = weighted_count(coded.worker_idx, residual * easiness, alphas.size)
            curve = weighted_count(coded.worker_idx, spread * easiness * easiness, alphas.size)
            step_alpha = np.clip((grad - (alphas - self.alpha_mean)) / (curve + 1.0), -MAX_STEP, MAX_STEP)
            alphas = alphas + step_alpha

            margin = alphas[coded.worker_idx] * easiness
            right = expit(margin)
            spread = right * (1 - right)
            data_grad = weighted_count(coded.item_idx, (p_observed - right) * margin, betas.size)
            curve = weighted_count(coded.item_idx, spread * margin * margin, betas.size)
            curve += 1.0 + np.maximum(-data_grad, 0.0)
            step_beta = np.clip((data_grad - (betas - self.beta_mean)) / curve, -MAX_STEP, MAX_STEP)
            betas = betas + step_beta
            if max(np.abs(step_alpha).max(), np.abs(step_beta).max()) < tol:
                break
        return alphas, betas
