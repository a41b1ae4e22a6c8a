"""Adaptive overlap decisions and the incremental Bayes posterior."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.quality.decision import (
    item_needs_another_label,
    item_posterior,
    min_labels_to_target,
    needs_another_label,
    update_posterior,
)


def test_needs_another_label_hand_cases() -> None:
    posterior = np.array([[0.5, 0.5], [0.99, 0.01], [0.6, 0.4], [0.6, 0.4], [0.99, 0.01]])
    n_labels = np.array([0, 3, 3, 5, 1])
    need = needs_another_label(posterior, n_labels, overlap=3, max_overlap=5)
    # short of overlap; confident; unsure and under budget; unsure but at budget; short of overlap.
    assert need.tolist() == [True, False, True, False, True]


def test_default_max_overlap_is_overlap() -> None:
    unsure = np.array([[0.5, 0.5]])
    assert needs_another_label(unsure, [1], overlap=2).tolist() == [True]
    assert needs_another_label(unsure, [2], overlap=2).tolist() == [False]


def test_single_item_forms() -> None:
    assert item_needs_another_label([0.7, 0.3], 1, overlap=1, max_overlap=3)
    assert not item_needs_another_label([0.97, 0.03], 1, overlap=1, max_overlap=3)
    assert not item_needs_another_label([0.7, 0.3], 3, overlap=1, max_overlap=3)
    assert needs_another_label(np.array([0.7, 0.3]), 1, max_overlap=3).shape == ()


def test_unknown_posterior_counts_as_unsure() -> None:
    assert needs_another_label(np.array([[np.nan, np.nan]]), [1], max_overlap=2).tolist() == [True]


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_overlap"):
        needs_another_label(np.array([[0.5, 0.5]]), [0], overlap=3, max_overlap=2)
    with pytest.raises(ValueError, match="target_confidence"):
        needs_another_label(np.array([[0.5, 0.5]]), [0], target_confidence=1.5)
    with pytest.raises(ValueError, match="n_labels"):
        needs_another_label(np.array([[0.5, 0.5]]), [-1])


settings_strategy = st.tuples(st.integers(1, 5), st.integers(0, 5)).map(lambda t: (t[0], t[0] + t[1]))


@settings(max_examples=300, deadline=None)
@given(
    confidences=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30),
    counts=st.lists(st.integers(0, 12), min_size=30, max_size=30),
    overlaps=settings_strategy,
    target=st.floats(0.5, 1.0),
)
def test_never_exceeds_max_overlap_and_is_monotone_in_confidence(
    confidences: list[float], counts: list[int], overlaps: tuple[int, int], target: float
) -> None:
    overlap, max_overlap = overlaps
    top = np.array(confidences)
    posterior = np.stack([top, 1.0 - top], axis=1)
    n_labels = np.array(counts[: len(top)])
    need = needs_another_label(
        posterior, n_labels, target_confidence=target, overlap=overlap, max_overlap=max_overlap
    )
    assert not need[n_labels >= max_overlap].any()
    assert need[n_labels < overlap].all()
    # Raising an item's confidence can only remove its need for more labels.
    surer = np.stack([np.maximum(top, 1.0 - top) + 0.0, np.minimum(top, 1.0 - top)], axis=1)
    higher = np.minimum(surer[:, 0] + 0.1, 1.0)
    need_higher = needs_another_label(
        np.stack([higher, 1.0 - higher], axis=1),
        n_labels,
        target_confidence=target,
        overlap=overlap,
        max_overlap=max_overlap,
    )
    need_surer = needs_another_label(
        surer, n_labels, target_confidence=target, overlap=overlap, max_overlap=max_overlap
    )
    assert not (need_higher & ~need_surer).any()
    # And more labels never create a need that fewer did not have, once overlap is met.
    need_more = needs_another_label(
        posterior, n_labels + 1, target_confidence=target, overlap=overlap, max_overlap=max_overlap
    )
    assert not (need_more & ~need).any()


def test_min_labels_to_target_hand_case() -> None:
    # Binary, workers right 80 %: each agreeing label multiplies the odds by 4.
    # From 50/50: 16/17 = 0.941 after two labels, 64/65 = 0.985 after three.
    assert min_labels_to_target([0.5, 0.5], 0, worker_accuracy=0.8) == 3
    assert min_labels_to_target([0.99, 0.01], 2, worker_accuracy=0.8) == 0
    assert min_labels_to_target([0.99, 0.01], 0, worker_accuracy=0.8, overlap=2) == 2
    assert math.isinf(float(min_labels_to_target([0.5, 0.5], 0, worker_accuracy=0.5)))
    many = min_labels_to_target(np.array([[0.5, 0.5], [0.9, 0.1]]), np.array([0, 1]), worker_accuracy=0.8)
    assert many.tolist() == [3.0, 1.0]


def test_item_posterior_matches_brute_force_bayes() -> None:
    priors = np.array([0.5, 0.3, 0.2])
    confusions = np.array(
        [
            [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]],
            [[0.6, 0.2, 0.2], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]],
        ]
    )
    labels, workers = [1, 1, 2], [0, 1, 0]
    expected = priors * confusions[0][:, 1] * confusions[1][:, 1] * confusions[0][:, 2]
    expected /= expected.sum()
    got = item_posterior(labels, priors, workers=workers, confusions=confusions)
    assert got == pytest.approx(expected)
    per_label = item_posterior(labels, priors, confusions=confusions[workers])
    assert per_label == pytest.approx(expected)


def test_one_coin_skills_equal_their_confusion_matrices() -> None:
    skills = np.array([0.9, 0.6, 0.75])
    n_classes = 4
    matrices = np.array(
        [
            np.full((n_classes, n_classes), (1 - s) / (n_classes - 1)) + np.eye(n_classes) * (s - (1 - s) / 3)
            for s in skills
        ]
    )
    priors = np.array([0.1, 0.2, 0.3, 0.4])
    labels, workers = [0, 3, 0, 2], [0, 1, 2, 1]
    by_skill = item_posterior(labels, priors, workers=workers, skills=skills)
    by_matrix = item_posterior(labels, priors, workers=workers, confusions=matrices)
    assert by_skill == pytest.approx(by_matrix)


def test_item_posterior_edge_cases() -> None:
    priors = np.array([2.0, 1.0, 1.0])  # weights are normalised
    assert item_posterior([], priors, skills=0.8) == pytest.approx([0.5, 0.25, 0.25])
    many = item_posterior([0] * 5000, priors, skills=0.9)  # no underflow in log space
    assert np.isfinite(many).all() and many[0] == pytest.approx(1.0)
    perfect = item_posterior([1], priors, skills=1.0)  # a zero likelihood weakens, never NaN
    assert np.isfinite(perfect).all() and perfect[1] > 0.999
    with pytest.raises(ValueError, match="exactly one"):
        item_posterior([0], priors)
    with pytest.raises(ValueError, match="class indices"):
        item_posterior([3], priors, skills=0.8)
    with pytest.raises(ValueError, match="skills"):
        item_posterior([0], priors, skills=1.2)


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(st.integers(0, 2), max_size=12),
    skills=st.lists(st.floats(0.05, 0.99), min_size=12, max_size=12),
    priors=st.lists(st.floats(0.05, 1.0), min_size=3, max_size=3),
)
def test_incremental_updates_equal_the_batch_posterior(
    labels: list[int], skills: list[float], priors: list[float]
) -> None:
    posterior = np.asarray(priors) / np.sum(priors)
    for label, skill in zip(labels, skills, strict=False):
        posterior = update_posterior(posterior, label, skill=skill)
    batch = item_posterior(labels, priors, skills=skills[: len(labels)])
    assert posterior == pytest.approx(batch, abs=1e-9)
    assert posterior.sum() == pytest.approx(1.0)


_control_votes = st.integers(2, 5).flatmap(
    lambda k: st.tuples(
        st.lists(st.tuples(st.integers(0, k - 1), st.floats(0.01, 0.99)), max_size=6),
        st.just(k),
    )
)


@given(st.lists(_control_votes, max_size=4))
def test_least_confidence_is_the_weakest_controls_posterior(
    controls: list[tuple[list[tuple[int, float]], int]],
) -> None:
    """The queue's adaptive-overlap confidence: the smallest, over the item's controls, of the
    largest posterior of the control's votes; 1.0 for a control without votes."""
    from labelmill.quality.decision import least_confidence

    votes = [([label for label, _ in pairs], [skill for _, skill in pairs], k) for pairs, k in controls]
    got = least_confidence(votes)
    each = [
        float(item_posterior(labels, np.full(k, 1.0 / k), skills=skills).max()) if labels else 1.0
        for labels, skills, k in votes
    ]
    assert got == pytest.approx(min(each, default=1.0))
    assert least_confidence([*votes, ([], [], 3)]) == pytest.approx(got)  # no votes: no doubt
    # a largest posterior is never below uniform
    assert min((1.0 / k for labels, _, k in votes if labels), default=1.0) - 1e-9 <= got <= 1.0
