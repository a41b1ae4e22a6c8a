"""encode(), majority vote properties, multi-choice aggregation, and the model-specific attributes."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.quality._codes import CodedLabels, encode
from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.glad import GLAD
from labelmill.quality.mace import MACE
from labelmill.quality.majority import MajorityVote
from labelmill.quality.multilabel import MultiLabel
from labelmill.quality.one_coin import OneCoinDawidSkene
from labelmill.quality.wawa import Wawa

ids = st.one_of(st.integers(-5, 30), st.sampled_from(["a", "b", "c", "item-1", "é"]))
int_triples = st.lists(
    st.tuples(st.integers(0, 12), st.integers(0, 6), st.integers(0, 3)), min_size=1, max_size=60
)


# ---- encode ---------------------------------------------------------------------------------


@given(st.lists(st.tuples(ids, ids, ids), min_size=1, max_size=60))
@settings(max_examples=150, deadline=None)
def test_encode_round_trips(rows: list[tuple[Any, Any, Any]]) -> None:
    coded = encode(rows)
    assert coded.n_labels == len(rows)
    decoded = list(
        zip(
            coded.items[coded.item_idx].tolist(),
            coded.workers[coded.worker_idx].tolist(),
            coded.classes[coded.label_idx].tolist(),
            strict=True,
        )
    )
    assert decoded == [tuple(row) for row in rows]
    for ids_, values in ((coded.items, [r[0] for r in rows]), (coded.classes, [r[2] for r in rows])):
        assert len(set(ids_.tolist())) == len(ids_) == len(set(values))


@given(int_triples)
@settings(max_examples=100, deadline=None)
def test_encode_sorts_ids_and_accepts_every_shape(rows: list[tuple[int, int, int]]) -> None:
    frame = pd.DataFrame(rows, columns=["task", "worker", "label"])
    shapes = [
        rows,
        frame,
        {"item": frame["task"].tolist(), "worker": frame["worker"], "label": frame["label"]},
    ]
    coded = [encode(shape) for shape in shapes]
    assert coded[0].items.tolist() == sorted({r[0] for r in rows})
    for other in coded[1:]:
        for field in ("item_idx", "worker_idx", "label_idx", "items", "workers", "classes"):
            np.testing.assert_array_equal(getattr(other, field), getattr(coded[0], field))


@given(int_triples)
@settings(max_examples=100, deadline=None)
def test_encode_duplicates(rows: list[tuple[int, int, int]]) -> None:
    for keep in ("first", "last"):
        coded = encode(rows, duplicates=keep)
        pairs = list(zip(coded.item_idx.tolist(), coded.worker_idx.tolist(), strict=True))
        assert len(pairs) == len(set(pairs)) == len({(r[0], r[1]) for r in rows})
        expected: dict[tuple[int, int], int] = {}
        for item, worker, label in rows:
            if keep == "last" or (item, worker) not in expected:
                expected[(item, worker)] = label
        got = {
            (coded.items[i], coded.workers[w]): coded.classes[c]
            for i, w, c in zip(coded.item_idx, coded.worker_idx, coded.label_idx, strict=True)
        }
        assert got == expected
    assert encode(rows).n_labels == len(rows)


def test_encode_with_fixed_classes_keeps_unused_ones() -> None:
    coded = encode([("a", "w", "neg")], classes=["pos", "neg", "neutral"])
    assert coded.classes.tolist() == ["pos", "neg", "neutral"]
    assert coded.label_idx.tolist() == [1]
    with pytest.raises(ValueError, match="not among the classes"):
        encode([("a", "w", "other")], classes=["pos", "neg"])


def test_encode_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="missing worker"):
        encode(pd.DataFrame({"item": [1], "label": [1]}))
    with pytest.raises(ValueError, match="no labels"):
        encode({"item": [], "worker": [], "label": []})
    with pytest.raises(ValueError, match="triple"):
        encode([("a", "w")])
    with pytest.raises(ValueError, match="missing values"):
        encode([("a", "w", None), ("b", "w", "x")])


def test_encode_large_integer_ids_and_mixed_ids() -> None:
    coded = encode([(10**15, 1, 0), (3, 2, 1), (10**15, 2, 1)])
    assert coded.items.tolist() == [3, 10**15]
    mixed = encode([(1, "w", "x"), ("1", "w", "x")])
    assert mixed.n_items == 2


def test_coded_labels_pass_straight_through() -> None:
    coded = encode([("a", "w", "x")])
    assert encode(coded) is coded
    assert isinstance(coded, CodedLabels)


# ---- majority vote ---------------------------------------------------------------------------


@given(int_triples)
@settings(max_examples=150, deadline=None)
def test_majority_vote_picks_a_most_frequent_label(rows: list[tuple[int, int, int]]) -> None:
    model = MajorityVote().fit(rows)
    for position, item in enumerate(model.items_.tolist()):
        votes = Counter(label for i, _, label in rows if i == item)
        top = max(votes.values())
        assert model.labels_[position] == min(label for label, n in votes.items() if n == top)
        expected = np.array([votes.get(c, 0) for c in model.classes_.tolist()]) / sum(votes.values())
        np.testing.assert_allclose(model.probas_[position], expected)


@given(int_triples, st.randoms(use_true_random=False))
@settings(max_examples=100, deadline=None)
def test_majority_vote_ignores_row_order(rows: list[tuple[int, int, int]], rng: Any) -> None:
    shuffled = list(rows)
    rng.shuffle(shuffled)
    np.testing.assert_array_equal(MajorityVote().fit(rows).probas_, MajorityVote().fit(shuffled).probas_)


def test_majority_vote_skills_are_agreement_with_the_majority() -> None:
    rows = [("a", "w1", 1), ("a", "w2", 1), ("a", "w3", 0), ("b", "w1", 0), ("b", "w3", 0)]
    assert MajorityVote().fit(rows).skills_.tolist() == [1.0, 1.0, 0.5]


def test_wawa_downweights_workers_who_disagree() -> None:
    # w3 disagrees with the majority everywhere, so on the item where it faces w4 alone, w4 wins.
    rows = [(i, w, "x") for i in range(4) for w in ("w1", "w2", "w4")] + [(i, "w3", "y") for i in range(4)]
    rows += [("tie", "w3", "y"), ("tie", "w4", "x")]
    assert Wawa().fit_predict(rows)["tie"] == "x"
    assert MajorityVote().fit_predict(rows)["tie"] == "x"  # a tie, won by the first class
    rows_flipped = [(i, w, lab.replace("x", "z")) for i, w, lab in rows]
    assert Wawa().fit_predict(rows_flipped)["tie"] == "z"
    assert MajorityVote().fit_predict(rows_flipped)["tie"] == "y"


# ---- model attributes ------------------------------------------------------------------------


def biased_rows() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 3, 200)
    rows = []
    for i in range(200):
        for w in range(6):
            if w == 5:  # a spammer who always answers 2
                label = 2
            elif rng.random() < 0.85:
                label = int(truth[i])
            else:
                label = int((truth[i] + 1) % 3)
            rows.append((i, f"w{w}", label))
    return pd.DataFrame(rows, columns=["item", "worker", "label"])


def test_dawid_skene_attributes() -> None:
    model = DawidSkene().fit(biased_rows())
    assert model.confusions_.shape == (6, 3, 3)
    np.testing.assert_allclose(model.confusions_.sum(axis=2), 1.0)
    np.testing.assert_allclose(model.priors_.sum(), 1.0)
    assert model.skills_[:5].min() > 0.75 > 0.45 > model.skills_[5]
    assert np.all(model.confusions_[5, :, 2] > 0.9)  # the spammer's every row says "2"
    assert 1 <= model.n_iter_ <= model.n_iter
    assert np.isfinite(model.loglik_)


def test_one_coin_glad_and_mace_find_the_spammer() -> None:
    data = biased_rows()
    for model in (OneCoinDawidSkene(), GLAD(), MACE()):
        skills = model.fit(data).skills_
        assert skills.argmin() == 5, type(model).__name__
    glad = GLAD().fit(data)
    assert glad.alphas_.shape == (6,) and glad.betas_.shape == glad.difficulties_.shape == (200,)
    mace = MACE().fit(data)
    np.testing.assert_allclose(mace.spamming_, 1.0 - mace.skills_)
    assert mace.spamming_[5] > 0.5 > mace.spamming_[:5].max()
    np.testing.assert_allclose(mace.strategies_.sum(axis=1), 1.0)


def test_mace_restarts_differ_only_through_random_state() -> None:
    data = biased_rows()
    a, b = MACE(random_state=1).fit(data), MACE(random_state=1).fit(data)
    np.testing.assert_array_equal(a.probas_, b.probas_)
    assert MACE(random_state=2).fit(data).loglik_ == pytest.approx(a.loglik_, abs=1e-3)


# ---- multi-choice --------------------------------------------------------------------------


def test_multilabel_aggregates_each_class_on_its_own() -> None:
    rows = [
        ("a", "w1", ["x", "y"]),
        ("a", "w2", ["x"]),
        ("a", "w3", ["x", "y"]),
        ("b", "w1", []),
        ("b", "w2", ["z"]),
        ("b", "w3", ["z"]),
    ]
    model = MultiLabel(MajorityVote()).fit(rows)
    assert model.fit_predict(rows) == {"a": frozenset({"x", "y"}), "b": frozenset({"z"})}
    assert model.classes_.tolist() == ["x", "y", "z"]
    np.testing.assert_allclose(model.probas_, [[1.0, 2 / 3, 0.0], [0.0, 0.0, 2 / 3]])
    assert set(model.estimators_) == {"x", "y", "z"}
    assert model.skills_.shape == (3, 3)


def test_multilabel_gold_clamps_each_class() -> None:
    frame = pd.DataFrame(
        {
            "item": ["a", "a", "b", "b"],
            "worker": ["w1", "w2", "w1", "w2"],
            "label": [["x"], ["y"], ["x"], ["x"]],
        }
    )
    predicted = MultiLabel(MajorityVote()).fit_predict(frame, gold={"a": ["x", "y"]})
    assert predicted == {"a": frozenset({"x", "y"}), "b": frozenset({"x"})}


def test_multilabel_default_estimator_is_dawid_skene() -> None:
    rng = np.random.default_rng(8)
    truth = [
        set(rng.choice(["x", "y", "z"], size=rng.integers(1, 3), replace=False).tolist()) for _ in range(100)
    ]
    rows = []
    for i, chosen in enumerate(truth):
        for w in range(5):
            noisy = {c for c in "xyz" if (c in chosen) != (rng.random() < 0.1)}
            rows.append((i, w, sorted(noisy)))
    model = MultiLabel().fit(rows)
    assert all(isinstance(e, DawidSkene) for e in model.estimators_.values())
    assert np.mean([model.labels_[i] == frozenset(truth[i]) for i in range(100)]) >= 0.85


def test_multilabel_rejects_single_labels() -> None:
    with pytest.raises(ValueError, match="list or set"):
        MultiLabel().fit([("a", "w1", "x")])
