"""Spectral initialisation for the EM aggregators (Zhang, Chen, Zhou and Jordan).

Y. Zhang, X. Chen, D. Zhou and M. I. Jordan, "Spectral Methods Meet EM: A Provably Optimal
Algorithm for Crowdsourcing", NIPS 2014; Journal of Machine Learning Research 17(102), 2016.
A. Anandkumar, R. Ge, D. Hsu, S. M. Kakade and M. Telgarsky, "Tensor Decompositions for
Learning Latent Variable Models", Journal of Machine Learning Research 15, 2014 (the robust
tensor power method used here).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    IntArray,
    normalize_rows,
    softmax_rows,
    vote_counts,
)

#: Floor of a probability before logs, and of a projected confusion entry.
EPS = 1e-10
#: Pseudo-count spread over each worker's confusion row when it is estimated from posteriors.
WORKER_SMOOTHING = 0.01
#: Fewer items labelled by all three worker groups than this many per class: too sparse, fall back.
MIN_ITEMS_PER_CLASS = 10
#: A pair-moment matrix whose condition number exceeds this cannot be inverted reliably: fall back.
MAX_CONDITION = 1e6
#: Robust tensor power method: random starts and iterations per start (a fixed seed: deterministic).
POWER_STARTS = 20
POWER_ITERATIONS = 50
POWER_SEED = 0


def spectral_confusions(coded: CodedLabels) -> tuple[FloatArray, FloatArray]:
    r"""Each worker's confusion matrix and the class prior, estimated by the method of moments.

    Returns `(confusions, class_prior)` with `confusions[w, c, l]` = P(worker w answers l | true
    class c) (rows sum to one) and `class_prior[c]`, the parameterisation of `DawidSkene`.

    Following Zhang et al. (2016, Algorithm 1): workers are split into three groups (by label
    count, round robin, so the groups are about equally busy); each item gets one averaged
    one-hot answer vector per group, $Z_{gj}$, whose expectation given the true class $k$ is
    the group's (scaled) confusion column $\mu_{gk}$. For each group $c$ in turn, with $a, b$ the
    other two, the pair moments $M_{xy} = \frac1n\sum_j Z_{xj} Z_{yj}^\top$ turn $Z_a$ and $Z_b$
    into $Z'_a = M_{cb} M_{ab}^{-1} Z_a$ and $Z'_b = M_{ca} M_{ba}^{-1} Z_b$, whose expectations
    are $\mu_{ck}$ too; then $M_2 = \frac1n\sum_j Z'_a \otimes Z'_b = \sum_k \rho_k
    \mu_{ck}^{\otimes 2}$ and $M_3 = \frac1n\sum_j Z'_a\otimes Z'_b\otimes Z_c = \sum_k \rho_k
    \mu_{ck}^{\otimes 3}$. Whitening $M_3$ by $M_2$ leaves an orthogonal tensor whose
    eigenpairs (robust tensor power method with deflation) give $\rho_k$ and $\mu_{ck}$. The
    three runs' components are aligned with each other (each run also yields the other groups'
    columns, $M_{xc} = C_x \operatorname{diag}(\rho) C_c^\top$). Each worker's own confusion
    then comes from their moments with the other two groups, $\frac1n\sum_j z_{ij} Z_{bj}^\top =
    C_i \operatorname{diag}(\rho) C_b^\top$, solved for $C_i$ (the paper's second step), with
    `WORKER_SMOOTHING` pseudo-labels a row, clipped at zero and normalised (projected onto the
    simplex). Components are matched to classes by the assignment that maximises the average
    worker's summed diagonal: the paper's assumption that the average worker beats chance,
    taken over all workers rather than per group (so one group of adversaries does not swap
    its classes) and with every worker weighing the same whatever their label count (so a few
    prolific adversaries, who make the majority vote wrong, do not either).

    The moments need each group's (label-weighted) average worker to tell the classes apart:
    a group whose labels are right about as often as chance makes them near singular, and the
    estimate is then poor (EM from it may still recover).

    Fallback: with fewer than three workers or two classes, fewer than `MIN_ITEMS_PER_CLASS`
    items a class labelled by all three groups, a pair-moment matrix too ill-conditioned to
    invert, a whitening matrix not of full rank, or eigenvalues that give no valid prior, the
    moments carry too little to trust, and the confusions are the expected answer counts
    under majority-vote posteriors instead (one M-step, `WORKER_SMOOTHING` pseudo-labels a
    row). `spectral_group_confusions` returns None exactly in those cases.
    """
    fit = _spectral(coded)
    if fit is None:
        probas = normalize_rows(vote_counts(coded))
        return _worker_confusions(coded, probas), _prior(probas)
    workers, _, prior = fit
    return workers, prior


def spectral_group_confusions(coded: CodedLabels) -> tuple[FloatArray, FloatArray] | None:
    """The three worker groups' confusions `[g, c, l]` and the class prior; None when too sparse.

    Workers are assigned to groups by `worker_groups`.
    """
    fit = _spectral(coded)
    return None if fit is None else (fit[1], fit[2])


def _spectral(coded: CodedLabels) -> tuple[FloatArray, FloatArray, FloatArray] | None:
    """Worker confusions, group confusions and class prior; None when the data are too sparse."""
    n_classes = coded.n_classes
    if coded.n_workers < 3 or n_classes < 2:
        return None
    group = worker_groups(coded)
    z = _group_vectors(coded, group)  # (3, n_items, K)
    labelled = np.stack([z[g].sum(axis=1) > 0 for g in range(3)])
    if int(labelled.all(axis=0).sum()) < MIN_ITEMS_PER_CLASS * n_classes:
        return None
    n = float(coded.n_items)
    pair = {(x, y): z[x].T @ z[y] / n for x in range(3) for y in range(3) if x != y}
    if any(np.linalg.cond(m) > MAX_CONDITION for m in pair.values()):
        return None
    runs: list[tuple[FloatArray, FloatArray, FloatArray]] = []
    for c in range(3):
        a, b = (g for g in range(3) if g != c)
        za = z[a] @ np.linalg.solve(pair[(a, b)].T, pair[(c, b)].T)  # rows: M_cb M_ab^-1 Z_a
        zb = z[b] @ np.linalg.solve(pair[(b, a)].T, pair[(c, a)].T)
        recovered = _decompose(za, zb, z[c])
        if recovered is None:
            return None
        weights, columns = recovered  # columns[:, h]: group c's expected answer vector, component h
        # All three groups' columns in this run's component order: M_xc = C_x diag(w) C_c^T.
        try:
            inverse = np.linalg.inv(columns.T) / weights[None, :]
        except np.linalg.LinAlgError:
            return None
        stacked = np.concatenate([columns if x == c else pair[(x, c)] @ inverse for x in range(3)])
        runs.append((weights, columns, stacked))
    # Each run orders its components its own way: align runs 1 and 2 to run 0 by their stacked
    # columns, then give the components classes once, by the permutation with the largest
    # summed diagonal of the average worker (the paper's assumption that the average worker
    # beats chance; a group of its own may be adversarial).
    reference = runs[0][2]
    aligned = []
    for weights, columns, stacked in runs:
        distance = np.linalg.norm(reference[:, :, None] - stacked[:, None, :], axis=0)
        _, match = linear_sum_assignment(distance)  # match[h]: this run's component for run 0's h
        aligned.append((weights[match], columns[:, match]))
    confusions = np.stack([_project(columns.T) for _, columns in aligned])  # [g, component, l]
    prior = np.mean([weights for weights, _ in aligned], axis=0)
    prior /= prior.sum()
    workers = _moment_worker_confusions(coded, group, z, [columns for _, columns in aligned], prior)
    # Components to classes: the permutation with the largest summed diagonal of the average
    # worker, every worker weighing the same (not every label: a few prolific adversaries must
    # not outvote many good workers).
    active = np.bincount(coded.worker_idx, minlength=coded.n_workers) > 0
    _, order = linear_sum_assignment(-workers[active].mean(axis=0).T)  # order[k]: class k's component
    return workers[:, order], confusions[:, order], prior[order]


def _moment_worker_confusions(
    coded: CodedLabels, group: IntArray, z: FloatArray, columns: list[FloatArray], prior: FloatArray
) -> FloatArray:
    r"""Each worker's confusion `[w, component, l]` from their moments with the other two groups.

    For worker $i$ and another group $b$, $\frac1n\sum_j z_{ij} Z_{bj}^\top = C_i
    \operatorname{diag}(\rho) C_b^\top$, where $C_i$ holds the worker's expected answer
    counts per item and class; solved for $C_i$, averaged over both other groups, scaled to
    label counts, smoothed by `WORKER_SMOOTHING` and projected onto the simplex.
    """
    n_classes, n_workers = coded.n_classes, coded.n_workers
    column = coded.worker_idx * n_classes + coded.label_idx
    answers = sp.csr_matrix(
        (np.ones(coded.n_labels), (column, coded.item_idx)), shape=(n_workers * n_classes, coded.n_items)
    )
    estimate = np.zeros((n_workers, n_classes, n_classes))  # [w, l, component]
    for b in range(3):
        with_b = np.asarray(answers @ z[b]).reshape(n_workers, n_classes, n_classes)  # [w, l, l_b]
        solved = with_b @ np.linalg.inv(columns[b].T) / prior[None, None, :]
        estimate += np.where((group != b)[:, None, None], solved, 0.0)
    estimate /= 2.0
    # In label units: scale each worker's matrix to their label count, so smoothing weighs alike.
    counts = np.maximum(estimate, 0.0)
    totals = np.bincount(coded.worker_idx, minlength=n_workers).astype(np.float64)
    counts *= (totals / np.maximum(counts.sum(axis=(1, 2)), EPS))[:, None, None]
    counts = counts.transpose(0, 2, 1) + WORKER_SMOOTHING / n_classes
    return np.asarray(counts / counts.sum(axis=2, keepdims=True))


def worker_groups(coded: CodedLabels) -> IntArray:
    """Each worker's group (0, 1 or 2): by label count, busiest first, dealt round robin."""
    counts = np.bincount(coded.worker_idx, minlength=coded.n_workers)
    order = np.argsort(-counts, kind="stable")
    group = np.empty(coded.n_workers, dtype=np.intp)
    group[order] = np.arange(coded.n_workers) % 3
    return group


def _group_vectors(coded: CodedLabels, group: IntArray) -> FloatArray:
    """(3, n_items, K): each group's one-hot answers on each item, averaged over the group."""
    n_classes = coded.n_classes
    sizes = np.bincount(group, minlength=3).astype(np.float64)
    worker_group = group[coded.worker_idx]
    column = worker_group * n_classes + coded.label_idx
    weights = 1.0 / sizes[worker_group]
    matrix = sp.csr_matrix((weights, (coded.item_idx, column)), shape=(coded.n_items, 3 * n_classes))
    dense = np.asarray(matrix.toarray())
    return np.ascontiguousarray(dense.reshape(coded.n_items, 3, n_classes).transpose(1, 0, 2))


def _decompose(za: FloatArray, zb: FloatArray, zc: FloatArray) -> tuple[FloatArray, FloatArray] | None:
    r"""Weights and components (columns) of $M_2 = \sum_h w_h \mu_h^{\otimes2}$ and $M_3$."""
    n, k = zc.shape
    m2 = za.T @ zb / n
    m2 = (m2 + m2.T) / 2
    values, vectors = np.linalg.eigh(m2)
    top = np.argsort(values)[::-1][:k]
    values, vectors = values[top], vectors[:, top]
    if not values[-1] > EPS * max(values[0], EPS):
        return None
    whiten = vectors / np.sqrt(values)  # W with W^T M2 W = I
    unwhiten = vectors * np.sqrt(values)  # (W^T)^+
    a, b, c = za @ whiten, zb @ whiten, zc @ whiten
    tensor = np.einsum("ja,jb,jc->abc", a, b, c) / n
    tensor = (
        tensor
        + tensor.transpose(0, 2, 1)
        + tensor.transpose(1, 0, 2)
        + tensor.transpose(1, 2, 0)
        + tensor.transpose(2, 0, 1)
        + tensor.transpose(2, 1, 0)
    ) / 6
    eigenvalues, eigenvectors = _tensor_power(tensor)
    if not np.all(np.isfinite(eigenvalues)) or not np.all(eigenvalues > EPS):
        return None
    weights = 1.0 / eigenvalues**2
    columns = unwhiten @ eigenvectors * eigenvalues
    return weights / weights.sum(), columns


def _tensor_power(tensor: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Robust tensor power method with deflation: eigenvalues (k,) and eigenvectors (k, k) as columns."""
    k = tensor.shape[0]
    rng = np.random.default_rng(POWER_SEED)
    residual = tensor.copy()
    eigenvalues = np.empty(k)
    eigenvectors = np.empty((k, k))
    for h in range(k):
        starts = rng.standard_normal((POWER_STARTS, k))
        starts /= np.linalg.norm(starts, axis=1, keepdims=True)
        for _ in range(POWER_ITERATIONS):
            starts = np.einsum("abc,sb,sc->sa", residual, starts, starts)
            starts /= np.maximum(np.linalg.norm(starts, axis=1, keepdims=True), EPS)
        scores = np.einsum("abc,sa,sb,sc->s", residual, starts, starts, starts)
        best = starts[int(np.argmax(scores))]
        for _ in range(POWER_ITERATIONS):
            best = np.einsum("abc,b,c->a", residual, best, best)
            best /= max(float(np.linalg.norm(best)), EPS)
        value = float(np.einsum("abc,a,b,c->", residual, best, best, best))
        eigenvalues[h], eigenvectors[:, h] = value, best
        residual = residual - value * np.einsum("a,b,c->abc", best, best, best)
    return eigenvalues, eigenvectors


def _project(rows: FloatArray) -> FloatArray:
    """Rows clipped at `EPS` and scaled to sum to one."""
    rows = np.maximum(rows, EPS)
    return np.asarray(rows / rows.sum(axis=-1, keepdims=True))


def _worker_confusions(coded: CodedLabels, probas: FloatArray) -> FloatArray:
    """confusions[w, c, l] from expected answer counts under `probas`, lightly smoothed."""
    n_classes = coded.n_classes
    column = coded.worker_idx * n_classes + coded.label_idx
    matrix = sp.csr_matrix(
        (np.ones(coded.n_labels), (column, coded.item_idx)),
        shape=(coded.n_workers * n_classes, coded.n_items),
    )
    counts = np.asarray(matrix @ probas).reshape(coded.n_workers, n_classes, n_classes).transpose(0, 2, 1)
    counts = counts + WORKER_SMOOTHING / n_classes
    return np.asarray(counts / counts.sum(axis=2, keepdims=True))


def _prior(probas: FloatArray) -> FloatArray:
    prior = probas.sum(axis=0) + EPS
    return np.asarray(prior / prior.sum())


def spectral_probas(coded: CodedLabels) -> FloatArray:
    """Item posteriors under `spectral_confusions`: the E-step an EM aggregator starts from."""
    confusions, prior = spectral_confusions(coded)
    logs = np.log(np.maximum(confusions[coded.worker_idx, :, coded.label_idx], EPS))
    scores = _sum_by_item(coded, logs)
    probas, _ = softmax_rows(scores + np.log(prior))
    return probas


def _sum_by_item(coded: CodedLabels, per_label: FloatArray) -> FloatArray:
    """(n_items, K): the rows of `per_label` (n_labels, K) summed by item (a sparse product)."""
    rows = np.arange(coded.n_labels)
    shape = (coded.n_items, coded.n_labels)
    by_item = sp.csr_matrix((np.ones(coded.n_labels), (coded.item_idx, rows)), shape=shape)
    return np.asarray(by_item @ per_label)
