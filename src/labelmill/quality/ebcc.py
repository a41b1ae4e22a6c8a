"""EBCC: Enhanced Bayesian Classifier Combination, IBCC with latent subtypes that model worker correlation."""

from __future__ import annotations

from dataclasses import dataclass

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
    vote_counts,
)
from labelmill.quality.dawid_skene import label_matrix
from labelmill.quality.ibcc import (
    ClassPrior,
    GoldMask,
    answer_counts,
    class_prior_vector,
    confusion_prior,
    dirichlet_log_mean,
    log_beta,
)

#: Posterior cells (items x restarts x classes x subtypes) of the restarts run side by side.
BATCH_CELLS = 1 << 21
#: A state (class, subtype) whose expected count falls under this in every run is dropped.
DEAD_STATE = 1e-12


class EBCC(LabelAggregator):
    r"""EBCC: IBCC where every class has `n_subtypes` latent subtypes, which captures correlated workers.

    Item $i$ has a class $z_i \sim \text{Cat}(\tau)$ and, within it, a subtype
    $g_i \sim \text{Cat}(\pi_{z_i})$; worker $w$ answers $l$ with probability $V^w_{z_i g_i l}$.
    Workers are independent given the subtype but not given the class alone, so a group of
    workers who all fail on the same kind of item (a subtype) is recognised as one piece of
    evidence rather than many. Priors: $\tau \sim \text{Dir}(\alpha)$,
    $\pi_k \sim \text{Dir}(a_\pi / M, \dots)$ (a sparse prior with total `subtype_prior`, so
    unneeded subtypes empty out), $V^w_{km\cdot} \sim \text{Dir}(\beta_k)$ with $\beta_{kk}$ =
    `diagonal_prior` and $\beta_{kl}$ = `off_diagonal_prior`. Mean-field variational Bayes
    alternates $q(\tau), q(\pi), q(V)$ (Dirichlets of prior plus expected counts) with the joint
    posterior $r_{ikm} \propto \exp(\mathbb{E}\log\tau_k + \mathbb{E}\log\pi_{km}
    + \sum_{(i,w,l)} \mathbb{E}\log V^w_{kml})$; the ELBO (tracked every round, never decreasing)
    is $\ln B(\nu) - \ln B(\alpha) + \sum_k [\ln B(\eta_k) - \ln B(a_\pi/M)] +
    \sum_{w,k,m} [\ln B(\mu^w_{km}) - \ln B(\beta_k)] + H(r)$. The subtype symmetry makes the
    bound multimodal, so `n_restarts` random starts (the majority vote split over subtypes by a
    random Dirichlet(1) share each) are run and the highest ELBO wins. The class posterior is
    $\sum_m r_{ikm}$; gold items are held to their class (their subtype stays free).

    Defaults follow the authors' reference code: 10 subtypes, $a_\pi = 0.1$,
    $\beta_{kk} = 4$, $\beta_{kl} = 1$, and the class prior $\alpha$ set to the majority-vote
    class counts (`class_prior="empirical"`; a number or one per class also works).

    Y. Li, B. I. P. Rubinstein and T. Cohn, "Exploiting Worker Correlation for Label
    Aggregation in Crowdsourcing", ICML 2019, PMLR 97, 3886–3895.

    Fitted: `probas_`, `priors_` (posterior mean of $\tau$), `subtype_weights_[k, m]` (posterior
    mean of $\pi$), `confusions_[w, k, m, l]` (posterior mean of $V$), `skills_` (each worker's
    expected accuracy), `elbo_` (the winning restart's ELBO, nats, whole data set),
    `elbo_history_` (its ELBO every round), `restart_elbos_` (every restart's final ELBO),
    `best_restart_` and `n_iter_`.

    On tiny data many subtypes let every item be its own cluster; use few there.

    Example:
        >>> rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w2", 0)]
        >>> EBCC(n_subtypes=2).fit_predict(rows)
        {'a': 1, 'b': 0}
    """

    priors_: FloatArray
    subtype_weights_: FloatArray
    confusions_: FloatArray
    elbo_: float
    elbo_history_: list[float]
    restart_elbos_: FloatArray
    best_restart_: int
    n_iter_: int

    def __init__(
        self,
        n_subtypes: int = 10,
        n_restarts: int = 5,
        n_iter: int = 500,
        tol: float = 1e-6,
        class_prior: ClassPrior = "empirical",
        subtype_prior: float = 0.1,
        diagonal_prior: float = 4.0,
        off_diagonal_prior: float = 1.0,
        random_state: int | None = 0,
    ) -> None:
        self.n_subtypes = n_subtypes
        self.n_restarts = n_restarts
        self.n_iter = n_iter
        self.tol = tol
        self.class_prior = class_prior
        self.subtype_prior = subtype_prior
        self.diagonal_prior = diagonal_prior
        self.off_diagonal_prior = off_diagonal_prior
        self.random_state = random_state

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        if not (isinstance(self.n_subtypes, int) and self.n_subtypes >= 1):
            raise ValueError(f"n_subtypes must be an integer >= 1, not {self.n_subtypes!r}")
        if not (isinstance(self.n_restarts, int) and self.n_restarts >= 1):
            raise ValueError(f"n_restarts must be an integer >= 1, not {self.n_restarts!r}")
        if not self.subtype_prior > 0:
            raise ValueError(f"subtype_prior must be > 0, not {self.subtype_prior!r}")
        beta = confusion_prior(coded.n_classes, self.diagonal_prior, self.off_diagonal_prior)
        start = clamp_gold(normalize_rows(vote_counts(coded)), gold_idx)
        alpha = class_prior_vector(self.class_prior, start)
        model = _EbccModel(coded, gold_idx, alpha, beta, self.n_subtypes, self.subtype_prior)
        rng = np.random.default_rng(self.random_state)
        n_items, n_classes, n_subtypes = start.shape[0], coded.n_classes, self.n_subtypes
        # Restarts run side by side (their states side by side in the columns of one sparse
        # product), as many at a time as fit in about BATCH_CELLS posterior cells.
        batch = max(1, BATCH_CELLS // max(n_items * n_classes * n_subtypes, 1))
        fits: list[_Fit] = []
        for first in range(0, self.n_restarts, batch):
            runs = min(batch, self.n_restarts - first)
            share = np.stack(
                [rng.dirichlet(np.ones(n_subtypes), size=start.shape) for _ in range(runs)], axis=1
            )
            joint = (start[:, None, :, None] * share).reshape(n_items, runs, n_classes * n_subtypes)
            fits.extend(model.fit(joint, self.n_iter, self.tol))
        elbos = np.array([fit.history[-1] for fit in fits])
        best = int(np.argmax(elbos))
        fit = fits[best]
        # Sums of subtypes: clamped so gold rows are exact one-hots.
        self.probas_ = clamp_gold(fit.joint.reshape(n_items, n_classes, n_subtypes).sum(axis=2), gold_idx)
        self.priors_ = fit.nu / fit.nu.sum()
        self.subtype_weights_ = fit.eta / fit.eta.sum(axis=1, keepdims=True)
        mu = fit.mu.reshape(coded.n_workers, n_classes, n_classes, n_subtypes).transpose(0, 2, 3, 1)
        self.confusions_ = mu / mu.sum(axis=3, keepdims=True)
        # P(right | class k) = sum_m pi_km V_kmk, averaged over the classes.
        diagonal = np.einsum("wkmk->wkm", self.confusions_)
        self.skills_ = np.einsum("k,km,wkm->w", self.priors_, self.subtype_weights_, diagonal)
        self.elbo_ = fit.history[-1]
        self.elbo_history_ = fit.history
        self.restart_elbos_ = elbos
        self.best_restart_ = best
        self.n_iter_ = fit.n_iter


@dataclass(frozen=True)
class _Fit:
    joint: FloatArray  # r[i, s], state s = class * n_subtypes + subtype
    nu: FloatArray  # (K,)
    eta: FloatArray  # (K, M)
    mu: FloatArray  # [w, l, s]
    history: list[float]
    n_iter: int


class _EbccModel:
    """The data-dependent pieces: label matrices, priors and their normalisers, one VB run."""

    def __init__(
        self,
        coded: CodedLabels,
        gold_idx: IntArray,
        alpha: FloatArray,
        beta: FloatArray,
        n_subtypes: int,
        subtype_prior: float,
    ) -> None:
        self.n_labels = coded.n_labels
        self.n_workers = coded.n_workers
        self.n_classes = coded.n_classes
        self.n_subtypes = n_subtypes
        self.alpha = alpha
        # beta[k, l] laid out as [l, s] for the states s of class k.
        self.beta_by_answer = np.ascontiguousarray(np.repeat(beta.T, n_subtypes, axis=1))
        self.eta0 = np.full(n_subtypes, subtype_prior / n_subtypes)
        self.by_item: sp.csr_matrix = label_matrix(coded)
        self.by_worker_label: sp.csr_matrix = self.by_item.T.tocsr()
        self.prior_norm = float(log_beta(alpha)) + self.n_classes * float(log_beta(self.eta0))
        # The confusion priors' normaliser, per state (n_workers rows of beta[k] for class k's states).
        self.state_norm = self.n_workers * np.repeat(log_beta(beta), n_subtypes)
        self.gold = GoldMask(gold_idx, self.n_classes, n_subtypes)

    def fit(self, joint: FloatArray, n_iter: int, tol: float) -> list[_Fit]:
        """Coordinate ascent from the state posteriors `joint` (n_items, n_runs, K * M) of several
        independent runs at once; a run that has converged leaves the batch.

        The sparse subtype prior empties most subtypes within a few dozen rounds; a state whose
        expected count has fallen under `DEAD_STATE` in every run of the batch is dropped from
        the computation (its posterior, about exp(psi(a_pi / M)) ~ 1e-40 a round, could not come
        back), which changes the bound by less than float error and saves most of the work.
        """
        n_items, n_runs, n_states = joint.shape
        n_classes, n_workers = self.n_classes, self.n_workers
        live = np.arange(n_states)  # the states still computed
        held = entr(joint).sum(axis=(0, 2))
        runs = np.arange(n_runs)  # which run each slot of the batch holds
        histories: list[list[float]] = [[] for _ in range(n_runs)]
        fits: list[_Fit | None] = [None] * n_runs
        n_done = 0
        while True:
            counts = column_sum(joint.reshape(n_items, -1)).reshape(runs.size, live.size)
            alive = counts.max(axis=0) >= DEAD_STATE
            if not alive.all():
                live, joint, counts = live[alive], joint[:, :, alive], counts[:, alive]
                joint /= joint.sum(axis=2, keepdims=True)
            flat = joint.reshape(n_items, -1)
            eta = np.tile(np.tile(self.eta0, n_classes), (runs.size, 1))
            eta[:, live] += counts
            eta = eta.reshape(runs.size, n_classes, self.n_subtypes)
            nu = self.alpha + eta.sum(axis=2) - self.eta0.sum()
            mu = answer_counts(self.by_worker_label, flat, n_workers) + np.tile(
                self.beta_by_answer[:, live], runs.size
            )
            total = mu.sum(axis=1, keepdims=True)
            elbos = (
                log_beta(nu)
                + log_beta(eta).sum(axis=1)
                + gammaln(mu).reshape(n_workers, n_classes, runs.size, live.size).sum(axis=(0, 1, 3))
                - gammaln(total).reshape(n_workers, runs.size, live.size).sum(axis=(0, 2))
                - self.prior_norm
                - self.state_norm[live].sum()  # a dropped state's V is its prior: no term
                + held
            )
            done = np.zeros(runs.size, dtype=bool)
            for slot, run in enumerate(runs.tolist()):
                history = histories[run]
                history.append(float(elbos[slot]))
                if n_done >= n_iter or (len(history) > 1 and history[-1] - history[-2] < tol * self.n_labels):
                    done[slot] = True
                    fits[run] = self._snapshot(
                        joint[:, slot], nu[slot], eta[slot], mu, slot, live, history, n_done
                    )
            if done.all():
                return [fit for fit in fits if fit is not None]
            n_done += 1
            if done.any():
                keep = ~done
                runs, joint, nu, eta = runs[keep], joint[:, keep], nu[keep], eta[keep]
                mu = mu.reshape(n_workers, n_classes, -1, live.size)[:, :, keep].reshape(
                    n_workers, n_classes, -1
                )
                total = total.reshape(n_workers, 1, -1, live.size)[:, :, keep].reshape(n_workers, 1, -1)
            log_prior = dirichlet_log_mean(nu)[:, :, None] + dirichlet_log_mean(eta)  # (runs, K, M)
            # [w, l, (run, s)] -> (W * L, runs * S): one sparse product gives every item's
            # log-likelihood per run and state.
            log_table = (digamma(mu) - digamma(total)).reshape(n_workers * n_classes, -1)
            log_joint = np.asarray(self.by_item @ log_table) + log_prior.reshape(runs.size, -1)[
                :, live
            ].reshape(-1)
            joint, held = self.gold.posterior(log_joint.reshape(n_items, runs.size, live.size), live)

    def _snapshot(
        self,
        joint: FloatArray,
        nu: FloatArray,
        eta: FloatArray,
        mu: FloatArray,
        slot: int,
        live: IntArray,
        history: list[float],
        n_done: int,
    ) -> _Fit:
        """One run's result with every state (dropped ones: no posterior mass, V at its prior)."""
        n_states = self.n_classes * self.n_subtypes
        full_joint = np.zeros((joint.shape[0], n_states))
        full_joint[:, live] = joint
        full_mu = np.repeat(self.beta_by_answer[None], self.n_workers, axis=0)
        full_mu[:, :, live] = mu[:, :, slot * live.size : (slot + 1) * live.size]
        return _Fit(full_joint, nu, eta, full_mu, history, n_done)
