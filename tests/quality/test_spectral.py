"""Spectral (method-of-moments) confusions of Zhang et al., and DawidSkene(init="spectral")."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.quality._codes import CodedLabels, encode, normalize_rows, vote_counts
from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.spectral import (
    WORKER_SMOOTHING,
    spectral_confusions,
    spectral_group_confusions,
    spectral_probas,
)


def simulate(
    confusions: np.ndarray, prior: np.ndarray, rates: np.ndarray, n_items: int, seed: int
) -> tuple[CodedLabels, np.ndarray]:
    """Labels drawn from Dawid–Skene: worker w labels each item with probability rates[w]."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(len(prior), size=n_items, p=prior)
    item, worker = np.nonzero(rng.random((n_items, len(rates))) < rates)
    cumulative = confusions[worker, truth[item]].cumsum(axis=1)
    label = (rng.random(len(item))[:, None] > cumulative).sum(axis=1)
    label = np.minimum(label, len(prior) - 1)
    coded = encode({"item": item, "worker": worker, "label": label}, classes=list(range(len(prior))))
    return coded, truth[np.asarray(coded.items, dtype=np.intp)]


def random_confusions(n_workers: int, n_classes: int, seed: int) -> np.ndarray:
    """Workers better than chance, each with their own accuracy and off-diagonal mistakes."""
    rng = np.random.default_rng(seed)
    confusions = np.empty((n_workers, n_classes, n_classes))
    for w in range(n_workers):
        accuracy = rng.uniform(0.5, 0.9)
        for c in range(n_classes):
            others = rng.dirichlet(np.full(n_classes - 1, 2.0)) * (1 - accuracy)
            confusions[w, c] = np.insert(others, c, accuracy)
    return confusions


def expected_counts_tolerance(coded: CodedLabels, truth: np.ndarray) -> np.ndarray:
    """(W, C, 1): six standard errors of a confusion entry counted from a worker's row with known
    truth (the moments, which do not know the truth, are noisier than that count)."""
    rows = np.zeros((coded.n_workers, coded.n_classes))
    np.add.at(rows, (coded.worker_idx, truth[coded.item_idx]), 1.0)
    return 6.0 * np.sqrt(0.25 / np.maximum(rows, 1.0))[:, :, None]


@pytest.mark.parametrize(
    ("n_classes", "n_workers", "n_items", "seed"), [(2, 9, 2000, 0), (3, 12, 3000, 1), (4, 15, 4000, 2)]
)
def test_recovers_known_confusions_and_prior(n_classes: int, n_workers: int, n_items: int, seed: int) -> None:
    prior = np.linspace(2.0, 1.0, n_classes)
    prior /= prior.sum()
    truth_confusions = random_confusions(n_workers, n_classes, seed)
    coded, truth = simulate(truth_confusions, prior, np.full(n_workers, 0.5), n_items, seed)
    assert spectral_group_confusions(coded) is not None  # the moments, not the fallback
    confusions, class_prior = spectral_confusions(coded)
    assert confusions.shape == (n_workers, n_classes, n_classes)
    np.testing.assert_allclose(confusions.sum(axis=2), 1.0)
    error = np.abs(confusions - truth_confusions)
    assert np.all(error <= expected_counts_tolerance(coded, truth))
    # The diagonal is recovered where it belongs: classes are not swapped.
    # Classes are not swapped: of all relabellings of the estimate, the identity fits the truth best.
    misfit = {
        order: np.abs(confusions[:, order][:, :, order] - truth_confusions).mean()
        for order in itertools.permutations(range(n_classes))
    }
    assert min(misfit, key=misfit.__getitem__) == tuple(range(n_classes))
    np.testing.assert_allclose(class_prior, prior, atol=4.0 * np.sqrt(0.25 / n_items) + 0.02)


def test_resolves_the_permutation_by_class_names() -> None:
    """Renaming the classes renames the estimate the same way (no component lands on a wrong class)."""
    n_classes, n_workers = 3, 12
    prior = np.array([0.5, 0.3, 0.2])
    coded, _ = simulate(random_confusions(n_workers, n_classes, 3), prior, np.full(n_workers, 0.5), 3000, 3)
    confusions, class_prior = spectral_confusions(coded)
    rename = np.array([2, 0, 1])  # class c is called rename[c]
    renamed = CodedLabels(
        coded.item_idx, coded.worker_idx, rename[coded.label_idx], coded.items, coded.workers, coded.classes
    )
    renamed_confusions, renamed_prior = spectral_confusions(renamed)
    np.testing.assert_allclose(renamed_prior[rename], class_prior, atol=1e-8)
    np.testing.assert_allclose(renamed_confusions[:, rename][:, :, rename], confusions, atol=1e-8)
    assert np.argmax(class_prior) == 0 and np.argmin(class_prior) == 2


def test_is_deterministic() -> None:
    coded, _ = simulate(random_confusions(9, 3, 4), np.full(3, 1 / 3), np.full(9, 0.4), 1500, 4)
    first, second = spectral_confusions(coded), spectral_confusions(coded)
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def majority_fallback(coded: CodedLabels) -> tuple[np.ndarray, np.ndarray]:
    probas = normalize_rows(vote_counts(coded))
    counts = np.zeros((coded.n_workers, coded.n_classes, coded.n_classes))
    for i, w, label in zip(coded.item_idx, coded.worker_idx, coded.label_idx, strict=True):
        counts[w, :, label] += probas[i]
    counts += WORKER_SMOOTHING / coded.n_classes
    prior = probas.sum(axis=0) / probas.sum()
    return counts / counts.sum(axis=2, keepdims=True), prior


@pytest.mark.parametrize(
    "rows",
    [
        [("a", "w1", 1), ("a", "w2", 1), ("b", "w1", 0), ("b", "w2", 1)],  # two workers
        [("a", "w1", 1), ("b", "w2", 0), ("c", "w3", 1), ("d", "w4", 0)],  # one label an item
        [(f"i{i}", f"w{i % 3}", i % 2) for i in range(12)] + [("i0", "w1", 1), ("i0", "w2", 0)],  # sparse
        [("a", "w1", 0), ("a", "w2", 0), ("a", "w3", 0)],  # one class
    ],
)
def test_falls_back_to_majority_vote_on_sparse_data(rows: list[tuple[str, str, int]]) -> None:
    coded = encode(rows)
    assert spectral_group_confusions(coded) is None
    confusions, prior = spectral_confusions(coded)
    expected_confusions, expected_prior = majority_fallback(coded)
    np.testing.assert_allclose(confusions, expected_confusions)
    np.testing.assert_allclose(prior, expected_prior, atol=1e-9)


@settings(max_examples=40)
@given(
    n_classes=st.integers(2, 4),
    n_workers=st.integers(1, 10),
    n_items=st.integers(1, 300),
    rate=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
)
def test_always_returns_probabilities(
    n_classes: int, n_workers: int, n_items: int, rate: float, seed: int
) -> None:
    """Whatever the data (moments or fallback): finite rows on the simplex, a prior summing to one."""
    rng = np.random.default_rng(seed)
    confusions = normalize_rows(rng.random((n_workers * n_classes, n_classes))).reshape(
        n_workers, n_classes, n_classes
    )
    rates = np.full(n_workers, rate)
    rates[0] = 1.0  # at least one label
    coded, _ = simulate(confusions, np.full(n_classes, 1 / n_classes), rates, n_items, seed)
    estimate, prior = spectral_confusions(coded)
    assert estimate.shape == (coded.n_workers, coded.n_classes, coded.n_classes)
    assert np.all(np.isfinite(estimate)) and np.all(estimate >= 0)
    np.testing.assert_allclose(estimate.sum(axis=2), 1.0)
    assert np.all(prior > 0)
    np.testing.assert_allclose(prior.sum(), 1.0)
    probas = spectral_probas(coded)
    np.testing.assert_allclose(probas.sum(axis=1), 1.0)


def prolific_adversaries(seed: int) -> tuple[CodedLabels, np.ndarray]:
    """Six adversaries (accuracy 0.1) label every item, eighteen good workers (0.9) 15% each.

    Their labels outnumber the good workers' on most items, so the majority vote is mostly
    wrong, though the average worker is good. (Two adversaries land in each worker group; with
    five, one group's labels are right about half the time, its moments are near singular and
    the spectral start is no better than the majority's on some draws.)
    """
    n_adversaries, n_good = 6, 18
    accuracy = np.r_[np.full(n_adversaries, 0.1), np.full(n_good, 0.9)]
    confusions = np.stack([[[a, 1 - a], [1 - a, a]] for a in accuracy])
    rates = np.r_[np.ones(n_adversaries), np.full(n_good, 0.15)]
    return simulate(confusions, np.array([0.5, 0.5]), rates, 2000, seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectral_init_escapes_a_misleading_majority(seed: int) -> None:
    coded, truth = prolific_adversaries(seed)
    majority = vote_counts(coded).argmax(axis=1)
    assert np.mean(majority == truth) < 0.5  # the premise: majority vote misleads
    default = DawidSkene().fit(coded)
    spectral = DawidSkene(init="spectral").fit(coded)
    default_accuracy = np.mean(default.probas_.argmax(axis=1) == truth)
    spectral_accuracy = np.mean(spectral.probas_.argmax(axis=1) == truth)
    assert spectral.loglik_ >= default.loglik_ - 1e-6
    assert spectral_accuracy >= default_accuracy
    assert spectral_accuracy > 0.95
    assert spectral.init == "spectral" and default.init == "mv"


def test_spectral_init_agrees_with_default_when_the_majority_is_right() -> None:
    coded, _ = simulate(random_confusions(12, 3, 5), np.array([0.5, 0.3, 0.2]), np.full(12, 0.5), 2000, 5)
    default = DawidSkene().fit(coded)
    spectral = DawidSkene(init="spectral").fit(coded)
    assert spectral.loglik_ == pytest.approx(default.loglik_, abs=1e-4)
    assert np.mean(spectral.probas_.argmax(axis=1) == default.probas_.argmax(axis=1)) > 0.99


DATASETS = ["bluebird", "rte", "dog", "web", "d_possent", "d_product", "s_adult", "s_rel"]


@pytest.mark.parametrize("name", DATASETS)
def test_shared_datasets_accuracy(
    shared_datasets: Path, name: str, record_property: pytest.RecordProperty
) -> None:
    folder = shared_datasets / "crowd" / name
    if not (folder / "labels.csv").is_file():
        pytest.skip(f"{name} not present")
    data = pd.read_csv(folder / "labels.csv", dtype=str)
    truth = pd.read_csv(folder / "truth.csv", dtype=str).set_index("item")["label"]
    accuracies = {}
    for init in ("mv", "spectral"):
        labels = pd.Series(DawidSkene(init=init).fit_predict(data))
        accuracies[init] = float((labels.reindex(truth.index) == truth).mean())
    record_property("accuracy", accuracies)
    mv, spectral = accuracies["mv"], accuracies["spectral"]
    print(f"RESULT {name}: DawidSkene accuracy init=mv {mv:.4f} spectral {spectral:.4f}")
    # Spectral starting points land in an optimum at least nearly as good as the default's.
    assert accuracies["spectral"] >= accuracies["mv"] - 0.02
