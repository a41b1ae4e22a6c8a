"""Dawid–Skene's smoothing chosen from the data (issue 16, defect 2).

The default aggregator smoothed every confusion row with one global constant. That helps sparse
workers but lost to plain Dawid–Skene when many annotators answer at random on imbalanced
classes; ``smoothing="auto"`` chooses it by held-out likelihood instead. crowd-kit's DawidSkene
is the oracle for "plain Dawid–Skene".
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.quality import dawid_skene
from labelmill.quality.dawid_skene import SMOOTHING_GRID, DawidSkene


def crowd(
    seed: int,
    *,
    n_items: int,
    n_workers: int,
    per_item: int,
    mix: tuple[float, ...],
    random_share: float,
    accuracy: tuple[float, float] = (0.6, 0.95),
) -> tuple[pd.DataFrame, np.ndarray]:
    """Items get ``per_item`` distinct workers; a ``random_share`` of the workers answer uniformly
    at random, the others are right with their accuracy and otherwise pick a wrong class."""
    rng = np.random.default_rng(seed)
    n_classes = len(mix)
    truth = rng.choice(n_classes, size=n_items, p=mix)
    is_random = rng.random(n_workers) < random_share
    skill = rng.uniform(*accuracy, n_workers)
    workers = np.argsort(rng.random((n_items, n_workers)), axis=1)[:, :per_item].ravel()
    items = np.repeat(np.arange(n_items), per_item)
    right = rng.random(items.size) < skill[workers]
    wrong = (truth[items] + rng.integers(1, n_classes, items.size)) % n_classes
    label = np.where(right, truth[items], wrong)
    label = np.where(is_random[workers], rng.integers(0, n_classes, items.size), label)
    return pd.DataFrame({"item": items, "worker": workers, "label": label}), truth


def random_heavy(seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    # 87/13 classes (sms_spam's balance), about 60 % of 60 annotators answering at random.
    return crowd(seed, n_items=3000, n_workers=60, per_item=5, mix=(0.87, 0.13), random_share=0.6)


def accuracy(predicted: dict[Any, Any], truth: np.ndarray) -> float:
    return float(np.mean([predicted[i] == t for i, t in enumerate(truth)]))


def crowdkit_accuracy(data: pd.DataFrame, truth: np.ndarray) -> float:
    crowdkit = pytest.importorskip("crowdkit.aggregation")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = crowdkit.DawidSkene(n_iter=100).fit_predict(data.rename(columns={"item": "task"}))
    return accuracy(labels.to_dict(), truth)


def test_auto_is_not_worse_than_plain_dawid_skene_when_many_answer_at_random() -> None:
    ours, plain, fixed = [], [], []
    for seed in range(3):
        data, truth = random_heavy(seed)
        model = DawidSkene().fit(data)
        ours.append(accuracy(dict(zip(model.items_.tolist(), model.labels_.tolist(), strict=True)), truth))
        plain.append(crowdkit_accuracy(data, truth))
        fixed.append(accuracy(DawidSkene(smoothing=2.0, tol=1e-5).fit_predict(data), truth))
        assert model.smoothing_ <= 0.5, model.heldout_loglik_  # little or no smoothing chosen
    assert np.mean(ours) >= np.mean(plain), (ours, plain)
    assert np.mean(ours) >= np.mean(fixed), (ours, fixed)


def test_auto_still_smooths_sparse_workers() -> None:
    # 300 annotators with about four labels each: plain DS gives them rows of zeros and ones.
    data, truth = crowd(1, n_items=400, n_workers=300, per_item=3, mix=(0.5, 0.3, 0.2), random_share=0.0)
    model = DawidSkene().fit(data)
    assert model.smoothing_ > 0.0, model.heldout_loglik_
    scores = model.heldout_loglik_
    assert set(scores) == set(SMOOTHING_GRID) and scores[0.0] < max(scores.values())
    unsmoothed = DawidSkene(smoothing=0.0, prior_smoothing=0.0).fit_predict(data)
    chosen = dict(zip(model.items_.tolist(), model.labels_.tolist(), strict=True))
    assert accuracy(chosen, truth) >= accuracy(unsmoothed, truth)


def test_auto_is_deterministic_and_equals_its_chosen_smoothing(monkeypatch: pytest.MonkeyPatch) -> None:
    data, _ = crowd(2, n_items=600, n_workers=40, per_item=4, mix=(0.7, 0.3), random_share=0.3)
    # A small subset threshold takes the large-data path (candidates compared on an item subset).
    for limit in (10**9, 1000):
        monkeypatch.setattr(dawid_skene, "SELECTION_LABELS", limit)
        first, second = DawidSkene().fit(data), DawidSkene().fit(data)
        np.testing.assert_array_equal(first.probas_, second.probas_)
        assert first.smoothing_ == second.smoothing_ and first.heldout_loglik_ == second.heldout_loglik_
        given = DawidSkene(smoothing=first.smoothing_).fit(data)
        np.testing.assert_allclose(given.probas_, first.probas_)


def test_one_annotator_per_item_keeps_each_label() -> None:
    # Overlap 1: nothing to hold out against; every item keeps the label it was given.
    rows = [(i, f"w{i % 4}", "yes" if i % 3 else "no") for i in range(40)]
    model = DawidSkene().fit(rows)
    assert model.fit_predict(rows) == {i: label for i, _, label in rows}
    assert model.smoothing_ == 0.0 and model.heldout_loglik_ == {}


def test_squarem_climbs_at_least_as_high_as_plain_em() -> None:
    data, _ = random_heavy(0)
    plain = DawidSkene(smoothing=0.0, prior_smoothing=0.0, n_iter=100, tol=-1.0).fit(data)
    fast = DawidSkene(smoothing=0.0, prior_smoothing=0.0).fit(data)
    assert fast.loglik_ >= plain.loglik_ - 1e-9
    assert fast.n_iter_ < 100


def test_bad_smoothing_is_refused() -> None:
    rows = [("a", "w1", 1), ("a", "w2", 1), ("b", "w1", 0), ("b", "w2", 0)]
    with pytest.raises(ValueError, match="smoothing must be"):
        DawidSkene(smoothing=-1.0).fit(rows)
    with pytest.raises(ValueError, match="smoothing_grid"):
        DawidSkene(smoothing_grid=()).fit(rows)
    assert DawidSkene(smoothing=2.0).fit(rows).smoothing_ == 2.0


@settings(max_examples=40)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 15), st.integers(0, 5), st.sampled_from(["a", "b", "c"])),
        min_size=1,
        max_size=80,
    )
)
def test_auto_gives_valid_posteriors_and_a_grid_smoothing(rows: list[tuple[int, int, str]]) -> None:
    model = DawidSkene().fit(rows)
    assert model.smoothing_ in SMOOTHING_GRID
    np.testing.assert_allclose(model.probas_.sum(axis=1), 1.0)
    assert np.all(np.isfinite(model.probas_)) and np.all(model.probas_ >= 0)
