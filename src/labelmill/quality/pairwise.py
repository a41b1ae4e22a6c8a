"""Pairwise preferences and rankings: Bradley–Terry with ties, per-item votes, ranking consensus.

**Bradley–Terry** (Bradley & Terry, "Rank analysis of incomplete block designs", Biometrika
39, 1952): response i has strength ``pi_i = exp(s_i)`` and beats j with probability
``pi_i / (pi_i + pi_j)``. Ties follow either

- Davidson ("On extending the Bradley-Terry model to accommodate ties in paired comparison
  experiments", JASA 65, 1970): ``P(i > j) = pi_i / D``, ``P(tie) = nu sqrt(pi_i pi_j) / D``,
  ``D = pi_i + pi_j + nu sqrt(pi_i pi_j)``; or
- Rao & Kupper ("Ties in paired-comparison experiments: a generalization of the
  Bradley-Terry model", JASA 62, 1967): ``P(i > j) = pi_i / (pi_i + theta pi_j)``, theta > 1.

Both negative log-likelihoods are convex in (s, log nu) and (s, log theta): every term is a
log-sum-exp of affine functions (plus a concave ``log(theta^2 - 1)`` for Rao–Kupper). We add a
ridge prior ``prior / 2 * sum(s^2)`` (a Gaussian prior on log-strengths), which makes the
problem strictly convex, keeps an undefeated or disconnected response finite, and centres the
scores (their sum is 0 at the optimum). The maximum a posteriori estimate is found by damped
Newton steps on that convex objective (exact Hessian for Davidson and plain BT, a
finite-difference one from the exact gradient for Rao–Kupper; conjugate gradients on the
sparse Hessian past a few hundred responses): the same optimum Hunter's MM algorithm ("MM
algorithms for generalized Bradley-Terry models", Ann. Statist. 32, 2004) climbs to, in a
handful of iterations instead of hundreds, with the tie parameter fitted jointly.

**Per-item votes** (`pairwise_consensus`): on one prompt every annotator answers a, b or tie
for the same two responses, so there is nothing for BT to pool; the consensus is the
posterior of a one-coin annotator model (each annotator is right with probability p_w,
otherwise picks one of the two other answers at random), fitted by EM across items. This is
Dawid & Skene (1979) with one parameter per annotator; p_w is the annotator's skill, its
soft agreement with consensus.

**Rankings** (`ranking_consensus`): a ranking ``["r2", "r1", "r3"]`` is the m(m-1)/2
pairwise wins it implies (the "rank breaking" of Azari Soufiani et al., NeurIPS 2013) fitted
by BT; a Borda count (points = responses ranked below) is the baseline. Confidence is the
(weighted) mean Kendall tau (Kendall, Biometrika 30, 1938) of the annotators' rankings to the
consensus, clipped at 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import coo_matrix, diags, issparse
from scipy.sparse.linalg import cg

__all__ = [
    "BradleyTerry",
    "Comparison",
    "PairwiseConsensus",
    "RankingConsensus",
    "kendall_tau",
    "pairwise_consensus",
    "pairwise_skills",
    "ranking_consensus",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.intp]
CHOICES = ("a", "b", "tie")
TIES = ("davidson", "rao-kupper", "half", "drop")
_TIE_PRIOR = 1e-3
_DENSE_LIMIT = 600  # above this many parameters Newton solves a sparse Hessian


class Comparison(NamedTuple):
    """One annotator's answer on one pairwise item."""

    item: Hashable
    worker: Hashable
    response_a: Hashable
    response_b: Hashable
    choice: str


class PairwiseConsensus(NamedTuple):
    """Consensus answer of one pairwise item and its posterior probability."""

    choice: str
    confidence: float


class RankingConsensus(NamedTuple):
    """Consensus ranking of one item's responses, best first."""

    order: list[Hashable]
    confidence: float
    scores: dict[Hashable, float]
    agreement: dict[Hashable, float]


def _sorted_ids(ids: Iterable[Hashable]) -> list[Hashable]:
    unique = list(dict.fromkeys(ids))
    try:
        return sorted(unique)  # type: ignore[type-var]
    except TypeError:
        return sorted(unique, key=repr)


def _comparisons(comparisons: Any) -> list[Comparison]:
    """Rows as `Comparison` from 5-tuples, 3-tuples (a, b, choice), mappings or a DataFrame."""
    if hasattr(comparisons, "columns"):
        cols = comparisons.columns
        item = list(comparisons["item"]) if "item" in cols else [None] * len(comparisons)
        worker = list(comparisons["worker"]) if "worker" in cols else [None] * len(comparisons)
        rows: Iterable[Any] = zip(
            item,
            worker,
            comparisons["response_a"],
            comparisons["response_b"],
            comparisons["choice"],
            strict=True,
        )
    else:
        rows = comparisons
    out: list[Comparison] = []
    for n, row in enumerate(rows):
        try:
            if isinstance(row, Mapping):
                c = Comparison(
                    row.get("item"), row.get("worker"), row["response_a"], row["response_b"], row["choice"]
                )
            elif len(row) == 3:
                c = Comparison(None, None, *row)
            else:
                c = Comparison(*row)
        except (KeyError, TypeError):
            raise ValueError(
                f"comparisons row {n}: expected (item, worker, response_a, response_b, choice), got {row!r}"
            ) from None
        if c.choice not in CHOICES:
            raise ValueError(
                f"comparisons row {n}, field 'choice': expected 'a', 'b' or 'tie', got {c.choice!r}"
            )
        if c.response_a == c.response_b:
            raise ValueError(f"comparisons row {n}: a response is compared with itself ({c.response_a!r})")
        out.append(c)
    return out


# --------------------------------------------------------------------------- Bradley–Terry


def _logsumexp_rows(u: FloatArray) -> FloatArray:
    """Row-wise log-sum-exp (scipy's is ~10x slower on the small arrays of one item)."""
    top = u.max(axis=1)
    return top + np.log(np.exp(u - top[:, None]).sum(axis=1))


#: Davidson's three outcome logits (a wins, b wins, tie) are linear in (s_a, s_b, log nu).
_DAVIDSON = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 1.0]])


def _local_davidson(
    local: FloatArray, y: IntArray, tie_model: bool, hessian: bool
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """Per comparison: -log p(y), its gradient and Hessian in (s_a, s_b, log nu).

    A log-sum-exp of linear logits ``u = M x``: gradient ``M^T (p - e_y)``, Hessian
    ``M^T (diag p - p p^T) M``. Without ties the model is plain Bradley–Terry.
    """
    m = _DAVIDSON if tie_model else _DAVIDSON[:2]
    u = local @ m.T
    lse = _logsumexp_rows(u)
    p = np.exp(u - lse[:, None])
    rows = np.arange(len(y))
    nll = lse - u[rows, y]
    gu = p.copy()
    gu[rows, y] -= 1.0
    if not hessian:
        return nll, gu @ m, None
    hu = p[:, :, None] * np.eye(len(m))[None] - p[:, :, None] * p[:, None, :]
    return nll, gu @ m, np.einsum("ki,nkl,lj->nij", m, hu, m)


def _local_rao_kupper_grad(local: FloatArray, y: IntArray) -> tuple[FloatArray, FloatArray]:
    """Per comparison: -log p(y) and its gradient in (s_a, s_b, log theta)."""
    sa, sb, t = local[:, 0], local[:, 1], local[:, 2]
    lse1 = np.logaddexp(sa, t + sb)  # a's denominator: pi_a + theta pi_b
    lse2 = np.logaddexp(sb, t + sa)
    q1b = np.exp(t + sb - lse1)  # d lse1 / d s_b (and / d t)
    q2a = np.exp(t + sa - lse2)  # d lse2 / d s_a (and / d t)
    log_tie_const = 2 * t + np.log(-np.expm1(-2 * t))  # log(theta^2 - 1)
    win_a, win_b = y == 0, y == 1
    ll = np.where(win_a, sa - lse1, np.where(win_b, sb - lse2, log_tie_const + sa + sb - lse1 - lse2))
    ga = np.where(win_a, -q1b, np.where(win_b, q2a, q2a - q1b))
    gb = np.where(win_a, q1b, np.where(win_b, -q2a, q1b - q2a))
    gt = np.where(win_a, q1b, np.where(win_b, q2a, 2 / np.expm1(-2 * t) + q1b + q2a))
    return -ll, np.stack([ga, gb, gt], axis=1)


def _local_rao_kupper(
    local: FloatArray, y: IntArray, hessian: bool
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """As `_local_davidson`; the 3x3 Hessian by central differences of the exact gradient."""
    nll, grad = _local_rao_kupper_grad(local, y)
    if not hessian:
        return nll, grad, None
    step = np.minimum(1e-5, local[:, 2] / 2)
    cols = []
    for d in range(3):
        shift = np.zeros_like(local)
        shift[:, d] = step
        cols.append(_local_rao_kupper_grad(local + shift, y)[1] - _local_rao_kupper_grad(local - shift, y)[1])
    h = np.stack(cols, axis=2) / (2 * step)[:, None, None]
    return nll, grad, (h + h.transpose(0, 2, 1)) / 2


class _Objective:
    """Negative log-posterior of strengths (and the tie parameter) over merged comparisons."""

    def __init__(
        self, a: IntArray, b: IntArray, y: IntArray, w: FloatArray, n: int, model: str, prior: float
    ):
        self.a, self.b, self.y, self.w, self.n = a, b, y, w, n
        self.model, self.prior = model, prior
        self.k = 2 if model == "bt" else 3  # local parameters per comparison
        self.size = n + (self.k - 2)
        self.index = np.stack([a, b, np.full(len(a), n)], axis=1)[:, : self.k]

    def feasible(self, x: FloatArray) -> bool:
        return self.model != "rao-kupper" or x[self.n] > 1e-9

    def __call__(self, x: FloatArray, hessian: bool) -> tuple[float, FloatArray, Any]:
        local = x[self.index] if self.k == 3 else np.hstack([x[self.index], np.zeros((len(self.a), 1))])
        if self.model == "rao-kupper":
            nll, g, h = _local_rao_kupper(local, self.y, hessian)
        else:
            nll, g, h = _local_davidson(local, self.y, self.model == "davidson", hessian)
        g = g[:, : self.k] * self.w[:, None]
        # ridge on log-strengths; a very weak one on the tie parameter keeps all-tie data finite
        ridge = np.full(self.size, self.prior)
        ridge[self.n :] = _TIE_PRIOR
        value = float(self.w @ nll) + float(ridge @ x**2) / 2
        grad = np.bincount(self.index.ravel(), g.ravel(), minlength=self.size) + ridge * x
        if h is None:
            return value, grad, None
        h = h[:, : self.k, : self.k] * self.w[:, None, None]
        rows = np.repeat(self.index, self.k, axis=1).ravel()
        cols = np.tile(self.index, (1, self.k)).ravel()
        if self.size > _DENSE_LIMIT:  # many responses: the comparison graph is sparse, so is H
            sparse = coo_matrix((h.ravel(), (rows, cols)), shape=(self.size, self.size)).tocsc()
            return value, grad, sparse + diags(ridge, format="csc")
        flat = np.bincount(rows * self.size + cols, h.ravel(), minlength=self.size * self.size)
        return value, grad, flat.reshape(self.size, self.size).astype(np.float64) + np.diag(ridge)


def _sparse_step(hess: Any, grad: FloatArray) -> FloatArray:
    """Newton-CG: solve H step = grad by Jacobi-preconditioned conjugate gradients.

    A direct sparse factorisation fills in badly on a well-mixed comparison graph; CG only
    needs products with H, and the ridge prior keeps H well conditioned.
    """
    preconditioner = diags(1.0 / hess.diagonal())
    step, _ = cg(hess, grad, rtol=1e-10, maxiter=500, M=preconditioner)
    return np.asarray(step, dtype=np.float64)


def _newton(objective: _Objective, x: FloatArray, max_iter: int, tol: float) -> tuple[FloatArray, float, int]:
    """Damped Newton: exact (or finite-difference) Hessian, Armijo backtracking, convex objective."""
    value, grad, hess = objective(x, True)
    n_iter = 0
    for n_iter in range(1, max_iter + 1):  # noqa: B007 - n_iter is reported
        try:
            step = _sparse_step(hess, grad) if issparse(hess) else np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            step = grad
        if not np.all(np.isfinite(step)) or grad @ step <= 0:
            step = grad
        alpha, decrease = 1.0, float(grad @ step)
        while alpha > 1e-12:
            candidate = x - alpha * step
            if objective.feasible(candidate):
                new_value = objective(candidate, False)[0]
                if new_value <= value - 1e-4 * alpha * decrease:
                    break
            alpha /= 2
        else:
            break  # no decrease left at machine precision: converged
        x = candidate
        if float(np.max(np.abs(alpha * step))) < tol:
            value = new_value
            break
        value, grad, hess = objective(x, True)
    return x, value, n_iter


class BradleyTerry:
    """Bradley–Terry strengths of responses from pairwise comparisons, with ties.

    Parameters: `ties` is ``"davidson"`` (default), ``"rao-kupper"``, ``"half"`` (a tie is half
    a win each way, plain BT) or ``"drop"``; `prior` is the ridge strength on log-strengths
    (a fixed, much weaker one on the tie parameter keeps data made only of ties finite).

    Fitted attributes: ``items_`` (response ids, sorted), ``scores_`` (``{response: log-strength}``),
    ``ranking_`` (response ids, best first), ``tie_`` (Davidson's nu or Rao–Kupper's theta;
    0 or 1 when the data holds no ties), ``log_likelihood_`` and ``n_iter_``.

    >>> bt = BradleyTerry().fit([("x", "y", "a"), ("x", "y", "a"), ("x", "y", "tie")])
    >>> bt.ranking_
    ['x', 'y']
    """

    def __init__(
        self, ties: str = "davidson", *, prior: float = 0.1, max_iter: int = 100, tol: float = 1e-10
    ) -> None:
        self.ties = ties
        self.prior = prior
        self.max_iter = max_iter
        self.tol = tol

    def fit(self, comparisons: Any, weights: ArrayLike | None = None) -> BradleyTerry:
        """Fit on comparisons: rows (item, worker, response_a, response_b, choice) or (a, b, choice).

        `weights` (one per row, e.g. the annotator's skill) scale each comparison's log-likelihood.
        The fit is invariant to row order and to swapping a row's sides (with its choice).
        """
        if self.ties not in TIES:
            raise ValueError(f"ties must be one of {TIES}; got {self.ties!r}")
        if not self.prior > 0:
            raise ValueError(
                f"prior must be positive (it keeps undefeated responses finite); got {self.prior}"
            )
        rows = _comparisons(comparisons)
        if not rows:
            raise ValueError("comparisons: nothing to fit (no rows)")
        w = np.ones(len(rows)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(rows),) or np.any(~np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights: one finite non-negative weight per comparison")
        self.items_ = _sorted_ids([r.response_a for r in rows] + [r.response_b for r in rows])
        index = {item: k for k, item in enumerate(self.items_)}
        a = np.array([index[r.response_a] for r in rows], dtype=np.intp)
        b = np.array([index[r.response_b] for r in rows], dtype=np.intp)
        y = np.array([CHOICES.index(r.choice) for r in rows], dtype=np.intp)
        a, b, y, w = self._canonical(a, b, y, w)
        n = len(self.items_)
        has_ties = bool(np.any(y == 2))
        model = ("rao-kupper" if self.ties == "rao-kupper" else "davidson") if has_ties else "bt"
        objective = _Objective(a, b, y, w, n, model, self.prior)
        x0 = np.zeros(objective.size)
        if model == "rao-kupper":
            x0[n] = 0.5
        x, value, self.n_iter_ = _newton(objective, x0, self.max_iter, self.tol)
        if model == "bt":
            self.tie_ = 1.0 if self.ties == "rao-kupper" else 0.0
        else:
            self.tie_ = float(np.exp(x[n]))
        s = x[:n]
        self.scores_ = {item: float(s[k]) for k, item in enumerate(self.items_)}
        self.ranking_ = [self.items_[k] for k in sorted(range(n), key=lambda k: -s[k])]
        ridge = self.prior * float(s @ s) + _TIE_PRIOR * float(x[n:] @ x[n:])
        self.log_likelihood_ = -value + ridge / 2
        return self

    def _canonical(
        self, a: IntArray, b: IntArray, y: IntArray, w: FloatArray
    ) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
        """Orient every pair low id first, apply the tie policy, and merge duplicate rows."""
        swap = a > b
        a, b = np.where(swap, b, a), np.where(swap, a, b)
        y = np.where(swap & (y < 2), 1 - y, y)
        if self.ties == "drop":
            keep = y != 2
            a, b, y, w = a[keep], b[keep], y[keep], w[keep]
        elif self.ties == "half":
            tie = y == 2
            a, b = np.concatenate([a, a[tie]]), np.concatenate([b, b[tie]])
            y = np.concatenate([np.where(tie, 0, y), np.ones(int(tie.sum()), dtype=np.intp)])
            w = np.concatenate([np.where(tie, w / 2, w), w[tie] / 2])
        n = int(max(a.max(initial=0), b.max(initial=0))) + 1
        key = (a * n + b) * 3 + y
        unique, inverse = np.unique(key, return_inverse=True)
        merged = np.bincount(inverse, weights=w, minlength=len(unique)).astype(np.float64)
        pair, y_u = np.divmod(unique, 3)
        a_u, b_u = np.divmod(pair, n)
        return a_u.astype(np.intp), b_u.astype(np.intp), y_u.astype(np.intp), merged

    def predict_proba(self, pairs: Iterable[tuple[Hashable, Hashable]]) -> FloatArray:
        """Probabilities of (a wins, b wins, tie) for each (response_a, response_b); unseen ids score 0."""
        pairs = list(pairs)
        sa = np.array([self.scores_.get(p[0], 0.0) for p in pairs])
        sb = np.array([self.scores_.get(p[1], 0.0) for p in pairs])
        if self.ties == "rao-kupper":
            theta = self.tie_
            pa = 1 / (1 + theta * np.exp(sb - sa))
            pb = 1 / (1 + theta * np.exp(sa - sb))
            return np.stack([pa, pb, 1 - pa - pb], axis=1)
        u = np.stack([sa, sb, np.log(max(self.tie_, 1e-300)) + (sa + sb) / 2], axis=1).astype(np.float64)
        return np.exp(u - _logsumexp_rows(u)[:, None])


# --------------------------------------------------------------------------- per-item votes


def _oriented_votes(
    rows: list[Comparison],
) -> tuple[list[Hashable], list[Hashable], IntArray, IntArray, IntArray]:
    """Items, workers, and integer-coded votes in each item's majority orientation."""
    seen: dict[Hashable, dict[tuple[Hashable, Hashable], int]] = {}
    for n, r in enumerate(rows):
        if r.item is None:
            raise ValueError(f"comparisons row {n}: pairwise consensus needs the item of every comparison")
        orient = seen.setdefault(r.item, {})
        orient[(r.response_a, r.response_b)] = orient.get((r.response_a, r.response_b), 0) + 1
    canonical: dict[Hashable, tuple[Hashable, Hashable]] = {}
    for item, orient in seen.items():
        pairs = {frozenset(p) for p in orient}
        if len(pairs) > 1:
            raise ValueError(
                f"item {item!r} compares more than one pair of responses; "
                "use BradleyTerry or ranking_consensus for several responses per item"
            )
        top = max(orient.values())
        canonical[item] = _sorted_ids([p for p, count in orient.items() if count == top])[0]  # type: ignore[assignment]
    items = _sorted_ids(seen)
    workers = _sorted_ids(r.worker for r in rows)
    item_index = {item: k for k, item in enumerate(items)}
    worker_index = {worker: k for k, worker in enumerate(workers)}
    i = np.array([item_index[r.item] for r in rows], dtype=np.intp)
    w = np.array([worker_index[r.worker] for r in rows], dtype=np.intp)
    v = np.array(
        [
            CHOICES.index(r.choice)
            if (r.response_a, r.response_b) == canonical[r.item] or r.choice == "tie"
            else 1 - CHOICES.index(r.choice)
            for r in rows
        ],
        dtype=np.intp,
    )
    order = np.lexsort((v, w, i))  # canonical row order: sums, hence ties, ignore input order
    return items, workers, i[order], w[order], v[order]


def _one_coin_posterior(
    i: IntArray, v: IntArray, skill_per_label: FloatArray, n_items: int, prior: FloatArray
) -> FloatArray:
    p = np.clip(skill_per_label, 1e-3, 1 - 1e-3)
    wrong = np.log((1 - p) / 2)
    log_t = np.log(prior)[None, :] + np.bincount(i, wrong, minlength=n_items)[:, None].astype(np.float64)
    log_t += np.bincount(i * 3 + v, np.log(p) - wrong, minlength=3 * n_items).reshape(n_items, 3)
    return np.exp(log_t - _logsumexp_rows(log_t)[:, None])


def _fit_votes(
    rows: list[Comparison], skills: Mapping[Any, float] | None, max_iter: int
) -> tuple[list[Hashable], list[Hashable], FloatArray, FloatArray]:
    items, workers, i, w, v = _oriented_votes(rows)
    n_items, n_workers = len(items), len(workers)
    counts = np.bincount(w, minlength=n_workers).astype(np.float64)
    if skills is not None:
        fallback = float(np.mean(list(skills.values()))) if skills else 0.7
        p_w = np.array([float(skills.get(worker, fallback)) for worker in workers])
        posterior = _one_coin_posterior(i, v, p_w[w], n_items, np.full(3, 1 / 3))
        return items, workers, posterior, p_w
    posterior = np.bincount(i * 3 + v, minlength=3 * n_items).reshape(n_items, 3).astype(np.float64)
    posterior /= posterior.sum(axis=1, keepdims=True)
    p_w = np.full(n_workers, 0.7)
    for _ in range(max_iter):
        p_w = (np.bincount(w, posterior[i, v], minlength=n_workers) + 1.0) / (counts + 2.0)
        prior = (posterior.sum(axis=0) + 1.0) / (n_items + 3.0)
        new = _one_coin_posterior(i, v, p_w[w], n_items, prior)
        change = float(np.abs(new - posterior).max())
        posterior = new
        if change < 1e-9:
            break
    return items, workers, posterior, p_w


def pairwise_consensus(
    labels: Any,
    *,
    skills: Mapping[Any, float] | None = None,
    max_iter: int = 100,
) -> dict[Hashable, PairwiseConsensus]:
    """Consensus answer (a, b or tie) per pairwise item, with its posterior probability.

    `labels` are (item, worker, response_a, response_b, choice) rows. Annotators may have seen
    the two responses in either order; answers are turned to the orientation most of them saw
    (``choice`` refers to that one). With `skills` (annotator id -> probability of answering
    right) those are used as they are; otherwise they are fitted by EM (module docstring).
    """
    rows = _comparisons(labels)
    if not rows:
        return {}
    items, _, posterior, _ = _fit_votes(rows, skills, max_iter)
    best = np.argmax(posterior, axis=1)
    return {
        item: PairwiseConsensus(CHOICES[int(best[k])], float(posterior[k, best[k]]))
        for k, item in enumerate(items)
    }


def pairwise_skills(labels: Any, *, max_iter: int = 100) -> dict[Hashable, float]:
    """Each annotator's skill: its (smoothed, soft) agreement with the consensus, in [0, 1]."""
    rows = _comparisons(labels)
    if not rows:
        return {}
    _, workers, _, p_w = _fit_votes(rows, None, max_iter)
    return {worker: float(p) for worker, p in zip(workers, p_w, strict=True)}


# --------------------------------------------------------------------------- rankings


def kendall_tau(a: Sequence[Hashable], b: Sequence[Hashable]) -> float:
    """Kendall's tau-a between two rankings (best first) over the responses both contain.

    1 when they order every common pair alike, -1 when reversed; 1 with fewer than two common
    responses, where there is nothing to disagree on.
    """
    pos_b = {item: k for k, item in enumerate(b)}
    common = [item for item in a if item in pos_b]
    if len(common) < 2:
        return 1.0
    rank_b = np.array([pos_b[item] for item in common], dtype=np.float64)
    upper = np.triu_indices(len(common), 1)
    signs = np.sign(rank_b[None, :] - rank_b[:, None])[upper]
    return float(signs.mean())


def _rankings(item: Hashable, value: Any) -> tuple[list[Hashable], list[list[Hashable]]]:
    pairs = list(value.items()) if isinstance(value, Mapping) else list(enumerate(value))
    workers, rankings = [], []
    for worker, ranking in pairs:
        if isinstance(ranking, (str, bytes)) or not isinstance(ranking, Sequence):
            raise ValueError(f"item {item!r}, annotator {worker!r}: a ranking is a list of response ids")
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"item {item!r}, annotator {worker!r}: a response appears twice in {ranking!r}")
        workers.append(worker)
        rankings.append(list(ranking))
    return workers, rankings


#: Per item: annotator id -> ranking, or a plain list of rankings.
RankingsPerItem = Mapping[Any, Mapping[Any, Sequence[Hashable]] | Sequence[Sequence[Hashable]]]


def ranking_consensus(
    rankings_per_item: RankingsPerItem,
    *,
    method: str = "bradley_terry",
    weights: Mapping[Any, float] | None = None,
    prior: float = 0.1,
) -> dict[Hashable, RankingConsensus]:
    """Consensus ranking per item from several annotators' rankings (best first).

    Each item maps annotator ids to rankings (or is a plain list of rankings). `method` is
    ``"bradley_terry"`` (rank breaking + BT, ties in score broken by Borda then id) or
    ``"borda"``. `weights` (annotator id -> skill) weight the pairwise wins, the Borda points
    and the Kendall-tau confidence. ``scores`` are BT log-strengths or Borda points;
    ``agreement`` is each annotator's Kendall tau to the consensus.
    """
    if method not in ("bradley_terry", "borda"):
        raise ValueError(f"method must be 'bradley_terry' or 'borda'; got {method!r}")
    out: dict[Hashable, RankingConsensus] = {}
    for item, value in rankings_per_item.items():
        workers, rankings = _rankings(item, value)
        w = np.array([1.0 if weights is None else float(weights.get(k, 1.0)) for k in workers])
        responses = _sorted_ids(r for ranking in rankings for r in ranking)
        borda = dict.fromkeys(responses, 0.0)
        comparisons: list[tuple[Hashable, Hashable, str]] = []
        comparison_weights: list[float] = []
        for ranking, wk in zip(rankings, w, strict=True):
            for pos, response in enumerate(ranking):
                borda[response] += float(wk) * (len(ranking) - 1 - pos)
                comparisons.extend((response, lower, "a") for lower in ranking[pos + 1 :])
                comparison_weights.extend([float(wk)] * (len(ranking) - 1 - pos))
        tiebreak = {r: k for k, r in enumerate(responses)}
        if method == "borda" or not comparisons:
            scores = borda
            order = sorted(responses, key=lambda r: (-round(borda[r], 9), tiebreak[r]))
        else:
            bt = BradleyTerry(ties="drop", prior=prior).fit(comparisons, weights=comparison_weights)
            scores = dict(bt.scores_)
            order = sorted(responses, key=lambda r: (-round(scores[r], 9), -round(borda[r], 9), tiebreak[r]))
        taus = np.array([kendall_tau(ranking, order) for ranking in rankings])
        total = float(w.sum())
        confidence = float(np.clip(taus @ w / total, 0.0, 1.0)) if total > 0 else 0.0
        agreement = {worker: float(t) for worker, t in zip(workers, taus, strict=True)}
        out[item] = RankingConsensus(order, confidence, scores, agreement)
    return out
