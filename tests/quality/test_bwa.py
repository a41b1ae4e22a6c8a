"""BWA against its definition (a loop-per-label oracle), its authors' published numbers, and simulations."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.quality.bwa import BWA
from labelmill.quality.majority import MajorityVote

#: Accuracy of the authors' `bwa` (default parameters) per dataset, from the notebook
#: code/test_bwa.ipynb of github.com/yuan-li/truth-inference-at-scale (their names: bird, dog,
#: rte, web, senti_1k, product); the same data as ours, item for item.
PUBLISHED = {
    "bluebird": 0.759259,
    "dog": 0.831475,
    "rte": 0.9275,
    "web": 0.822465,
    "d_possent": 0.956,
    "d_product": 0.919423,
}


def simulated(
    n_items: int, n_workers: int, per_item: int, accuracy: np.ndarray, n_classes: int = 3, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    item = np.repeat(np.arange(n_items), per_item)
    worker = np.concatenate([rng.choice(n_workers, per_item, replace=False) for _ in range(n_items)])
    right = rng.random(item.size) < accuracy[worker]
    wrong = (truth[item] + rng.integers(1, n_classes, item.size)) % n_classes
    label = np.where(right, truth[item], wrong)
    return pd.DataFrame({"item": item, "worker": worker, "label": label}), truth


def naive_bwa(
    rows: list[tuple[int, int, int]], n_classes: int, a: float = 15.0, lam: float = 1.0
) -> np.ndarray:
    """The updates of Li et al. (2019), written label by label: the oracle for the vectorised one."""
    items = sorted({i for i, _, _ in rows})
    workers = sorted({w for _, w, _ in rows})
    by_item: dict[int, list[tuple[int, int]]] = defaultdict(list)
    by_worker: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for i, w, label in rows:
        by_item[i].append((w, label))
        by_worker[w].append((i, label))
    scores = np.zeros((len(items), n_classes))
    for k in range(n_classes):
        z = {i: sum(label == k for _, label in by_item[i]) / len(by_item[i]) for i in items}
        spread = sum(len(by_item[i]) * z[i] * (1 - z[i]) for i in items) / len(rows)
        b = a * spread * 4 * (1 - 1 / n_classes)
        for _ in range(500):
            mu = sum(z.values()) / len(items)
            errors = {w: sum((z[i] - (label == k)) ** 2 for i, label in by_worker[w]) for w in workers}
            v = {w: (a + len(by_worker[w])) / (b + errors[w]) for w in workers}
            new = {
                i: (lam * mu + sum(v[w] * (label == k) for w, label in by_item[i]))
                / (lam + sum(v[w] for w, _ in by_item[i]))
                for i in items
            }
            done = all(abs(new[i] - z[i]) <= 1e-8 + 1e-3 * abs(new[i]) for i in items)
            z = new
            if done:
                break
        scores[:, k] = [z[i] for i in items]
    return scores


def test_matches_the_updates_written_label_by_label() -> None:
    data, _ = simulated(40, 12, 6, np.random.default_rng(1).uniform(0.3, 0.95, 12), n_classes=3, seed=1)
    rows = list(data.itertuples(index=False, name=None))
    model = BWA().fit(data)
    np.testing.assert_allclose(model.scores_, naive_bwa(rows, 3), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(model.probas_.sum(axis=1), 1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 5), st.integers(0, 2)), min_size=1, max_size=60))
def test_objective_never_decreases(rows: list[tuple[int, int, int]]) -> None:
    model = BWA().fit(rows)
    path = np.array(model.objective_path_)
    assert np.all(np.isfinite(path))
    assert np.all(np.diff(path) >= -1e-9 * np.maximum(1.0, np.abs(path[1:])))
    assert np.all(model.probas_ >= 0)
    np.testing.assert_allclose(model.probas_.sum(axis=1), 1.0)


def test_objective_never_decreases_with_gold() -> None:
    data, truth = simulated(100, 15, 8, np.random.default_rng(2).uniform(0.3, 0.9, 15), seed=2)
    model = BWA().fit(data, gold={i: int(truth[i]) for i in range(10)})
    path = np.array(model.objective_path_)
    assert len(path) > 2
    assert np.all(np.diff(path) >= -1e-12)


def test_gold_is_clamped_and_informs_the_precisions() -> None:
    data, truth = simulated(60, 10, 5, np.full(10, 0.7), seed=3)
    gold = {i: int(truth[i]) for i in range(30)}
    model = BWA().fit(data, gold=gold)
    assert all(model.probas_[i, truth[i]] == 1.0 for i in range(30))
    assert not np.array_equal(model.precisions_, BWA().fit(data).precisions_)


def test_recovers_the_truth_and_beats_majority_vote_with_many_labels_per_item() -> None:
    # Twenty labels an item; half the crowd is right 85 % of the time, half answers nearly at random.
    accuracy = np.r_[np.full(20, 0.85), np.full(20, 0.36)]
    data, truth = simulated(300, 40, 20, accuracy, seed=4)
    ours = BWA().fit(data)
    mv = MajorityVote().fit(data)
    bwa_accuracy = np.mean(ours.labels_ == truth)
    assert bwa_accuracy >= 0.98
    assert bwa_accuracy > np.mean(mv.labels_ == truth)
    # The good half gets the higher precision on every class.
    assert ours.precisions_[:20].min() > ours.precisions_[20:].max()
    assert ours.skills_[:20].min() > ours.skills_[20:].max()


def test_deterministic_and_row_order_free() -> None:
    data, _ = simulated(80, 10, 5, np.full(10, 0.75), seed=5)
    first = BWA().fit(data).probas_
    np.testing.assert_array_equal(first, BWA().fit(data).probas_)
    np.testing.assert_allclose(first, BWA().fit(data.sample(frac=1.0, random_state=1)).probas_, atol=1e-12)


def test_bad_parameters_fail_in_fit() -> None:
    with pytest.raises(ValueError, match="prior_shape must be"):
        BWA(score_precision=0.0).fit([("a", "w", 1)])


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_reproduces_the_authors_accuracy(shared_datasets: Path, name: str) -> None:
    data = pd.read_csv(shared_datasets / "crowd" / name / "labels.csv")
    truth = pd.read_csv(shared_datasets / "crowd" / name / "truth.csv").set_index("item")["label"]
    predicted = pd.Series(BWA().fit_predict(data))
    assert float((predicted.reindex(truth.index) == truth).mean()) == pytest.approx(PUBLISHED[name], abs=1e-5)
