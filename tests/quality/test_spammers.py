"""Spammer detection on synthetic workforces with planted spammers of each kind."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.quality.spammers import AnnotatorFlag, SpammerConfig, detect_spammers

N_CLASSES = 4
CLASS_MIX = np.array([0.4, 0.3, 0.2, 0.1])


@dataclass
class Workforce:
    """Labels from honest workers plus planted spammers, with the side data the platform records."""

    items: list[int] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    truth: dict[int, int] = field(default_factory=dict)

    @property
    def data(self) -> dict[str, list[Any]]:
        return {"item": self.items, "worker": self.workers, "label": self.labels}

    def majority(self) -> dict[int, int]:
        votes: dict[int, np.ndarray] = {}
        for item, label in zip(self.items, self.labels, strict=True):
            votes.setdefault(item, np.zeros(N_CLASSES))[label] += 1
        return {item: int(np.argmax(v)) for item, v in votes.items()}


def make_workforce(seed: int = 0, n_items: int = 4000, per_item: int = 5) -> Workforce:
    rng = np.random.default_rng(seed)
    honest = {f"good{i}": rng.uniform(0.65, 0.95) for i in range(30)}
    spammers = ["random", "constant", "first_option", "too_fast"]
    pool = list(honest) + spammers
    force = Workforce()
    for item in range(n_items):
        truth = int(rng.choice(N_CLASSES, p=CLASS_MIX))
        force.truth[item] = truth
        shown = rng.permutation(N_CLASSES)  # the UI shuffles the options per task
        for worker in rng.choice(pool, size=per_item, replace=False):
            seconds = float(rng.lognormal(np.log(8.0), 0.4))
            if worker in honest:
                right = rng.random() < honest[worker]
                label = truth if right else int(rng.choice([c for c in range(N_CLASSES) if c != truth]))
            elif worker == "constant":
                label = 0
            elif worker == "first_option":
                label = int(shown[0])
            else:  # random and too_fast answer uniformly at random
                label = int(rng.integers(N_CLASSES))
                if worker == "too_fast":
                    seconds = float(rng.uniform(0.2, 1.0))
            force.items.append(item)
            force.workers.append(str(worker))
            force.labels.append(label)
            force.durations.append(seconds)
            force.positions.append(int(np.flatnonzero(shown == label)[0]))
    return force


def by_worker(flags: list[AnnotatorFlag]) -> dict[Any, AnnotatorFlag]:
    return {flag.worker: flag for flag in flags}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_spammers_are_flagged_and_good_workers_are_not(seed: int) -> None:
    force = make_workforce(seed)
    flags = by_worker(
        detect_spammers(
            force.data,
            durations=force.durations,
            positions=force.positions,
            gold={item: label for item, label in force.truth.items() if item % 10 == 0},
        )
    )
    expected_rule = {
        "constant": "constant",
        "first_option": "position",
        "too_fast": "too_fast",
        "random": "informedness",
    }
    for worker, rule in expected_rule.items():
        flag = flags[worker]
        assert flag.is_spammer, (worker, flag)
        assert flag.evidence[rule] >= 0.5, (worker, flag)
        assert flag.reasons
    honest = [flag for worker, flag in flags.items() if worker.startswith("good")]
    assert honest and not any(flag.is_spammer for flag in honest), [f for f in honest if f.is_spammer]
    assert all(0.0 <= flag.score <= 1.0 for flag in flags.values())


def test_each_rule_alone_catches_its_spammer() -> None:
    force = make_workforce(3)
    labels_only = by_worker(detect_spammers(force.data))
    assert labels_only["constant"].evidence["constant"] >= 0.5
    for worker in ("random", "first_option", "too_fast", "constant"):  # all answer blind to the item
        assert labels_only[worker].evidence["informedness"] >= 0.5, labels_only[worker]
    assert not any(labels_only[f"good{i}"].is_spammer for i in range(30))
    only_positions = by_worker(detect_spammers(force.data, positions=force.positions))
    assert only_positions["first_option"].evidence["position"] == 1.0
    assert "option #1" in only_positions["first_option"].reasons[0]
    only_times = by_worker(detect_spammers(force.data, durations=force.durations))
    assert only_times["too_fast"].is_spammer
    assert any(reason.startswith("too fast") for reason in only_times["too_fast"].reasons)
    only_gold = by_worker(detect_spammers(force.data, gold=force.truth))
    assert only_gold["random"].is_spammer and only_gold["constant"].is_spammer
    assert not any(only_gold[f"good{i}"].is_spammer for i in range(30))


def test_result_is_sorted_by_score_and_lists_every_worker() -> None:
    force = make_workforce(4)
    flags = detect_spammers(force.data)
    assert [f.score for f in flags] == sorted((f.score for f in flags), reverse=True)
    assert {f.worker for f in flags} == set(force.workers)
    assert all(f.n_labels == force.workers.count(f.worker) for f in flags)


def test_mace_spamming_probability_supports_but_never_makes_a_flag() -> None:
    # Issue 16: MACE (which presumes uniform classes) gave the best annotator the highest score.
    force = make_workforce(5)
    spamming = {worker: 0.05 for worker in set(force.workers)} | {"good3": 0.95, "constant": 0.9}
    flags = by_worker(detect_spammers(force.data, spamming=spamming))
    assert not flags["good3"].is_spammer and flags["good3"].evidence["spamming"] == 0.95
    assert flags["constant"].is_spammer and "MACE" in flags["constant"].reasons[-1]
    with pytest.raises(ValueError, match="spamming"):
        detect_spammers(force.data, spamming={"good3": 1.5})


def test_too_little_evidence_is_never_flagged() -> None:
    rows = [(i, "good", i % 3) for i in range(60)] + [(i, "other", (i + 1) % 3) for i in range(60)]
    rows += [(i, "newcomer", 0) for i in range(5)]
    flags = by_worker(detect_spammers(rows, durations=[5.0] * 120 + [0.1] * 5, spamming={"newcomer": 1.0}))
    assert not flags["newcomer"].is_spammer
    assert flags["newcomer"].score == 0.0
    assert "too little evidence" in flags["newcomer"].reasons[0]


def test_skewed_classes_do_not_make_honest_workers_constant() -> None:
    # 90 % of items are class 0; honest workers mostly answer 0 and must not look constant.
    rng = np.random.default_rng(6)
    rows = []
    for item in range(400):
        truth = 0 if rng.random() < 0.9 else 1
        for worker in rng.choice(10, size=3, replace=False):
            label = truth if rng.random() < 0.9 else 1 - truth
            rows.append((item, f"w{worker}", label))
    assert not any(flag.is_spammer for flag in detect_spammers(rows))


def test_side_data_must_align_with_the_label_rows() -> None:
    force = make_workforce(7, n_items=50)
    with pytest.raises(ValueError, match="durations"):
        detect_spammers(force.data, durations=force.durations[:-1])
    with pytest.raises(ValueError, match="min_informedness"):
        SpammerConfig(min_informedness=0.0)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 30), st.sampled_from(["a", "b", "c", "d"]), st.integers(0, 2)), max_size=150
    ),
    min_shared=st.integers(1, 40),
    gold_every=st.integers(1, 5),
)
def test_scores_are_bounded_and_evidence_is_required(
    rows: list[tuple[int, str, int]], min_shared: int, gold_every: int
) -> None:
    durations = [float(i % 7) for i in range(len(rows))]
    gold = {item: label for item, _, label in rows if item % gold_every == 0}
    config = SpammerConfig(min_shared=min_shared, min_gold=min_shared, min_timed=min_shared, n_bootstrap=20)
    flags = detect_spammers(rows, durations=durations, gold=gold, config=config)
    for flag in flags:
        assert 0.0 <= flag.score <= 1.0
        assert flag.is_spammer == (flag.score >= 0.5)
        if flag.n_labels < min_shared:
            assert not flag.is_spammer
