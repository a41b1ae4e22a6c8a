"""One test suite, every aggregator: the scikit-learn-style contract of labelmill.quality."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pytest

from labelmill.quality._codes import LabelAggregator, encode
from labelmill.quality.bwa import BWA
from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.ebcc import EBCC
from labelmill.quality.glad import GLAD
from labelmill.quality.ibcc import IBCC
from labelmill.quality.mace import MACE
from labelmill.quality.majority import MajorityVote
from labelmill.quality.methods import DEFAULT_METHOD, METHODS, make_aggregator
from labelmill.quality.minimax import MinimaxEntropy, OrdinalMinimaxEntropy
from labelmill.quality.one_coin import OneCoinDawidSkene
from labelmill.quality.wawa import Wawa

FACTORIES: dict[str, Callable[[], LabelAggregator]] = {
    "mv": MajorityVote,
    "wawa": Wawa,
    "ds": DawidSkene,
    "ds-wawa-init": lambda: DawidSkene(init="wawa"),
    "ds-ml": lambda: DawidSkene(smoothing=0.0, prior_smoothing=0.0),
    "one-coin": OneCoinDawidSkene,
    "glad": GLAD,
    "glad-cg": lambda: GLAD(m_step="cg", n_iter=5),
    "mace": lambda: MACE(n_restarts=2),
    "mace-em": lambda: MACE(method="em", n_restarts=2),
    "mace-crowdkit-init": lambda: MACE(init="crowdkit", n_restarts=1, n_iter=10, tol=-1.0),
    "bwa": BWA,
    "mmce": MinimaxEntropy,
    "mmce-lbfgs": lambda: MinimaxEntropy(m_step="lbfgs", n_iter=5),
    "mmce-ds-init": lambda: MinimaxEntropy(init="ds"),
    "mmce-ordinal": OrdinalMinimaxEntropy,
    "ibcc": IBCC,
    "ibcc-empirical": lambda: IBCC(class_prior="empirical"),
    "ebcc": EBCC,
    "ebcc-flat-prior": lambda: EBCC(class_prior=1.0, n_subtypes=3, n_restarts=2, random_state=1),
}
ALL = pytest.mark.parametrize("make", FACTORIES.values(), ids=list(FACTORIES))


def labels(n_items: int = 60, n_workers: int = 8, n_classes: int = 3, seed: int = 0) -> pd.DataFrame:
    """Four labels per item from workers of accuracy 0.5-0.95, item ids as strings."""
    rng = np.random.default_rng(seed)
    accuracy = rng.uniform(0.5, 0.95, n_workers)
    truth = rng.integers(0, n_classes, n_items)
    item = np.repeat(np.arange(n_items), 4)
    worker = np.concatenate([rng.choice(n_workers, 4, replace=False) for _ in range(n_items)])
    right = rng.random(item.size) < accuracy[worker]
    wrong = (truth[item] + rng.integers(1, n_classes, item.size)) % n_classes
    label = np.where(right, truth[item], wrong)
    return pd.DataFrame(
        {"item": [f"i{i:03d}" for i in item], "worker": [f"w{w}" for w in worker], "label": label}
    )


@ALL
def test_init_stores_parameters_only(make: Callable[[], LabelAggregator]) -> None:
    model = make()
    assert not [name for name in vars(model) if name.endswith("_")]
    with pytest.raises(RuntimeError, match="not fitted"):
        model.predict_proba()


@ALL
def test_fit_returns_self_with_aligned_fitted_attributes(make: Callable[[], LabelAggregator]) -> None:
    data = labels()
    model = make()
    assert model.fit(data) is model
    n_items, n_classes = len(set(data["item"])), len(set(data["label"]))
    assert list(model.items_) == sorted(set(data["item"]))
    assert list(model.workers_) == sorted(set(data["worker"]))
    assert list(model.classes_) == sorted(set(data["label"]))
    proba = model.predict_proba()
    assert proba.shape == (n_items, n_classes)
    assert np.all(proba >= 0)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(model.predict(), model.classes_[proba.argmax(axis=1)])
    assert model.skills_.shape == (len(model.workers_),)
    assert np.all(np.isfinite(model.skills_))
    assert model.fit_predict(data) == dict(zip(model.items_.tolist(), model.labels_.tolist(), strict=True))
    np.testing.assert_array_equal(model.fit_predict_proba(data), proba)


@ALL
def test_deterministic(make: Callable[[], LabelAggregator]) -> None:
    data = labels(seed=1)
    np.testing.assert_array_equal(make().fit(data).probas_, make().fit(data).probas_)


@ALL
def test_row_order_does_not_change_the_result(make: Callable[[], LabelAggregator]) -> None:
    data = labels(seed=2)
    shuffled = data.sample(frac=1.0, random_state=0)
    ordered, reordered = make().fit(data), make().fit(shuffled)
    # Sums run in another order, so only float error differs (CG line searches amplify it a little).
    np.testing.assert_allclose(ordered.probas_, reordered.probas_, atol=1e-4)
    np.testing.assert_array_equal(ordered.labels_, reordered.labels_)


@ALL
def test_accepts_every_input_shape(make: Callable[[], LabelAggregator]) -> None:
    data = labels(n_items=20, seed=3)
    expected = make().fit(data).probas_
    as_task = data.rename(columns={"item": "task"})
    as_dict = {column: data[column].tolist() for column in data.columns}
    as_rows = list(data.itertuples(index=False, name=None))
    for variant in (as_task, as_dict, as_rows, encode(data)):
        np.testing.assert_allclose(make().fit(variant).probas_, expected, atol=1e-12)


@ALL
def test_recovers_the_truth_from_good_workers(make: Callable[[], LabelAggregator]) -> None:
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, 80)
    rows = [
        (i, w, int(truth[i]) if rng.random() < 0.9 else int((truth[i] + 1) % 3))
        for i in range(80)
        for w in range(5)
    ]
    predicted = make().fit_predict(rows)
    assert np.mean([predicted[i] == truth[i] for i in range(80)]) >= 0.95


@ALL
def test_single_item(make: Callable[[], LabelAggregator]) -> None:
    model = make().fit([("only", "w1", "a"), ("only", "w2", "a"), ("only", "w3", "b")])
    assert model.probas_.shape == (1, 2)
    np.testing.assert_allclose(model.probas_.sum(axis=1), 1.0)
    assert model.predict()[0] in {"a", "b"}


@ALL
def test_single_worker(make: Callable[[], LabelAggregator]) -> None:
    rows = [(i, "solo", "yes" if i % 3 else "no") for i in range(10)]
    model = make().fit(rows)
    assert model.fit_predict(rows) == {i: label for i, _, label in rows}
    assert model.skills_.shape == (1,)


@ALL
def test_single_class(make: Callable[[], LabelAggregator]) -> None:
    model = make().fit([(i, w, "same") for i in range(4) for w in range(3)])
    np.testing.assert_allclose(model.probas_, 1.0)
    assert set(model.predict()) == {"same"}


@ALL
def test_gold_clamps_known_items(make: Callable[[], LabelAggregator]) -> None:
    data = labels(seed=5)
    gold = {"i000": 2, "i001": 0, "not-in-data": 1}
    model = make().fit(data, gold=gold)
    position = {item: i for i, item in enumerate(model.items_)}
    for item in ("i000", "i001"):
        expected = np.zeros(len(model.classes_))
        expected[list(model.classes_).index(gold[item])] = 1.0
        np.testing.assert_array_equal(model.probas_[position[item]], expected)


@ALL
def test_gold_label_nobody_chose_becomes_a_class(make: Callable[[], LabelAggregator]) -> None:
    model = make().fit([("a", "w1", "x"), ("a", "w2", "x"), ("b", "w1", "y")], gold={"b": "z"})
    assert list(model.classes_) == ["x", "y", "z"]
    assert (
        model.fit_predict([("a", "w1", "x"), ("a", "w2", "x"), ("b", "w1", "y")], gold={"b": "z"})["b"] == "z"
    )


@ALL
def test_duplicate_labels_are_kept(make: Callable[[], LabelAggregator]) -> None:
    rows = [("a", "w1", "x"), ("a", "w1", "x"), ("a", "w2", "y"), ("b", "w2", "y"), ("b", "w1", "y")]
    model = make().fit(rows)
    assert model.probas_.shape == (2, 2)


@ALL
def test_empty_data_is_a_clear_error(make: Callable[[], LabelAggregator]) -> None:
    with pytest.raises(ValueError, match="no labels"):
        make().fit([])


def test_methods_registry() -> None:
    assert set(METHODS) == {
        "mv",
        "wawa",
        "ds",
        "one-coin",
        "glad",
        "mace",
        "ibcc",
        "ebcc",
        "bwa",
        "mmce",
        "mmce-ordinal",
        "auto",
    }
    assert DEFAULT_METHOD in METHODS
    assert isinstance(make_aggregator("glad", n_iter=3), GLAD)
    assert make_aggregator("glad", n_iter=3).n_iter == 3
    assert isinstance(make_aggregator(), METHODS[DEFAULT_METHOD])
    with pytest.raises(
        ValueError,
        match="valid methods: mv, wawa, ds, one-coin, glad, mace, ibcc, ebcc, bwa, mmce, mmce-ordinal",
    ):
        make_aggregator("bayes")
    with pytest.raises(ValueError, match="bad parameters"):
        make_aggregator("mv", n_iter=3)


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (DawidSkene(init="random"), "init must be"),  # type: ignore[arg-type]
        (GLAD(m_step="bfgs"), "m_step must be"),  # type: ignore[arg-type]
        (MACE(method="gibbs"), "method must be"),  # type: ignore[arg-type]
        (GLAD(class_priors=[1.0]), "class_priors"),
        (MinimaxEntropy(init="random"), "init must be"),  # type: ignore[arg-type]
        (MinimaxEntropy(m_step="cg"), "m_step must be"),  # type: ignore[arg-type]
        (OrdinalMinimaxEntropy(lambda_worker=0.0), "lambda_worker and lambda_item must be > 0"),
    ],
)
def test_bad_parameters_fail_in_fit(model: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.fit(labels(n_items=5))
