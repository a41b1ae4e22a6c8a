"""EBCC: IBCC with latent subtypes; restarts keep the best ELBO, correlated workers are modelled."""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import digamma, gammaln
from scipy.stats import dirichlet

from labelmill.quality.ebcc import EBCC
from labelmill.quality.ibcc import IBCC


def simulated(
    n_items: int = 150, n_workers: int = 8, n_classes: int = 3, per_item: int = 4, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    skill = rng.uniform(0.4, 0.95, n_workers)
    truth = rng.integers(0, n_classes, n_items)
    item = np.repeat(np.arange(n_items), per_item)
    worker = np.concatenate([rng.choice(n_workers, per_item, replace=False) for _ in range(n_items)])
    right = rng.random(item.size) < skill[worker]
    wrong = (truth[item] + rng.integers(1, max(n_classes, 2), item.size)) % n_classes
    return pd.DataFrame({"item": item, "worker": worker, "label": np.where(right, truth[item], wrong)}), truth


def correlated(seed: int, n_items: int = 600) -> tuple[pd.DataFrame, np.ndarray]:
    """Four workers who fail together on a hidden kind of item, five independent mediocre ones.

    A third of the class-0 items are traps on which each clique worker answers 1 with probability
    0.8; elsewhere the clique is right 85 % of the time. The independent workers are right 70 % of
    the time. An independent-worker model (IBCC) takes the clique's agreement on traps for
    evidence; a subtype of class 0 explains it.
    """
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n_items)
    trap = (truth == 0) & (rng.random(n_items) < 1 / 3)
    rows = []
    for i in range(n_items):
        for w in range(4):
            draw = rng.random()
            label = int(draw < 0.8) if trap[i] else (truth[i] if draw < 0.85 else 1 - truth[i])
            rows.append((i, f"clique{w}", int(label)))
        for w in range(5):
            rows.append((i, f"solo{w}", int(truth[i] if rng.random() < 0.7 else 1 - truth[i])))
    return pd.DataFrame(rows, columns=["item", "worker", "label"]), truth


@settings(max_examples=15)
@given(st.integers(0, 10_000), st.integers(2, 4), st.integers(1, 4), st.booleans())
def test_elbo_never_decreases(seed: int, n_classes: int, n_subtypes: int, with_gold: bool) -> None:
    data, truth = simulated(n_items=50, n_classes=n_classes, seed=seed)
    gold = {i: int(truth[i]) for i in range(0, 50, 6)} if with_gold else None
    model = EBCC(n_subtypes=n_subtypes, n_restarts=2, n_iter=40, tol=0.0, random_state=seed)
    model.fit(data, gold=gold)
    history = np.array(model.elbo_history_)
    assert len(history) == model.n_iter_ + 1
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:]))
    if gold:
        rows = np.searchsorted(model.items_, list(gold))
        np.testing.assert_array_equal(model.probas_[rows].argmax(axis=1), list(gold.values()))
        np.testing.assert_array_equal(model.probas_[rows].max(axis=1), 1.0)


def test_one_subtype_with_a_flat_subtype_prior_is_ibcc() -> None:
    """With one subtype per class, pi is a point mass and EBCC is IBCC, round by round."""
    data, _ = simulated(seed=1)
    ebcc = EBCC(n_subtypes=1, n_restarts=1, class_prior=1.0, n_iter=30, tol=0.0).fit(data)
    ibcc = IBCC(class_prior=1.0, n_iter=30, tol=0.0).fit(data)
    np.testing.assert_allclose(ebcc.probas_, ibcc.probas_, atol=1e-10)
    # The ELBOs differ by the (constant) KL of the one-point subtype distribution: zero.
    np.testing.assert_allclose(ebcc.elbo_history_, ibcc.elbo_history_, rtol=1e-10)
    np.testing.assert_allclose(ebcc.confusions_[:, :, 0, :], ibcc.confusions_, atol=1e-12)


def test_keeps_the_restart_with_the_best_elbo() -> None:
    data, _ = simulated(seed=2, n_classes=2)
    model = EBCC(n_restarts=6, random_state=3).fit(data)
    assert model.restart_elbos_.shape == (6,)
    assert model.best_restart_ == int(np.argmax(model.restart_elbos_))
    assert model.elbo_ == model.restart_elbos_.max()
    # Each restart alone reproduces its own ELBO: restart k of a run is a run's k-th draw.
    single = EBCC(n_restarts=1, random_state=3).fit(data)
    assert single.elbo_ == pytest.approx(model.restart_elbos_[0], rel=1e-12, abs=0.0)
    assert EBCC(n_restarts=6, random_state=3).fit(data).elbo_ >= single.elbo_


def test_deterministic_with_random_state_and_varies_without() -> None:
    data, _ = simulated(seed=4)
    first, again = EBCC(random_state=11).fit(data), EBCC(random_state=11).fit(data)
    np.testing.assert_array_equal(first.probas_, again.probas_)
    np.testing.assert_array_equal(first.restart_elbos_, again.restart_elbos_)
    other = EBCC(random_state=12).fit(data)
    assert not np.array_equal(first.restart_elbos_, other.restart_elbos_)


def test_recovers_the_truth_from_strong_workers() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 4, 300)
    rows = [
        (i, w, int(t) if rng.random() < 0.85 else int((t + 1) % 4))
        for i, t in enumerate(truth)
        for w in range(5)
    ]
    model = EBCC().fit(rows)
    assert np.mean(model.labels_ == truth) >= 0.97
    assert np.all(model.skills_ > 0.7)


def test_correlated_workers_ebcc_beats_ibcc() -> None:
    gains = []
    for seed in range(3):
        data, truth = correlated(seed)
        ibcc_accuracy = np.mean(IBCC().fit(data).labels_ == truth)
        ebcc_accuracy = np.mean(EBCC(random_state=seed).fit(data).labels_ == truth)
        assert ebcc_accuracy >= ibcc_accuracy
        gains.append(ebcc_accuracy - ibcc_accuracy)
    assert np.mean(gains) >= 0.02


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_subtypes": 0}, "n_subtypes must be"),
        ({"n_restarts": 0}, "n_restarts must be"),
        ({"subtype_prior": 0.0}, "subtype_prior must be"),
        ({"class_prior": "flat"}, "class_prior must be"),
        ({"diagonal_prior": -1.0}, "diagonal_prior and off_diagonal_prior must be > 0"),
    ],
)
def test_bad_parameters_fail_in_fit(params: dict[str, object], message: str) -> None:
    data, _ = simulated(n_items=10)
    with pytest.raises(ValueError, match=message):
        EBCC(**params).fit(data)  # type: ignore[arg-type]


# ---- the shared crowd datasets (skipped when absent) ---------------------------------------

#: Accuracy of the authors' reference code (yuan-li/truth-inference-at-scale, code/test_ebcc.ipynb:
#: 10 subtypes, empirical class prior, best ELBO of 40 seeds) on the same public data sets. Not web:
#: the notebook reports 0.769, our best ELBO of 40 seeds gives 0.745 (its IBCC on web is matched).
PUBLISHED_EBCC = {
    "bluebird": 0.861111,
    "rte": 0.93125,
    "dog": 0.840149,
    "d_product": 0.934937,
    "d_possent": 0.961,
    "s_adult": 0.747748,
}
#: Where the model falls more than a point short of crowd-kit's Dawid–Skene (measured, see the report):
#: web and s_rel favour an unsmoothed per-worker confusion, which the diagonal Dirichlet prior pulls back;
#: s_adult's truth covers 333 items; EBCC's bluebird needs more than 5 restarts (40 reach 0.861).
BELOW_CROWDKIT_DS = {
    ("ibcc", "web"),
    ("ibcc", "s_adult"),
    ("ibcc", "s_rel"),
    ("ebcc", "bluebird"),
    ("ebcc", "web"),
    ("ebcc", "s_adult"),
    ("ebcc", "s_rel"),
}
DATASETS = ["bluebird", "rte", "dog", "web", "d_possent", "d_product", "s_adult", "s_rel"]


def load(shared_datasets: Path, name: str) -> tuple[pd.DataFrame, pd.Series]:
    folder = shared_datasets / "crowd" / name
    truth = pd.read_csv(folder / "truth.csv", dtype=str)
    return pd.read_csv(folder / "labels.csv", dtype=str), truth.set_index("item")["label"]


def accuracy(items: np.ndarray, labels: np.ndarray, truth: pd.Series) -> float:
    predicted = pd.Series(labels, index=items).reindex(truth.index)
    return float((predicted.to_numpy() == truth.to_numpy()).mean())


@functools.cache
def crowdkit_ds_accuracy(shared_datasets: Path, name: str) -> float:
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    data, truth = load(shared_datasets, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = crowdkit.DawidSkene(n_iter=100).fit_predict(data.rename(columns={"item": "task"}))
    return accuracy(labels.index.to_numpy(), labels.to_numpy(), truth)


@pytest.mark.parametrize(("name", "n_restarts"), [(n, 40 if n == "bluebird" else 10) for n in PUBLISHED_EBCC])
def test_reproduces_the_reference_code_on_datasets(shared_datasets: Path, name: str, n_restarts: int) -> None:
    data, truth = load(shared_datasets, name)
    model = EBCC(n_restarts=n_restarts).fit(data)
    assert accuracy(model.items_, model.labels_, truth) == pytest.approx(PUBLISHED_EBCC[name], abs=0.0025)


@pytest.mark.parametrize(
    ("method", "name"),
    [
        pytest.param(
            method,
            name,
            marks=[pytest.mark.xfail(strict=True, reason="measured below")]
            if (method, name) in BELOW_CROWDKIT_DS
            else [],
        )
        for method in ("ibcc", "ebcc")
        for name in DATASETS
    ],
)
def test_within_a_point_of_crowdkit_dawid_skene(shared_datasets: Path, method: str, name: str) -> None:
    data, truth = load(shared_datasets, name)
    model = IBCC() if method == "ibcc" else EBCC()
    ours = accuracy(model.fit(data).items_, model.labels_, truth)
    assert ours >= crowdkit_ds_accuracy(shared_datasets, name) - 0.01


# ---- the paper's updates, written out item by item, as an oracle ----------------------------


def paper_rounds(
    rows: list[tuple[int, int, int]],
    joint: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    a_pi: float,
    rounds: int,
) -> tuple[np.ndarray, float]:
    """`rounds` mean-field rounds of Li et al. (2019), one label at a time, then the full ELBO.

    The ELBO is every expectation written out (likelihood, priors, entropies of all factors),
    not the collapsed form the estimator uses.
    """
    n_items, n_classes, n_subtypes = joint.shape
    n_workers = max(w for _, w, _ in rows) + 1
    r = joint.copy()

    def factors(r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        eta = a_pi / n_subtypes + r.sum(axis=0)
        nu = alpha + r.sum(axis=(0, 2))
        mu = np.tile(beta[None, :, None, :], (n_workers, 1, n_subtypes, 1)).astype(float)
        for i, w, label in rows:
            mu[w, :, :, label] += r[i]
        return nu, eta, mu

    def log_means(nu: np.ndarray, eta: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, ...]:
        return (
            digamma(nu) - digamma(nu.sum()),
            digamma(eta) - digamma(eta.sum(axis=1, keepdims=True)),
            digamma(mu) - digamma(mu.sum(axis=3, keepdims=True)),
        )

    for _ in range(rounds):
        log_tau, log_pi, log_v = log_means(*factors(r))
        log_r = np.tile(log_tau[:, None] + log_pi, (n_items, 1, 1))
        for i, w, label in rows:
            log_r[i] += log_v[w, :, :, label]
        r = np.exp(log_r - log_r.max(axis=(1, 2), keepdims=True))
        r /= r.sum(axis=(1, 2), keepdims=True)

    nu, eta, mu = factors(r)
    log_tau, log_pi, log_v = log_means(nu, eta, mu)
    elbo = sum(float(np.sum(r[i] * log_v[w, :, :, label])) for i, w, label in rows)  # E log p(y | z, g, V)
    elbo += float(np.sum(r.sum(axis=(0, 2)) * log_tau) + np.sum(r.sum(axis=0) * log_pi))  # E log p(z, g)
    elbo += float(np.sum((alpha - 1) * log_tau)) - log_beta_function(alpha)  # E log p(tau)
    elbo += float(np.sum((a_pi / n_subtypes - 1) * log_pi)) - n_classes * log_beta_function(
        np.full(n_subtypes, a_pi / n_subtypes)
    )
    for w in range(n_workers):
        for k in range(n_classes):
            for m in range(n_subtypes):
                elbo += float(np.sum((beta[k] - 1) * log_v[w, k, m])) - log_beta_function(beta[k])
                elbo += float(dirichlet.entropy(mu[w, k, m]))
    elbo += float(dirichlet.entropy(nu)) + sum(float(dirichlet.entropy(e)) for e in eta)
    elbo -= float(np.sum(r[r > 0] * np.log(r[r > 0])))
    return r.sum(axis=2), elbo


def log_beta_function(params: np.ndarray) -> float:
    return float(np.sum(gammaln(params)) - gammaln(np.sum(params)))


@pytest.mark.parametrize(("seed", "n_classes", "n_subtypes"), [(0, 2, 3), (1, 3, 2), (2, 3, 4)])
def test_matches_the_papers_updates_written_out(seed: int, n_classes: int, n_subtypes: int) -> None:
    data, _ = simulated(n_items=30, n_workers=5, n_classes=n_classes, per_item=3, seed=seed)
    rows = list(data.itertuples(index=False, name=None))
    votes = np.zeros((30, n_classes))
    for i, _, label in rows:
        votes[i, label] += 1
    start = votes / votes.sum(axis=1, keepdims=True)
    # The estimator's first restart: the majority vote split over subtypes by Dirichlet(1) shares.
    joint = start[:, :, None] * np.random.default_rng(seed).dirichlet(np.ones(n_subtypes), size=start.shape)
    beta = np.full((n_classes, n_classes), 1.0) + 3.0 * np.eye(n_classes)
    expected, elbo = paper_rounds(rows, joint, start.sum(axis=0), beta, 0.1, rounds=8)
    model = EBCC(n_subtypes=n_subtypes, n_restarts=1, n_iter=8, tol=-np.inf, random_state=seed).fit(rows)
    assert model.n_iter_ == 8
    np.testing.assert_allclose(model.probas_, expected, atol=1e-10)
    assert model.elbo_ == pytest.approx(elbo, rel=1e-9)


def test_dropping_empty_subtypes_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import labelmill.quality.ebcc as ebcc_module

    data, truth = simulated(n_items=300, n_classes=3, seed=8)
    gold = {i: int(truth[i]) for i in range(0, 300, 10)}
    widths: list[int] = []
    counts = ebcc_module.answer_counts

    def spy(by_worker_label: object, probas: np.ndarray, n_workers: int) -> np.ndarray:
        widths.append(probas.shape[1])
        return counts(by_worker_label, probas, n_workers)  # type: ignore[arg-type]

    monkeypatch.setattr(ebcc_module, "answer_counts", spy)
    pruned = EBCC(n_restarts=3, random_state=2).fit(data, gold=gold)
    # Columns are runs x live states; 30 states a run while none is dropped.
    assert widths[0] == 3 * 30 and any(width % 30 for width in widths)  # states were dropped
    monkeypatch.setattr(ebcc_module, "DEAD_STATE", 0.0)
    widths.clear()
    full = EBCC(n_restarts=3, random_state=2).fit(data, gold=gold)
    assert all(width % 30 == 0 for width in widths)
    np.testing.assert_allclose(pruned.probas_, full.probas_, atol=1e-9)
    np.testing.assert_allclose(pruned.elbo_history_, full.elbo_history_, rtol=1e-10)
    np.testing.assert_allclose(pruned.restart_elbos_, full.restart_elbos_, rtol=1e-10)
    np.testing.assert_allclose(pruned.confusions_, full.confusions_, atol=1e-9)
    assert pruned.n_iter_ == full.n_iter_
