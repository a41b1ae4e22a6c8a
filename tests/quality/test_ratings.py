"""Rating consensus: median, trimmed mean, and the bias-corrected annotator model."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from labelmill.quality.ratings import (
    RatingAggregator,
    group_median,
    group_trimmed_mean,
    rating_consensus,
)

LABELS = [
    ("i1", "ann", 4),
    ("i1", "bob", 5),
    ("i1", "cy", 4),
    ("i2", "ann", 1),
    ("i2", "bob", 2),
    ("i2", "cy", 2),
]


def test_median_and_trimmed_mean_hand_values() -> None:
    median = rating_consensus(LABELS, method="median", scale=(1, 5))
    assert median.items["i1"].value == 4 and median.items["i2"].value == 2
    assert median.items["i1"].n_ratings == 3
    # bob is 1 above the median on i1, ann 1 below on i2: summed residuals / (2 ratings + 1 pseudo-rating)
    assert median.bias["bob"] == pytest.approx(1 / 3) and median.bias["ann"] == pytest.approx(-1 / 3)
    trimmed = rating_consensus(LABELS, method="trimmed_mean", trim=0.0, rounding=False)
    assert trimmed.items["i1"].value == pytest.approx(13 / 3)
    assert trimmed.items["i1"].score == pytest.approx(13 / 3)


def test_rounding_halves_up_and_clips_to_the_scale() -> None:
    labels = [("i", "a", 3), ("i", "b", 4), ("j", "a", 7), ("j", "b", 9)]
    result = rating_consensus(labels, scale=(1, 5))
    assert result.items["i"].value == 4 and result.items["i"].score == pytest.approx(3.5)
    assert result.items["j"].value == 5
    assert isinstance(result.items["i"].value, int)


def test_confidence_grows_with_agreement() -> None:
    split = rating_consensus([("i", "a", 1), ("i", "b", 5), ("j", "a", 3), ("j", "b", 3)], scale=(1, 5))
    assert split.items["i"].confidence < split.items["j"].confidence
    assert all(0 <= item.confidence <= 1 for item in split.items.values())


@pytest.mark.parametrize("method", ["median", "trimmed_mean", "bias_corrected"])
def test_a_single_rating_is_not_a_confident_consensus(method: str) -> None:
    result = rating_consensus([("i", "a", 3), ("j", "b", 4)], method=method, scale=(1, 5))
    assert result.items["i"].value == 3
    assert result.items["i"].confidence < 0.9


@pytest.mark.parametrize("method", ["median", "trimmed_mean", "bias_corrected"])
def test_unanimous_ratings_give_confidence_one(method: str) -> None:
    labels = [(i, w, i % 5 + 1) for i in range(6) for w in "abc"]
    result = rating_consensus(labels, method=method, scale=(1, 5))
    for i in range(6):
        assert result.items[i].value == i % 5 + 1
        assert result.items[i].confidence == pytest.approx(1.0)
    assert all(abs(b) < 1e-9 for b in result.bias.values())


def test_dataframe_and_mapping_rows() -> None:
    frame = pd.DataFrame(LABELS, columns=["item", "worker", "rating"])
    rows = [{"item": i, "worker": w, "rating": r} for i, w, r in LABELS]
    a = rating_consensus(frame, method="bias_corrected")
    b = rating_consensus(rows, method="bias_corrected")
    assert a.items == b.items


def test_bad_input_names_the_row_and_field() -> None:
    with pytest.raises(ValueError, match=r"labels row 1, field 'rating'"):
        rating_consensus([("i", "a", 3), ("i", "b", "4")])
    with pytest.raises(ValueError, match="labels row 0"):
        rating_consensus([("i", "a")])
    with pytest.raises(ValueError, match="method must be"):
        rating_consensus(LABELS, method="mode")
    with pytest.raises(ValueError, match="no ratings"):
        rating_consensus([])


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.lists(st.integers(1, 7), min_size=1, max_size=7), min_size=1, max_size=6),
    trim=st.sampled_from([0.0, 0.1, 0.2, 0.3]),
)
def test_group_statistics_match_numpy_and_scipy(groups: list[list[int]], trim: float) -> None:
    g = np.repeat(np.arange(len(groups)), [len(x) for x in groups])
    v = np.concatenate([np.array(x, dtype=float) for x in groups])
    perm = np.random.default_rng(0).permutation(len(v))
    assert group_median(g[perm], v[perm], len(groups)) == pytest.approx([np.median(x) for x in groups])
    expected = [stats.trim_mean(x, trim) if len(x) > 2 else np.mean(x) for x in groups]
    assert group_trimmed_mean(g[perm], v[perm], len(groups), trim) == pytest.approx(expected)


@settings(max_examples=30, deadline=None)
@given(
    labels=st.lists(
        st.tuples(st.integers(0, 5), st.sampled_from("abcd"), st.integers(1, 5)),
        min_size=1,
        max_size=25,
        unique_by=lambda row: (row[0], row[1]),
    ),
    method=st.sampled_from(["median", "trimmed_mean", "bias_corrected"]),
    seed=st.integers(0, 2**16),
)
def test_consensus_ignores_row_order(labels: list[tuple[int, str, int]], method: str, seed: int) -> None:
    shuffled = random.Random(seed).sample(labels, len(labels))
    a = rating_consensus(labels, method=method, scale=(1, 5))
    b = rating_consensus(shuffled, method=method, scale=(1, 5))
    for item, rating in a.items.items():
        assert b.items[item].score == pytest.approx(rating.score, abs=1e-6)
        assert 1 <= rating.value <= 5 and 0 <= rating.confidence <= 1
    assert all(0 <= s <= 1 for s in a.skills.values())


def simulate(seed: int) -> tuple[list[tuple[int, int, float]], np.ndarray, np.ndarray]:
    """Raters with an additive bias and their own noise; each item gets 3 random raters."""
    rng = np.random.default_rng(seed)
    n_items, n_workers = 300, 12
    true = rng.uniform(1, 5, n_items)
    bias = rng.normal(0, 0.8, n_workers)
    noise = rng.uniform(0.2, 0.6, n_workers)
    rows = [
        (i, int(w), float(true[i] + bias[w] + rng.normal(0, noise[w])))
        for i in range(n_items)
        for w in rng.choice(n_workers, 3, replace=False)
    ]
    return rows, true, bias


@pytest.mark.parametrize("rescale", [False, True])
def test_bias_correction_beats_the_plain_mean_on_biased_raters(rescale: bool) -> None:
    rows, true, bias = simulate(5)
    result = rating_consensus(rows, method="bias_corrected", rounding=False, rescale=rescale)
    corrected = np.array([result.items[i].score for i in range(len(true))])
    mean = np.array([np.mean([r for i2, _, r in rows if i2 == i]) for i in range(len(true))])
    rmse_corrected = float(np.sqrt(np.mean((corrected - true) ** 2)))
    rmse_mean = float(np.sqrt(np.mean((mean - true) ** 2)))
    assert rmse_corrected < 0.7 * rmse_mean, (rmse_corrected, rmse_mean)
    estimated = np.array([result.bias[w] for w in range(len(bias))])
    assert np.corrcoef(estimated, bias)[0, 1] > 0.95


def test_one_wild_rating_does_not_drag_the_bias_corrected_score() -> None:
    rows, true, _ = simulate(6)
    rows = [*rows, (0, 99, 1000.0)]
    result = rating_consensus(rows, method="bias_corrected", rounding=False)
    assert abs(result.items[0].score - true[0]) < 1.0


def test_estimator_contract() -> None:
    model = RatingAggregator("bias_corrected", rescale=True)
    assert model.method == "bias_corrected" and not hasattr(model, "scores_")
    assert model.fit(LABELS) is model
    assert len(model.scores_) == len(model.items_) == 2
    assert len(model.bias_) == len(model.workers_) == 3
    assert model.n_iter_ >= 1
