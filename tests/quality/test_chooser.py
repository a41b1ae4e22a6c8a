"""AutoAggregator: chooses an aggregator by held-out log-likelihood of masked labels."""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import test_estimator_contract as contract
from hypothesis import given
from hypothesis import strategies as st

from labelmill.quality._codes import CodedLabels, encode, sort_by_item
from labelmill.quality.chooser import AutoAggregator, label_folds, one_coin_confusions, worker_confusions
from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.glad import GLAD
from labelmill.quality.majority import MajorityVote
from labelmill.quality.one_coin import OneCoinDawidSkene

DATASETS = ["bluebird", "d_possent", "d_product", "dog", "rte", "s_adult", "s_rel", "web"]
#: Measured: on these two sets every model that predicts held-out labels clearly better than
#: majority vote (DS, IBCC) is less accurate than majority vote, by 1.8-2.5 points.
BELOW_MV = {"s_adult", "web"}

CONTRACT_CHECKS = [
    name
    for name, check in vars(contract).items()
    if name.startswith("test_") and "make" in inspect.signature(check).parameters
]
FACTORIES: dict[str, Callable[[], AutoAggregator]] = {
    "auto": AutoAggregator,
    "auto-with-glad": lambda: AutoAggregator(candidates=("mv", GLAD(n_iter=20)), n_folds=3),
}


@pytest.mark.parametrize("factory", FACTORIES.values(), ids=list(FACTORIES))
@pytest.mark.parametrize("check", CONTRACT_CHECKS)
def test_estimator_contract(check: str, factory: Callable[[], AutoAggregator]) -> None:
    getattr(contract, check)(factory)


def simulated(
    kind: str, seed: int, n_items: int = 400, n_workers: int = 20, n_classes: int = 3
) -> pd.DataFrame:
    """Five labels per item. "one-coin": a worker is right with their accuracy (0.55-0.9), else
    picks a wrong class uniformly. "asymmetric": every (worker, true class) has one favourite
    wrong answer that takes nearly all of the worker's 40 % of errors."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_classes, n_items)
    item = np.repeat(np.arange(n_items), 5)
    worker = np.concatenate([rng.choice(n_workers, 5, replace=False) for _ in range(n_items)])
    if kind == "one-coin":
        accuracy = rng.uniform(0.55, 0.9, n_workers)
        right = rng.random(item.size) < accuracy[worker]
        wrong = (truth[item] + rng.integers(1, n_classes, item.size)) % n_classes
        label = np.where(right, truth[item], wrong)
    else:
        confusions = np.full((n_workers, n_classes, n_classes), 0.02)
        for w in range(n_workers):
            for c in range(n_classes):
                favourite = (c + 1 + rng.integers(0, n_classes - 1)) % n_classes
                confusions[w, c, c] = 0.6
                confusions[w, c, favourite] = 0.4 - 0.02 * (n_classes - 2)
        cumulative = confusions[worker, truth[item]].cumsum(axis=1)
        label = (rng.random(item.size)[:, None] > cumulative).sum(axis=1)
    return pd.DataFrame({"item": item, "worker": worker, "label": label})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_coin_workers_get_a_one_coin_level_model(seed: int) -> None:
    model = AutoAggregator().fit(simulated("one-coin", seed))
    assert model.chosen_ in {"mv", "one-coin"}
    assert model.chosen_ in model.reason_


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_asymmetric_confusions_get_dawid_skene(seed: int) -> None:
    model = AutoAggregator().fit(simulated("asymmetric", seed))
    assert model.chosen_ == "ds"
    assert isinstance(model.model_, DawidSkene)
    np.testing.assert_array_equal(model.probas_, DawidSkene().fit(simulated("asymmetric", seed)).probas_)


def test_scores_and_the_one_standard_error_rule() -> None:
    model = AutoAggregator().fit(simulated("one-coin", 0))
    assert list(model.scores_) == ["mv", "one-coin", "ds", "ibcc"]
    best = max(model.scores_, key=lambda name: model.scores_[name]["loglik"])
    assert model.scores_[best]["gap"] == 0.0
    for score in model.scores_.values():
        assert score["loglik"] < 0 and score["se"] > 0
        np.testing.assert_allclose(score["gap"], model.scores_[best]["loglik"] - score["loglik"], atol=1e-12)
    chosen = model.scores_[model.chosen_]
    assert chosen["gap"] <= chosen["gap_se"]
    simpler = list(model.scores_)[: list(model.scores_).index(model.chosen_)]
    assert all(model.scores_[name]["gap"] > model.scores_[name]["gap_se"] for name in simpler)
    assert model.reason_.startswith(f"Chose {model.chosen_} because") and model.reason_.endswith(".")


def test_deterministic_and_seeded() -> None:
    data = simulated("asymmetric", 4, n_items=150)
    first, second = AutoAggregator().fit(data), AutoAggregator().fit(data)
    assert first.scores_ == second.scores_ and first.reason_ == second.reason_
    other = AutoAggregator(random_state=1).fit(data)
    assert other.scores_ != first.scores_


def test_majority_vote_kept_when_richer_models_do_not_predict_better() -> None:
    # Equally good workers: nothing beats the simplest model by more than noise.
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 2, 200)
    rows = [
        (i, w, int(truth[i]) if rng.random() < 0.8 else int(1 - truth[i]))
        for i in range(200)
        for w in rng.choice(10, 3, replace=False).tolist()
    ]
    model = AutoAggregator(candidates=("mv", "ds")).fit(rows)
    assert model.chosen_ == "mv"
    assert "simpler" in model.reason_ or "best" in model.reason_


def test_no_item_with_two_labels_chooses_the_simplest() -> None:
    model = AutoAggregator(candidates=("one-coin", "ds")).fit([(i, f"w{i % 3}", i % 2) for i in range(12)])
    assert model.chosen_ == "one-coin" and model.n_heldout_ == 0
    assert isinstance(model.model_, OneCoinDawidSkene)
    assert "no item has two labels" in model.reason_


@st.composite
def crowds(draw: st.DrawFn) -> CodedLabels:
    n_items = draw(st.integers(1, 12))
    rows = [
        (i, draw(st.integers(0, 5)), draw(st.integers(0, 2)))
        for i in range(n_items)
        for _ in range(draw(st.integers(1, 8)))
    ]
    return sort_by_item(encode(rows))


@given(crowds(), st.integers(2, 6), st.integers(0, 3))
def test_folds_never_take_all_labels_of_an_item(coded: CodedLabels, n_folds: int, seed: int) -> None:
    folds = label_folds(coded, n_folds, seed)
    per_item = np.bincount(coded.item_idx, minlength=coded.n_items)
    assert np.all((folds == -1) == (per_item[coded.item_idx] < 2))
    assert folds.max() < n_folds
    for fold in range(n_folds):
        kept = np.bincount(coded.item_idx[folds != fold], minlength=coded.n_items)
        assert np.all(kept >= 1)
    # Row order does not change which (item, worker, label) goes to which fold.
    order = np.random.default_rng(seed).permutation(coded.n_labels)
    shuffled = coded.take(order)
    moved = label_folds(shuffled, n_folds, seed)
    before = zip(coded.item_idx, coded.worker_idx, coded.label_idx, folds, strict=True)
    after = zip(shuffled.item_idx, shuffled.worker_idx, shuffled.label_idx, moved, strict=True)
    assert sorted(before) == sorted(after)


def test_confusions_are_distributions_for_every_kind_of_model() -> None:
    coded = sort_by_item(encode(simulated("one-coin", 5, n_items=60)))
    for model in (MajorityVote(), OneCoinDawidSkene(), DawidSkene(), GLAD(n_iter=10)):
        confusions = worker_confusions(model.fit(coded), coded)
        assert confusions.shape == (coded.n_workers, 3, 3)
        assert np.all(confusions > 0)
        np.testing.assert_allclose(confusions.sum(axis=2), 1.0)
    one_coin = one_coin_confusions(np.array([0.7]), 3)
    np.testing.assert_allclose(one_coin[0], [[0.7, 0.15, 0.15], [0.15, 0.7, 0.15], [0.15, 0.15, 0.7]])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"candidates": ("mv", "bayes")}, "unknown candidate 'bayes'; valid candidates: mv, wawa"),
        ({"candidates": ()}, "at least one"),
        ({"candidates": ("mv", "mv")}, "distinct"),
        ({"candidates": ("mv", 3)}, "method name or an aggregator"),
        ({"n_folds": 1}, "n_folds must be at least 2"),
    ],
)
def test_bad_parameters_fail_in_fit(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AutoAggregator(**params).fit(contract.labels(n_items=5))


def accuracy(model: Any, data: pd.DataFrame, truth: pd.Series) -> float:
    predicted = pd.Series(model.fit_predict(data))
    return float((predicted.reindex(truth.index) == truth).mean())


@pytest.mark.slow
@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=pytest.mark.xfail(strict=True, reason="held-out likelihood prefers DS/IBCC here")
            if name in BELOW_MV
            else (),
        )
        for name in DATASETS
    ],
)
def test_never_far_below_majority_vote_on_crowd_sets(shared_datasets: Path, name: str) -> None:
    folder = shared_datasets / "crowd" / name
    data = pd.read_csv(folder / "labels.csv")
    truth = pd.read_csv(folder / "truth.csv").set_index("item")["label"]
    auto = AutoAggregator()
    start = time.perf_counter()
    ours = accuracy(auto, data, truth)
    seconds = time.perf_counter() - start  # reported, never asserted
    mv, ds = accuracy(MajorityVote(), data, truth), accuracy(DawidSkene(), data, truth)
    print(f"RESULT {name}: auto={ours:.4f} ({auto.chosen_}) ds={ds:.4f} mv={mv:.4f} fit={seconds:.1f}s")
    assert ours >= mv - 0.01
