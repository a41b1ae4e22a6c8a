"""crowd-kit as the oracle: same algorithm, same start, same answers.

Each comparison runs on generated data (always) and on the shared crowd datasets (skipped when
absent). Early stopping is switched off on both sides (crowd-kit's stopping rule uses its own
ELBO), so both run the same number of iterations. Exact ties are the one intentional difference:
ours go to the first class in sorted order, crowd-kit's to its first column, which depends on the
data; there we only require crowd-kit's label to be one of our tied maxima.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from labelmill.quality._codes import LabelAggregator
from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.glad import GLAD
from labelmill.quality.mace import MACE
from labelmill.quality.majority import MajorityVote
from labelmill.quality.one_coin import OneCoinDawidSkene

crowdkit = pytest.importorskip("crowdkit.aggregation")
NEVER_STOP = -np.inf
DATASETS = ["bluebird", "d_possent", "d_product", "dog", "rte", "s_adult", "s_rel", "web"]
SMALL_DATASETS = ["bluebird", "rte", "dog"]


def generated(n_items: int = 300, n_workers: int = 25, n_classes: int = 3, seed: int = 0) -> pd.DataFrame:
    """Five labels per item; workers of accuracy 0.4-0.95, some with a favourite wrong class."""
    rng = np.random.default_rng(seed)
    accuracy = rng.uniform(0.4, 0.95, n_workers)
    favourite = rng.integers(0, n_classes, n_workers)
    truth = rng.integers(0, n_classes, n_items)
    item = np.repeat(np.arange(n_items), 5)
    worker = np.concatenate([rng.choice(n_workers, 5, replace=False) for _ in range(n_items)])
    right = rng.random(item.size) < accuracy[worker]
    biased = rng.random(item.size) < 0.5
    wrong = np.where(biased, favourite[worker], rng.integers(0, n_classes, item.size))
    return pd.DataFrame({"item": item, "worker": worker, "label": np.where(right, truth[item], wrong)})


def load(shared_datasets: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(shared_datasets / "crowd" / name / "labels.csv")


def as_crowdkit(data: pd.DataFrame) -> pd.DataFrame:
    return data.rename(columns={"item": "task"})


def in_first_appearance_order(data: pd.DataFrame) -> pd.DataFrame:
    """Recode workers and labels so sorted order is order of first appearance.

    crowd-kit's MACE indexes its parameters by first appearance but its M-step counts by sorted
    order; on data where the two agree it is MACE as published, and comparable.
    """
    return data.assign(worker=pd.factorize(data["worker"])[0], label=pd.factorize(data["label"])[0])


def assert_same(ours: LabelAggregator, theirs: Any, atol: float) -> None:
    probas = theirs.probas_.reindex(index=ours.items_, columns=ours.classes_).to_numpy(dtype=float)
    np.testing.assert_allclose(ours.probas_, probas, atol=atol)
    their_labels = theirs.labels_.reindex(ours.items_).to_numpy()
    differ = their_labels != ours.labels_
    if differ.any():  # only ties may differ, and their label must be one of our maxima
        rows = ours.probas_[differ]
        their_positions = np.searchsorted(ours.classes_, their_labels[differ])
        tops = rows.max(axis=1)
        np.testing.assert_allclose(rows[np.arange(rows.shape[0]), their_positions], tops, atol=1e-9)
        assert np.all(np.sort(rows, axis=1)[:, -2] >= tops - 1e-9)


def quiet_fit(model: Any, data: pd.DataFrame, *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(as_crowdkit(data), *args)


# ---- majority vote -------------------------------------------------------------------------


def test_majority_vote_matches_crowdkit_on_generated_data() -> None:
    data = generated()
    assert_same(MajorityVote().fit(data), quiet_fit(crowdkit.MajorityVote(), data), atol=1e-12)


@pytest.mark.parametrize("name", DATASETS)
def test_majority_vote_matches_crowdkit_on_datasets(shared_datasets: Path, name: str) -> None:
    data = load(shared_datasets, name)
    assert_same(MajorityVote().fit(data), quiet_fit(crowdkit.MajorityVote(), data), atol=1e-12)


# ---- Dawid-Skene ---------------------------------------------------------------------------


def crowdkit_ds(n_iter: int) -> DawidSkene:
    return DawidSkene(n_iter=n_iter, tol=NEVER_STOP, smoothing=0.0, prior_smoothing=0.0, init="mv")


@pytest.mark.parametrize("seed", [0, 1])
def test_dawid_skene_matches_crowdkit_on_generated_data(seed: int) -> None:
    data = generated(seed=seed)
    theirs = quiet_fit(crowdkit.DawidSkene(n_iter=30, tol=NEVER_STOP), data)
    assert_same(crowdkit_ds(30).fit(data), theirs, atol=1e-6)


def test_dawid_skene_with_gold_matches_crowdkit() -> None:
    data = generated(seed=2)
    gold = {0: 1, 1: 2, 5: 0, 7: 1}
    theirs = quiet_fit(crowdkit.DawidSkene(n_iter=20, tol=NEVER_STOP), data, pd.Series(gold))
    assert_same(crowdkit_ds(20).fit(data, gold=gold), theirs, atol=1e-6)


@pytest.mark.parametrize("name", DATASETS)
def test_dawid_skene_matches_crowdkit_on_datasets(shared_datasets: Path, name: str) -> None:
    data = load(shared_datasets, name)
    theirs = quiet_fit(crowdkit.DawidSkene(n_iter=10, tol=NEVER_STOP), data)
    assert_same(crowdkit_ds(10).fit(data), theirs, atol=1e-6)


# ---- one-coin Dawid-Skene ------------------------------------------------------------------


def crowdkit_one_coin(n_iter: int) -> OneCoinDawidSkene:
    return OneCoinDawidSkene(n_iter=n_iter, tol=NEVER_STOP, smoothing=0.0, prior_smoothing=0.0, init="mv")


def test_one_coin_matches_crowdkit_on_generated_data() -> None:
    data = generated(seed=3)
    theirs = quiet_fit(crowdkit.OneCoinDawidSkene(n_iter=20, tol=NEVER_STOP), data)
    ours = crowdkit_one_coin(20).fit(data)
    assert_same(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(ours.skills_, theirs.skills_.reindex(ours.workers_).to_numpy(), atol=1e-6)


@pytest.mark.parametrize("name", SMALL_DATASETS)
def test_one_coin_matches_crowdkit_on_datasets(shared_datasets: Path, name: str) -> None:
    data = load(shared_datasets, name)
    theirs = quiet_fit(crowdkit.OneCoinDawidSkene(n_iter=5, tol=NEVER_STOP), data)
    assert_same(crowdkit_one_coin(5).fit(data), theirs, atol=1e-6)


# ---- GLAD ----------------------------------------------------------------------------------
# crowd-kit's posterior lags its last M-step by one iteration, hence n_iter - 1 on our side. CG
# line searches amplify float differences over iterations, so a few iterations keep it exact.


def test_glad_cg_matches_crowdkit_on_generated_data() -> None:
    data = generated(n_items=150, seed=4)
    theirs = quiet_fit(crowdkit.GLAD(n_iter=3, tol=NEVER_STOP), data)
    ours = GLAD(n_iter=2, tol=NEVER_STOP, m_step="cg").fit(data)
    assert_same(ours, theirs, atol=1e-6)


@pytest.mark.parametrize("name", ["bluebird", "rte"])
def test_glad_cg_matches_crowdkit_on_datasets(shared_datasets: Path, name: str) -> None:
    data = load(shared_datasets, name)
    theirs = quiet_fit(crowdkit.GLAD(n_iter=3, tol=NEVER_STOP), data)
    assert_same(GLAD(n_iter=2, tol=NEVER_STOP, m_step="cg").fit(data), theirs, atol=1e-6)


def test_glad_newton_reaches_crowdkits_answers() -> None:
    """The default Newton M-step converges to the same labels as crowd-kit's CG (not the same path)."""
    data = generated(n_items=150, seed=5)
    theirs = quiet_fit(crowdkit.GLAD(n_iter=10, tol=NEVER_STOP), data)
    ours = GLAD(n_iter=9, tol=NEVER_STOP).fit(data)
    agreement = np.mean(theirs.labels_.reindex(ours.items_).to_numpy() == ours.labels_)
    assert agreement >= 0.98


# ---- MACE ----------------------------------------------------------------------------------


def crowdkit_mace(n_iter: int) -> MACE:
    return MACE(n_restarts=1, n_iter=n_iter, tol=NEVER_STOP, init="crowdkit", random_state=0)


@pytest.mark.parametrize("method", ["vb", "em"])
def test_mace_matches_crowdkit_on_generated_data(method: str) -> None:
    data = in_first_appearance_order(generated(seed=6))
    theirs = quiet_fit(crowdkit.MACE(n_restarts=1, n_iter=20, method=method, random_state=0), data)
    ours = crowdkit_mace(20)
    ours.method = method  # type: ignore[assignment]
    ours.fit(data)
    assert_same(ours, theirs, atol=1e-6)
    np.testing.assert_allclose(
        ours.spamming_, theirs.spamming_[:, 0] / theirs.spamming_.sum(axis=1), atol=1e-6
    )


@pytest.mark.parametrize("name", [*SMALL_DATASETS, "d_product"])
def test_mace_matches_crowdkit_on_datasets(shared_datasets: Path, name: str) -> None:
    data = in_first_appearance_order(load(shared_datasets, name))
    theirs = quiet_fit(crowdkit.MACE(n_restarts=1, n_iter=10, random_state=0), data)
    assert_same(crowdkit_mace(10).fit(data), theirs, atol=1e-6)
