"""Minimax conditional entropy: worker and item confusion parameters, categorical and ordinal."""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    IntArray,
    LabelAggregator,
    clamp_gold,
    normalize_rows,
    softmax_rows,
    vote_counts,
)

Init = Literal["mv", "ds"]
MStep = Literal["newton", "lbfgs"]
#: Step halvings a Newton block step may take for an entity whose objective would drop (then it stays put).
MAX_HALVINGS = 8


class MinimaxEntropy(LabelAggregator):
    r"""Minimax conditional entropy (categorical): confusions shaped by both worker and item.

    Worker $w$ answers $l$ to item $i$ of true class $c$ with probability
    $P(l \mid c) \propto \exp(\sigma_w(c, l) + \tau_i(c, l))$: the maximum-entropy labelling
    distribution that matches each worker's and each item's expected confusion counts, so a
    worker's skill ($\sigma_w$) and an item's difficulty and ambiguity ($\tau_i$, which classes
    it is mistaken for) combine. The dual of minimising over the truth the maximum conditional
    entropy is, with the relaxed (regularised) constraints, a penalised likelihood:

    $\max \sum_i \log \sum_c \rho_c \prod_{(i,w,l)} P(l \mid c)
    - \frac{\lambda_w}{2} \sum_w \lVert\sigma_w\rVert^2 - \frac{\lambda_t}{2} \sum_i \lVert\tau_i\rVert^2$

    with uniform class priors $\rho$. It is fitted by EM as the authors do: posteriors start
    from the vote shares (`init="mv"`, or Dawid–Skene's with `init="ds"`), then an M-step on
    $\sigma$ and $\tau$ alternates with the exact E-step until no posterior moves by more than
    `tol`, or for `n_iter` rounds. Given the posteriors each worker's (item's) part is concave
    and separate from the others', with a Hessian block diagonal over true classes, so the
    default M-step (`m_step="newton"`) is one Newton step on every worker, then one on every
    item: batches of K x K solves, halved for any entity whose objective would drop, so the
    objective never decreases. `m_step="lbfgs"` runs the authors' optimiser instead (L-BFGS,
    warm-started, at most `m_step_max_iter` steps, on all parameters at once); both reach the
    same optimum, Newton with far fewer passes over the labels (and no threaded BLAS).

    The regularisation constants default to
    the authors' choice: $\lambda_w = K^2 / 4$ and $\lambda_t = \lambda_w \bar d_w / \bar d_i$
    (mean labels per worker over mean labels per item), so both sides' parameters are shrunk
    in proportion to the evidence each has. With few labels per worker the item parameters
    can explain almost any answers and the posteriors stay near uniform (on tiny data the
    result can differ from majority vote); it is meant for crowds of some size.

    D. Zhou, J. C. Platt, S. Basu and Y. Mao, "Learning from the Wisdom of Crowds by Minimax
    Entropy", NeurIPS 2012; D. Zhou, Q. Liu, J. C. Platt and C. Meek, "Aggregating Ordinal
    Labels from Crowds by Minimax Conditional Entropy", ICML 2014 (whose code fixes the
    constants above, `n_iter=50`, `tol=5e-3` and 25 L-BFGS steps per M-step).

    Fitted: `sigmas_[w]` and `taus_[i]` (K x K logit matrices, rows = true class),
    `confusions_[w, c, l]` (worker w's confusion on an item with $\tau = 0$), `skills_` (mean
    of its diagonal), `worker_params_` and `item_params_` (the free parameters: for this
    class the flattened logit matrices), `n_iter_`, `objective_` (the penalised log-likelihood
    per label) and `objective_path_` (after every round; it never decreases).

    Example:
        >>> rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w2", 0)]
        >>> MinimaxEntropy().fit_predict(rows)
        {'a': 1, 'b': 0}
    """

    sigmas_: FloatArray
    taus_: FloatArray
    confusions_: FloatArray
    worker_params_: FloatArray
    item_params_: FloatArray
    lambda_worker_: float
    lambda_item_: float
    n_iter_: int
    objective_: float
    objective_path_: list[float]

    def __init__(
        self,
        n_iter: int = 50,
        tol: float = 5e-3,
        lambda_worker: float | None = None,
        lambda_item: float | None = None,
        init: Init = "mv",
        m_step: MStep = "newton",
        m_step_max_iter: int = 25,
        m_step_tol: float = 1e-3,
    ) -> None:
        self.n_iter = n_iter
        self.tol = tol
        self.lambda_worker = lambda_worker
        self.lambda_item = lambda_item
        self.init = init
        self.m_step = m_step
        self.m_step_max_iter = m_step_max_iter
        self.m_step_tol = m_step_tol

    def _basis(self, n_classes: int) -> FloatArray:
        """(K*K, n_params): how the free parameters make a K x K logit matrix (here: one each)."""
        return np.eye(n_classes * n_classes)

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        if self.init not in ("mv", "ds"):
            raise ValueError(f"init must be 'mv' or 'ds', not {self.init!r}")
        if self.m_step not in ("newton", "lbfgs"):
            raise ValueError(f"m_step must be 'newton' or 'lbfgs', not {self.m_step!r}")
        lambda_worker, lambda_item = self._regularisation(coded)
        model = _MinimaxModel(coded, self._basis(coded.n_classes), lambda_worker, lambda_item)
        probas = clamp_gold(self._initial_probas(coded), gold_idx)
        params = np.zeros(model.n_params)
        path: list[float] = []
        n_done = 0
        if model.n_params:
            state: tuple[FloatArray, FloatArray] | None = None
            for _ in range(self.n_iter):
                n_done += 1
                if self.m_step == "lbfgs":
                    params = model.lbfgs_m_step(params, probas, self.m_step_max_iter, self.m_step_tol)
                    state = None
                else:
                    params, state = model.newton_m_step(params, probas, state)
                previous = probas
                probas, objective = model.e_step(params, gold_idx, None if state is None else state[1])
                path.append(objective)
                if np.abs(probas - previous).max() < self.tol:
                    break
        else:
            probas, objective = model.e_step(params, gold_idx)
            path.append(objective)
        workers, items = model.split(params)
        self.worker_params_ = workers
        self.item_params_ = items
        self.sigmas_ = model.logits(workers)
        self.taus_ = model.logits(items)
        self.confusions_ = np.exp(self.sigmas_ - _logsumexp_last(self.sigmas_)[..., None])
        self.skills_ = np.einsum("wcc->w", self.confusions_) / coded.n_classes
        self.probas_ = probas
        self.lambda_worker_ = lambda_worker
        self.lambda_item_ = lambda_item
        self.n_iter_ = n_done
        self.objective_path_ = path
        self.objective_ = path[-1]

    def _regularisation(self, coded: CodedLabels) -> tuple[float, float]:
        lambda_worker = 0.25 * coded.n_classes**2 if self.lambda_worker is None else float(self.lambda_worker)
        if self.lambda_item is None:
            per_worker = coded.n_labels / coded.n_workers
            per_item = coded.n_labels / coded.n_items
            lambda_item = lambda_worker * per_worker / per_item
        else:
            lambda_item = float(self.lambda_item)
        if not lambda_worker > 0 or not lambda_item > 0:
            raise ValueError(
                f"lambda_worker and lambda_item must be > 0, got {lambda_worker!r} and {lambda_item!r}"
            )
        return lambda_worker, lambda_item

    def _initial_probas(self, coded: CodedLabels) -> FloatArray:
        if self.init == "ds":
            from labelmill.quality.dawid_skene import DawidSkene

            start = DawidSkene()
            start._fit_coded(coded, np.full(coded.n_items, -1, dtype=np.intp))
            return start.probas_.copy()
        return normalize_rows(vote_counts(coded))


class OrdinalMinimaxEntropy(MinimaxEntropy):
    r"""Minimax conditional entropy for ordered classes (ratings): errors are judged by thresholds.

    As `MinimaxEntropy`, but the constraints (hence the parameters) only compare the true class
    and the answer with each threshold $s$ between adjacent classes: $\sigma_w(c, l) =
    \sum_{s=2}^{K} \phi_w^{s}([c \ge s], [l \ge s])$, four numbers per threshold and worker
    (and the same for items), instead of a free K x K matrix. A worker who confuses 3 with 4
    then says little about confusing 1 with 5, and an answer one class off costs less than
    one far off; with 4(K - 1) parameters per worker instead of K², sparse workers are
    estimated from far fewer labels. Classes are ordered as `classes_` sorts them.

    D. Zhou, Q. Liu, J. C. Platt and C. Meek, "Aggregating Ordinal Labels from Crowds by
    Minimax Conditional Entropy", ICML 2014 (same fitting and constants as `MinimaxEntropy`).

    Fitted: as `MinimaxEntropy`; `worker_params_[w]` and `item_params_[i]` hold the
    threshold parameters, ordered (c >= s, l >= s), (c >= s, l < s), (c < s, l < s),
    (c < s, l >= s), each over s = 2..K.

    Example:
        >>> truth = [1, 2, 3, 2, 3, 1, 2, 3]  # w4 rates one star low
        >>> rows = [(i, w, t) for i, t in enumerate(truth) for w in ("w1", "w2", "w3")]
        >>> rows += [(i, "w4", max(t - 1, 1)) for i, t in enumerate(truth)]
        >>> list(OrdinalMinimaxEntropy().fit_predict(rows).values()) == truth
        True
    """

    def _basis(self, n_classes: int) -> FloatArray:
        return ordinal_basis(n_classes)


def ordinal_basis(n_classes: int) -> FloatArray:
    """(K*K, 4(K-1)) 0/1 matrix: column (kind, s) is 1 where (true class c, answer l) falls on
    that side of threshold s: kinds (c >= s, l >= s), (c >= s, l < s), (c < s, l < s), (c < s, l >= s)."""
    grid = np.arange(n_classes)
    truth, answer = np.meshgrid(grid, grid, indexing="ij")
    columns = []
    for kind in range(4):
        for s in range(1, n_classes):
            up_truth, up_answer = truth >= s, answer >= s
            side = (
                (up_truth & up_answer),
                (up_truth & ~up_answer),
                (~up_truth & ~up_answer),
                (~up_truth & up_answer),
            )[kind]
            columns.append(side.ravel().astype(np.float64))
    if not columns:
        return np.zeros((n_classes * n_classes, 0))
    return np.stack(columns, axis=1)


class _MinimaxModel:
    """Penalised likelihood, its gradient and the E-step, each a few gathers and sparse products.

    The free parameters are one vector: every worker's, then every item's, `n_basis` each; a
    logit matrix is `basis @ params` (K*K numbers, row-major: true class, then answer).
    """

    def __init__(
        self, coded: CodedLabels, basis: FloatArray, lambda_worker: float, lambda_item: float
    ) -> None:
        self.coded = coded
        self.basis = basis
        self.n_basis = basis.shape[1]
        self.lambda_worker = lambda_worker
        self.lambda_item = lambda_item
        self.n_params = (coded.n_workers + coded.n_items) * self.n_basis
        n = coded.n_labels
        rows = np.arange(n)
        ones = np.ones(n)
        self.by_worker = sp.csr_matrix((ones, (coded.worker_idx, rows)), shape=(coded.n_workers, n))
        self.by_item = sp.csr_matrix((ones, (coded.item_idx, rows)), shape=(coded.n_items, n))
        self.rows = rows
        # (entity * K + answer, label) incidence: sums of posteriors by entity and answer.
        self.by_answer = tuple(
            sp.csr_matrix(
                (ones, (index * coded.n_classes + coded.label_idx, rows)), shape=(size * coded.n_classes, n)
            )
            for index, size in ((coded.worker_idx, coded.n_workers), (coded.item_idx, coded.n_items))
        )
        self.identity = bool(
            basis.shape[0] == basis.shape[1] and np.array_equal(basis, np.eye(basis.shape[0]))
        )

    def split(self, params: FloatArray) -> tuple[FloatArray, FloatArray]:
        n_worker_params = self.coded.n_workers * self.n_basis
        workers = params[:n_worker_params].reshape(self.coded.n_workers, self.n_basis)
        return workers, params[n_worker_params:].reshape(self.coded.n_items, self.n_basis)

    def logits(self, params: FloatArray) -> FloatArray:
        """(entities, K, K) logit matrices (true class, answer) of workers' or items' parameters."""
        k = self.coded.n_classes
        # einsum, not `@`: a threaded BLAS call on a tall thin matrix is slow on a busy machine.
        flat = params if self.identity else np.einsum("eb,kb->ek", params, self.basis)
        return np.asarray(flat).reshape(-1, k, k)

    def _answer_major(self, params: FloatArray) -> FloatArray:
        """(K answers, entities, K true classes): the layout the per-label passes read."""
        return np.ascontiguousarray(self.logits(params).transpose(2, 0, 1))

    def _log_likelihoods(self, params: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per label: (K answers, n, K true classes) answer probabilities and (n, K) log P(answer | c).

        Answers lead the layout so that every reduction over them is K elementwise passes over
        contiguous (n, K) slices, not a reduce along a short last axis (several times slower).
        """
        coded = self.coded
        workers, items = self.split(params)
        # np.take, not fancy indexing on the middle axis: about ten times faster.
        logits = np.take(self._answer_major(workers), coded.worker_idx, axis=1)
        logits += np.take(self._answer_major(items), coded.item_idx, axis=1)
        top = logits[0].copy()
        for answer in range(1, coded.n_classes):
            np.maximum(top, logits[answer], out=top)
        answered = logits[coded.label_idx, self.rows, :] - top
        logits -= top
        np.exp(logits, out=logits)
        total = logits[0].copy()
        for answer in range(1, coded.n_classes):
            total += logits[answer]
        logits /= total
        return logits, answered - np.log(total)

    def penalty(self, params: FloatArray) -> float:
        workers, items = self.split(params)
        return 0.5 * (
            self.lambda_worker * float(np.sum(workers**2)) + self.lambda_item * float(np.sum(items**2))
        )

    def negative_q(self, params: FloatArray, probas: FloatArray) -> tuple[float, FloatArray]:
        """-(expected complete log-likelihood - penalty) and its gradient, for the M-step."""
        coded = self.coded
        k = coded.n_classes
        weights = probas[coded.item_idx]  # (n, K): each label's share of each true class
        residual, log_answer = self._log_likelihoods(params)
        q = float(np.einsum("nc,nc->", weights, log_answer))
        residual *= -weights  # d log P(answer | c) / d logit(c, l) = [l == answer] - P(l | c)
        residual[coded.label_idx, self.rows, :] += weights
        grads = []
        for by_entity, lam, own in zip(
            (self.by_worker, self.by_item),
            (self.lambda_worker, self.lambda_item),
            self.split(params),
            strict=True,
        ):
            per_answer = np.stack([np.asarray(by_entity @ residual[answer]) for answer in range(k)], axis=2)
            flat = per_answer.reshape(-1, k * k)  # (entities, c * K + l)
            grads.append((flat if self.identity else np.einsum("ek,kb->eb", flat, self.basis)) - lam * own)
        gradient = np.concatenate([g.ravel() for g in grads])
        return -(q - self.penalty(params)), -gradient

    def lbfgs_m_step(self, params: FloatArray, probas: FloatArray, max_iter: int, tol: float) -> FloatArray:
        start, _ = self.negative_q(params, probas)
        result = minimize(
            self.negative_q,
            params,
            args=(probas,),
            method="L-BFGS-B",
            jac=True,
            options={"maxiter": max_iter, "gtol": tol, "ftol": tol * 1e-3},
        )
        return np.asarray(result.x) if result.fun <= start else params

    def newton_m_step(
        self, params: FloatArray, probas: FloatArray, state: tuple[FloatArray, FloatArray] | None = None
    ) -> tuple[FloatArray, tuple[FloatArray, FloatArray]]:
        """One Newton step on every worker's parameters, then one on every item's.

        Given the posteriors and the other side, each worker's (item's) objective is concave and
        its own, with a Hessian that is block diagonal over true classes: sum over its labels of
        p_c (diag(P) - P P^T) for the answer distribution P, plus lambda. So a step is a batch of
        small solves. An entity whose objective would drop halves its step (up to MAX_HALVINGS
        times, then keeps its parameters), so the objective never decreases. `state` is
        `_log_likelihoods(params)` when the caller has it; the one at the new parameters is
        returned with them.
        """
        coded = self.coded
        weights = probas[coded.item_idx]
        probs, log_answer = self._log_likelihoods(params) if state is None else state
        for side in (0, 1):
            lam = (self.lambda_worker, self.lambda_item)[side]
            entity_idx = (coded.worker_idx, coded.item_idx)[side]
            own = self.split(params)[side]
            step = self._newton_direction(side, lam, own, probs, weights)
            before = self._entity_objective(entity_idx, lam, own, log_answer, weights)
            for halving in range(MAX_HALVINGS + 1):
                trial = self._with_side(params, side, own + step)
                trial_probs, trial_log_answer = self._log_likelihoods(trial)
                after = self._entity_objective(entity_idx, lam, own + step, trial_log_answer, weights)
                worse = after < before - 1e-12 * np.abs(before)
                if not worse.any():
                    break
                step[worse] *= 0.5 if halving < MAX_HALVINGS - 1 else 0.0
            params, probs, log_answer = trial, trial_probs, trial_log_answer
        return params, (probs, log_answer)

    def _with_side(self, params: FloatArray, side: int, values: FloatArray) -> FloatArray:
        n_worker_params = self.coded.n_workers * self.n_basis
        updated = params.copy()
        if side == 0:
            updated[:n_worker_params] = values.ravel()
        else:
            updated[n_worker_params:] = values.ravel()
        return updated

    def _entity_objective(
        self, entity_idx: IntArray, lam: float, own: FloatArray, log_answer: FloatArray, weights: FloatArray
    ) -> FloatArray:
        per_label = np.einsum("nc,nc->n", weights, log_answer)
        data = np.bincount(entity_idx, weights=per_label, minlength=own.shape[0])
        return np.asarray(data - 0.5 * lam * np.einsum("eb,eb->e", own, own))

    def _newton_direction(
        self, side: int, lam: float, own: FloatArray, probs: FloatArray, weights: FloatArray
    ) -> FloatArray:
        """(entities, n_basis) Newton step of one side's objectives (0: workers, 1: items; the
        other side held fixed)."""
        coded = self.coded
        by_entity = (self.by_worker, self.by_item)[side]
        k = coded.n_classes
        n_entities = by_entity.shape[0]
        weighted = probs * weights  # (K answers, n, K classes): p_c P(l | c)
        expected = np.stack([np.asarray(by_entity @ weighted[a]) for a in range(k)], axis=2)  # [e, c, l]
        # Gradient [e, c, l]: sum p_c ([l == answer] - P(l | c)); the first sum is one sparse
        # product of the (entity, answer) incidence matrix with the posteriors.
        said = np.asarray(self.by_answer[side] @ weights).reshape(n_entities, k, k)
        grad = said.transpose(0, 2, 1) - expected
        # Curvature [e, c, l, m]: sum p_c (delta_lm P_l - P_l P_m), one sparse product per pair.
        hess = np.zeros((n_entities, k, k, k))
        for a in range(k):
            hess[:, :, a, a] += expected[:, :, a]
            for b in range(a, k):
                outer = np.asarray(by_entity @ (weighted[a] * probs[b]))
                hess[:, :, a, b] -= outer
                if b != a:
                    hess[:, :, b, a] -= outer
        if self.identity:  # one K x K solve per entity and true class
            rhs = grad - lam * own.reshape(-1, k, k)
            system = hess + lam * np.eye(k)
            step = np.linalg.solve(system, rhs[..., None])[..., 0]
            return np.asarray(step.reshape(own.shape))
        basis = self.basis.reshape(k, k, -1)  # [c, l, b]
        rhs = np.einsum("ecl,clb->eb", grad, basis) - lam * own
        # B^T H B per entity as two stacked products of small matrices (einsum over all six
        # indices at once is several times slower).
        half = (hess @ basis).reshape(-1, k * k, self.n_basis)  # [e, (c, l), b]
        system = self.basis.T @ half + lam * np.eye(self.n_basis)
        return np.asarray(np.linalg.solve(system, rhs[..., None])[..., 0])

    def e_step(
        self, params: FloatArray, gold_idx: IntArray, log_answer: FloatArray | None = None
    ) -> tuple[FloatArray, float]:
        """Posteriors (uniform class priors) and the penalised log-likelihood per label
        (`log_answer`: the per-label log-likelihoods at `params`, when the caller has them)."""
        if log_answer is None:
            _, log_answer = self._log_likelihoods(params)
        log_post = np.asarray(self.by_item @ log_answer) - np.log(self.coded.n_classes)
        probas, log_evidence = softmax_rows(log_post)
        known = gold_idx >= 0
        if known.any():  # a known item's evidence is the likelihood of its own class
            log_evidence[known] = log_post[known, gold_idx[known]]
        clamp_gold(probas, gold_idx)
        return probas, (float(log_evidence.sum()) - self.penalty(params)) / self.coded.n_labels


def _logsumexp_last(values: FloatArray) -> FloatArray:
    top = values.max(axis=-1)
    return np.asarray(np.log(np.exp(values - top[..., None]).sum(axis=-1)) + top)
