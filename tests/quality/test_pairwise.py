"""Bradley–Terry with ties, per-item pairwise votes, and ranking consensus."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from labelmill.quality.pairwise import (
    BradleyTerry,
    Comparison,
    kendall_tau,
    pairwise_consensus,
    pairwise_skills,
    ranking_consensus,
)


def simulate_davidson(strengths: np.ndarray, nu: float, n: int, seed: int) -> list[tuple[str, str, str]]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(len(strengths), 2, replace=False)
        pa, pb = np.exp(strengths[a]), np.exp(strengths[b])
        pt = nu * np.sqrt(pa * pb)
        choice = rng.choice(["a", "b", "tie"], p=np.array([pa, pb, pt]) / (pa + pb + pt))
        rows.append((f"r{a}", f"r{b}", str(choice)))
    return rows


@pytest.mark.parametrize("ties", ["davidson", "rao-kupper", "half", "drop"])
def test_bt_recovers_the_true_order_from_simulated_ties(ties: str) -> None:
    strengths = np.linspace(-1.5, 1.5, 8)
    rows = simulate_davidson(strengths, nu=0.6, n=3000, seed=1)
    assert sum(r[2] == "tie" for r in rows) > 300
    bt = BradleyTerry(ties=ties).fit(rows)
    truth = [f"r{k}" for k in range(7, -1, -1)]
    assert kendall_tau(bt.ranking_, truth) > 0.9
    assert bt.ranking_[0] == "r7" and bt.ranking_[-1] == "r0"
    if ties == "davidson":
        assert bt.tie_ == pytest.approx(0.6, rel=0.25)
        fitted = np.array([bt.scores_[f"r{k}"] for k in range(8)])
        assert np.corrcoef(fitted, strengths)[0, 1] > 0.98
    if ties == "rao-kupper":
        assert bt.tie_ > 1


def test_bt_with_many_responses_uses_the_sparse_solver() -> None:
    strengths = np.random.default_rng(2).normal(size=700)  # above the dense-Hessian limit
    rows = simulate_davidson(strengths, nu=0.4, n=14000, seed=3)
    bt = BradleyTerry().fit(rows)
    fitted = np.array([bt.scores_.get(f"r{k}", 0.0) for k in range(len(strengths))])
    assert np.corrcoef(fitted, strengths)[0, 1] > 0.85
    assert bt.tie_ == pytest.approx(0.4, rel=0.2)


def test_bt_hand_case_and_probabilities() -> None:
    bt = BradleyTerry().fit([("x", "y", "a"), ("x", "y", "a"), ("x", "y", "tie"), ("y", "z", "a")])
    assert bt.ranking_ == ["x", "y", "z"]
    assert bt.items_ == ["x", "y", "z"]
    assert sum(bt.scores_.values()) == pytest.approx(0.0, abs=1e-6)  # the ridge prior centres scores
    proba = bt.predict_proba([("x", "y"), ("y", "x"), ("z", "unseen")])
    assert proba.sum(axis=1) == pytest.approx([1, 1, 1])
    assert proba[0, 0] > proba[0, 1] and proba[0] == pytest.approx(proba[1][[1, 0, 2]])


def test_undefeated_and_disconnected_responses_stay_finite() -> None:
    rows = [("champ", f"r{k}", "a") for k in range(5)] + [("p", "q", "a")] * 3
    bt = BradleyTerry().fit(rows)
    assert all(np.isfinite(s) and abs(s) < 30 for s in bt.scores_.values())
    assert bt.ranking_[0] == "champ"
    assert bt.tie_ == 0.0  # no ties in the data


def test_bt_accepts_full_rows_dataframes_and_weights() -> None:
    rows = [Comparison("q1", "w1", "x", "y", "a"), Comparison("q2", "w2", "y", "x", "b")]
    frame = pd.DataFrame(rows)
    a, b = BradleyTerry().fit(rows), BradleyTerry().fit(frame)
    assert a.scores_ == pytest.approx(b.scores_)
    heavy = BradleyTerry().fit([("x", "y", "a"), ("x", "y", "b")], weights=[3.0, 1.0])
    assert heavy.ranking_ == ["x", "y"]


def test_bt_errors() -> None:
    with pytest.raises(ValueError, match=r"row 1, field 'choice'"):
        BradleyTerry().fit([("x", "y", "a"), ("x", "y", "A")])
    with pytest.raises(ValueError, match="compared with itself"):
        BradleyTerry().fit([("x", "x", "a")])
    with pytest.raises(ValueError, match="no rows"):
        BradleyTerry().fit([])
    with pytest.raises(ValueError, match="prior must be positive"):
        BradleyTerry(prior=0.0).fit([("x", "y", "a")])
    with pytest.raises(ValueError, match="ties must be"):
        BradleyTerry(ties="ignore").fit([("x", "y", "a")])


comparisons = st.lists(
    st.tuples(st.sampled_from("pqrst"), st.sampled_from("pqrst"), st.sampled_from(["a", "b", "tie"])).filter(
        lambda r: r[0] != r[1]
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=40, deadline=None)
@given(rows=comparisons, seed=st.integers(0, 2**16), ties=st.sampled_from(["davidson", "rao-kupper"]))
def test_bt_scores_do_not_depend_on_comparison_order_or_sides(
    rows: list[tuple[str, str, str]], seed: int, ties: str
) -> None:
    rng = random.Random(seed)
    flip = {"a": "b", "b": "a", "tie": "tie"}
    shuffled = [
        (b, a, flip[c]) if rng.random() < 0.5 else (a, b, c) for a, b, c in rng.sample(rows, len(rows))
    ]
    first, second = BradleyTerry(ties=ties).fit(rows), BradleyTerry(ties=ties).fit(shuffled)
    assert first.scores_ == second.scores_  # merged, canonical rows: exactly the same optimisation
    assert first.tie_ == second.tie_


# --------------------------------------------------------------------------- per-item votes


def test_pairwise_consensus_majority_and_orientation() -> None:
    labels = [
        ("q1", "w1", "r1", "r2", "a"),
        ("q1", "w2", "r1", "r2", "a"),
        ("q1", "w3", "r2", "r1", "b"),  # saw the pair swapped: also prefers r1
        ("q2", "w1", "r1", "r2", "tie"),
        ("q2", "w2", "r1", "r2", "b"),
        ("q2", "w3", "r1", "r2", "b"),
    ]
    result = pairwise_consensus(labels)
    assert result["q1"].choice == "a" and result["q2"].choice == "b"
    assert result["q1"].confidence > result["q2"].confidence > 0.5
    choice, confidence = result["q1"]  # unpacks as (choice, confidence)
    assert choice == "a" and 0 < confidence <= 1
    skills = pairwise_skills(labels)
    assert skills["w2"] == skills["w3"] > skills["w1"]


def test_pairwise_consensus_with_given_skills_follows_the_expert() -> None:
    labels = [("q", "expert", "x", "y", "a"), ("q", "n1", "x", "y", "b"), ("q", "n2", "x", "y", "tie")]
    result = pairwise_consensus(labels, skills={"expert": 0.95, "n1": 0.4, "n2": 0.4})
    assert result["q"].choice == "a"


def test_pairwise_consensus_of_nothing_is_empty() -> None:
    assert pairwise_consensus([]) == {} and pairwise_skills([]) == {}


def test_pairwise_consensus_rejects_several_pairs_per_item() -> None:
    with pytest.raises(ValueError, match="item 'q' compares more than one pair"):
        pairwise_consensus([("q", "w", "x", "y", "a"), ("q", "w", "x", "z", "a")])


def test_pairwise_em_finds_the_spammer() -> None:
    rng = np.random.default_rng(4)
    truth = rng.choice(["a", "b", "tie"], 150, p=[0.45, 0.45, 0.1])
    labels: list[tuple[Any, ...]] = []
    for q, t in enumerate(truth):
        for w, skill in (("good1", 0.9), ("good2", 0.85), ("good3", 0.8), ("spam", 0.34)):
            answer = t if rng.random() < skill else rng.choice([c for c in ("a", "b", "tie") if c != t])
            labels.append((q, w, "x", "y", str(answer)))
    result = pairwise_consensus(labels)
    accuracy = np.mean([result[q].choice == t for q, t in enumerate(truth)])
    assert accuracy > 0.93
    skills = pairwise_skills(labels)
    assert skills["spam"] < 0.5 < min(skills["good1"], skills["good2"], skills["good3"])


@settings(max_examples=40, deadline=None)
@given(
    votes=st.lists(
        st.lists(st.sampled_from(["a", "b", "tie"]), min_size=1, max_size=4), min_size=1, max_size=5
    ),
    seed=st.integers(0, 2**16),
)
def test_pairwise_consensus_ignores_label_order(votes: list[list[str]], seed: int) -> None:
    labels = [(q, f"w{k}", "x", "y", c) for q, item in enumerate(votes) for k, c in enumerate(item)]
    shuffled = random.Random(seed).sample(labels, len(labels))
    a, b = pairwise_consensus(labels), pairwise_consensus(shuffled)
    assert {q: r.choice for q, r in a.items()} == {q: r.choice for q, r in b.items()}
    for q in a:
        assert a[q].confidence == pytest.approx(b[q].confidence)
        assert 1 / 3 - 1e-9 <= a[q].confidence <= 1


# --------------------------------------------------------------------------- rankings


def test_kendall_tau_matches_scipy() -> None:
    rng = random.Random(0)
    items = list("abcdefg")
    for _ in range(20):
        a, b = rng.sample(items, len(items)), rng.sample(items, len(items))
        expected = stats.kendalltau([a.index(x) for x in items], [b.index(x) for x in items]).statistic
        assert kendall_tau(a, b) == pytest.approx(expected)
    assert kendall_tau(["a", "b"], ["c"]) == 1.0
    assert kendall_tau(["a", "b", "c"], ["c", "b"]) == -1.0  # over the common responses only


def test_ranking_consensus_hand_case() -> None:
    rankings = {"prompt": {"w1": ["r2", "r1", "r3"], "w2": ["r2", "r3", "r1"], "w3": ["r1", "r2", "r3"]}}
    for method in ("bradley_terry", "borda"):
        result = ranking_consensus(rankings, method=method)["prompt"]
        assert result.order == ["r2", "r1", "r3"]
        assert result.agreement == pytest.approx({"w1": 1.0, "w2": 1 / 3, "w3": 1 / 3})
        assert result.confidence == pytest.approx(5 / 9)
    borda = ranking_consensus(rankings, method="borda")["prompt"]
    assert borda.scores == {"r1": 3.0, "r2": 5.0, "r3": 1.0}


def test_ranking_weights_and_partial_rankings() -> None:
    rankings = {"p": {"expert": ["a", "b", "c"], "novice": ["c", "b", "a"], "partial": ["a", "c"]}}
    result = ranking_consensus(rankings, weights={"expert": 2.0, "novice": 1.0})["p"]
    assert result.order[0] == "a"
    plain = ranking_consensus({"p": [["x", "y"]]})["p"]
    assert plain.order == ["x", "y"] and plain.confidence == 1.0


def test_ranking_errors() -> None:
    with pytest.raises(ValueError, match=r"item 'p', annotator 'w': a response appears twice"):
        ranking_consensus({"p": {"w": ["a", "a"]}})
    with pytest.raises(ValueError, match="method must be"):
        ranking_consensus({}, method="kemeny")


@settings(max_examples=40, deadline=None)
@given(order=st.permutations(["r1", "r2", "r3", "r4", "r5"]), n=st.integers(1, 4))
def test_identical_rankings_come_back_with_confidence_one(order: list[str], n: int) -> None:
    result = ranking_consensus({"p": [list(order)] * n})["p"]
    assert result.order == list(order) and result.confidence == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(
    rankings=st.lists(st.permutations(["r1", "r2", "r3", "r4"]), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_ranking_consensus_ignores_annotator_order(rankings: list[list[str]], seed: int) -> None:
    shuffled = random.Random(seed).sample(rankings, len(rankings))
    for method in ("bradley_terry", "borda"):
        a = ranking_consensus({"p": rankings}, method=method)["p"]
        b = ranking_consensus({"p": shuffled}, method=method)["p"]
        assert a.order == b.order and a.confidence == pytest.approx(b.confidence)
