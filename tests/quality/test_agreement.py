"""Agreement metrics against reference implementations (krippendorff, scikit-learn) and hand cases."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import krippendorff  # GPL-3.0: test oracle only
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import cohen_kappa_score

from labelmill.quality.agreement import (
    AGREEMENT_METRICS,
    Level,
    box_iou_agreement,
    cohen_kappa,
    encode_labels,
    fleiss_kappa,
    krippendorff_alpha,
    measure_agreement,
    pairwise_cohen_kappa,
    percent_agreement,
    span_f1_agreement,
)

LEVELS: tuple[Level, ...] = ("nominal", "ordinal", "interval", "ratio")


def triples(matrix: np.ndarray) -> list[tuple[int, int, float]]:
    """Reliability data (coders x units, NaN = missing) as (item, worker, label) rows."""
    coders, units = np.nonzero(~np.isnan(matrix))
    return [(int(u), int(c), float(matrix[c, u])) for c, u in zip(coders, units, strict=True)]


def reference_alpha(matrix: np.ndarray, level: Any, **kwargs: Any) -> float:
    """The krippendorff package's alpha, NaN where it refuses (no variation, nothing pairable)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            return float(krippendorff.alpha(matrix, level_of_measurement=level, **kwargs))
        except ValueError:
            return math.nan


def assert_same(got: float, expected: float, tol: float = 1e-9) -> None:
    if math.isnan(expected):
        assert math.isnan(got), f"expected NaN, got {got}"
    else:
        assert got == pytest.approx(expected, abs=tol)


# --------------------------------------------------------------------------- Krippendorff


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    matrix=arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 15)),
        elements=st.sampled_from([math.nan, math.nan, 0.0, 1.0, 2.0, 3.5, 7.0, -2.0, 2.0]),
    )
)
def test_alpha_matches_reference_on_any_reliability_data(matrix: np.ndarray) -> None:
    rows = triples(matrix)
    for level in LEVELS:
        assert_same(krippendorff_alpha(rows, level), reference_alpha(matrix, level))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("seed", range(6))
def test_alpha_matches_reference_on_seeded_random_matrices(level: Level, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_coders, n_units, n_values = rng.integers(2, 40), rng.integers(5, 400), rng.integers(2, 12)
    # Labels correlate with a per-unit truth so alpha is away from 0; some rows are mostly missing.
    truth = rng.integers(1, n_values + 1, size=n_units)
    noise = rng.integers(-1, 2, size=(n_coders, n_units)) * (rng.random((n_coders, n_units)) < 0.4)
    matrix = np.clip(truth + noise, 1, n_values).astype(np.float64)
    matrix[rng.random((n_coders, n_units)) < rng.uniform(0.1, 0.9)] = np.nan
    assert_same(krippendorff_alpha(triples(matrix), level), reference_alpha(matrix, level))


@pytest.mark.parametrize("level", LEVELS)
def test_alpha_with_many_values_and_mostly_missing(level: Level) -> None:
    rng = np.random.default_rng(11)
    matrix = (rng.normal(50, 10, size=(25, 300)) + rng.normal(0, 3, size=(1, 300))).round(0)  # ~70 values
    matrix[rng.random(matrix.shape) < 0.95] = np.nan
    assert_same(krippendorff_alpha(triples(matrix), level), reference_alpha(matrix, level))


@pytest.mark.parametrize("level", LEVELS)
def test_alpha_edge_cases(level: Level) -> None:
    all_agree = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, np.nan]])
    assert krippendorff_alpha(triples(all_agree), level) == pytest.approx(1.0)
    assert_same(krippendorff_alpha(triples(all_agree), level), reference_alpha(all_agree, level))
    one_value = np.array([[4.0, 4.0], [4.0, np.nan]])
    assert math.isnan(krippendorff_alpha(triples(one_value), level))
    one_item = np.array([[1.0], [2.0], [2.0]])
    assert_same(krippendorff_alpha(triples(one_item), level), reference_alpha(one_item, level))
    nothing_pairable = np.array([[1.0, np.nan], [np.nan, 2.0]])
    assert math.isnan(krippendorff_alpha(triples(nothing_pairable), level))
    assert math.isnan(krippendorff_alpha([], level))


def test_alpha_reference_examples() -> None:
    nan = np.nan
    data = [
        [nan, nan, nan, nan, nan, 3, 4, 1, 2, 1, 1, 3, 3, nan, 3],
        [1, nan, 2, 1, 3, 3, 4, 3, nan, nan, nan, nan, nan, nan, nan],
        [nan, nan, 2, 1, 3, 4, 4, nan, 2, 1, 1, 3, 3, nan, 4],
    ]
    rows = triples(np.array(data, dtype=float))
    assert krippendorff_alpha(rows, "nominal") == pytest.approx(0.691358, abs=1e-6)
    assert krippendorff_alpha(rows, "interval") == pytest.approx(0.810845, abs=1e-6)


def test_ordinal_alpha_on_named_values_needs_their_order() -> None:
    order = ["very low", "low", "mid", "high", "very high"]
    codes = np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, np.nan, np.nan, np.nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, np.nan, 3],
            [np.nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, np.nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, np.nan],
        ]
    )
    named = [(item, worker, order[int(label) - 1]) for item, worker, label in triples(codes)]
    expected = reference_alpha(codes, "ordinal")
    assert krippendorff_alpha(named, "ordinal", value_domain=order) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValueError, match="value_domain"):
        krippendorff_alpha(named, "ordinal")


def test_numeric_strings_from_csv_are_ordered_as_numbers() -> None:
    matrix = np.array([[1.0, 2.0, 10.0, 9.0], [2.0, 2.0, 10.0, 10.0], [1.0, 3.0, 9.0, np.nan]])
    as_strings = [(item, worker, f"{label:g}") for item, worker, label in triples(matrix)]
    numeric_levels: tuple[Level, ...] = ("ordinal", "interval", "ratio")
    for level in numeric_levels:
        assert krippendorff_alpha(as_strings, level) == pytest.approx(
            reference_alpha(matrix, level), abs=1e-9
        )


def test_alpha_rejects_unknown_level() -> None:
    with pytest.raises(ValueError, match="level"):
        krippendorff_alpha([(1, 1, 1), (1, 2, 1)], "cardinal")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- encoding


def test_encoding_keeps_the_last_label_and_drops_missing_ones() -> None:
    frame = pd.DataFrame(
        {
            "task": ["a", "a", "a", "b", "b", "c"],
            "worker": ["w1", "w2", "w1", "w1", "w2", "w1"],
            "label": ["x", "y", "y", None, "x", np.nan],
        }
    )
    enc = encode_labels(frame)
    assert (enc.n_items, enc.n_workers, enc.n_labels) == (2, 2, 3)  # "c" only had a missing label
    decoded = sorted(
        zip(enc.items[enc.item_idx], enc.workers[enc.worker_idx], enc.labels[enc.label_idx], strict=True)
    )
    assert decoded == [("a", "w1", "y"), ("a", "w2", "y"), ("b", "w2", "x")]
    assert percent_agreement(frame) == 1.0
    assert encode_labels(frame, keep_repeats=True).n_labels == 4


def test_encoding_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="worker"):
        encode_labels(pd.DataFrame({"item": [1], "annotator": ["a"], "label": [1]}))
    with pytest.raises(ValueError, match="triples"):
        encode_labels([(1, 2)])
    with pytest.raises(ValueError, match="row 1: worker is missing"):
        encode_labels([(1, "a", 1), (1, None, 1)])


# --------------------------------------------------------------------------- percent, Fleiss, Cohen


def test_percent_agreement_hand_cases() -> None:
    rows = [("i1", "a", "x"), ("i1", "b", "x"), ("i2", "a", "x"), ("i2", "b", "y"), ("i2", "c", "y")]
    rows += [("i3", "a", "z")]  # a lone label has nobody to agree with: dropped
    assert percent_agreement(rows) == pytest.approx((1.0 + 1 / 3) / 2)
    assert math.isnan(percent_agreement([("i1", "a", "x")]))


def test_fleiss_kappa_wikipedia_example() -> None:
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    rows = []
    for item, counts in enumerate(table):
        labels = [category for category, n in enumerate(counts) for _ in range(n)]
        rows += [(item, rater, label) for rater, label in enumerate(labels)]
    assert fleiss_kappa(rows) == pytest.approx(0.2099, abs=1e-4)
    assert round(fleiss_kappa(rows), 3) == 0.210


def test_fleiss_kappa_with_unequal_raters_per_item() -> None:
    rows = [("A", "w1", "a"), ("A", "w2", "a"), ("B", "w1", "a"), ("B", "w2", "b"), ("B", "w3", "b")]
    rows += [("C", "w1", "b")]
    # P̄ = (1 + 1/3) / 2; pooled shares a = 3/5, b = 2/5 so P_e = 13/25; kappa = 11/36.
    assert fleiss_kappa(rows) == pytest.approx(11 / 36)
    assert math.isnan(fleiss_kappa([("A", "w1", "a"), ("A", "w2", "a")]))


def test_fleiss_kappa_matches_statsmodels_when_installed() -> None:
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, size=60)
    labels = np.where(rng.random((60, 7)) < 0.6, truth[:, None], rng.integers(0, 3, size=(60, 7)))
    rows = [(item, rater, int(labels[item, rater])) for item in range(60) for rater in range(7)]
    table = np.stack([(labels == c).sum(axis=1) for c in range(3)], axis=1)
    assert fleiss_kappa(rows) == pytest.approx(inter_rater.fleiss_kappa(table, method="fleiss"), abs=1e-12)


label_lists = st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from("abcd")), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(pairs=label_lists)
def test_cohen_kappa_matches_sklearn(pairs: list[tuple[str, str]]) -> None:
    a, b = [x for x, _ in pairs], [y for _, y in pairs]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = float(cohen_kappa_score(a, b))
    assert_same(cohen_kappa(a, b), expected, tol=1e-12)


def test_cohen_kappa_skips_missing_pairs_and_checks_lengths() -> None:
    assert cohen_kappa([1, 2, None, 1], [1, 2, 2, 2]) == pytest.approx(
        cohen_kappa_score([1, 2, 1], [1, 2, 2])
    )
    with pytest.raises(ValueError, match="equally long"):
        cohen_kappa([1, 2], [1])


def naive_pairwise_kappa(rows: list[tuple[int, int, str]]) -> dict[tuple[int, int], float]:
    by_worker: dict[int, dict[int, str]] = {}
    for item, worker, label in rows:
        by_worker.setdefault(worker, {})[item] = label
    result = {}
    for w1 in by_worker:
        for w2 in by_worker:
            shared = sorted(by_worker[w1].keys() & by_worker[w2].keys())
            if w1 < w2 and len(shared) >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    a, b = [by_worker[w1][i] for i in shared], [by_worker[w2][i] for i in shared]
                    result[(w1, w2)] = float(cohen_kappa_score(a, b))
    return result


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 12), st.integers(0, 5), st.sampled_from("xyz")),
        min_size=0,
        max_size=80,
        unique_by=lambda r: (r[0], r[1]),
    )
)
def test_pairwise_cohen_kappa_matches_sklearn_per_pair(rows: list[tuple[int, int, str]]) -> None:
    workers, matrix = pairwise_cohen_kappa(rows)
    expected = naive_pairwise_kappa(rows)
    position = {w: i for i, w in enumerate(workers.tolist())}
    for i, w1 in enumerate(workers.tolist()):
        assert math.isnan(matrix[i, i])
        for w2 in workers.tolist():
            j = position[w2]
            assert_same(matrix[i, j], matrix[j, i])
            key = (min(w1, w2), max(w1, w2))
            if w1 != w2:
                assert_same(matrix[i, j], expected.get(key, math.nan))


def test_agreement_metrics_registry_and_result() -> None:
    frame = pd.DataFrame(
        {
            "item": [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4],
            "worker": ["a", "b", "c"] * 3 + ["a", "b"],
            "label": ["x", "x", "y", "y", "y", "y", "x", "x", "x", "y", "x"],
        }
    )
    assert set(AGREEMENT_METRICS) == {"krippendorff", "fleiss", "cohen", "percent"}
    for name, metric in AGREEMENT_METRICS.items():
        result = measure_agreement(frame, name)
        assert result.value == pytest.approx(metric(frame))
        assert (result.n_items, result.n_workers, result.n_labels) == (4, 3, 11)
    _, matrix = pairwise_cohen_kappa(frame)
    assert AGREEMENT_METRICS["cohen"](frame) == pytest.approx(np.nanmean(matrix[np.triu_indices(3, 1)]))
    with pytest.raises(ValueError, match="unknown agreement metric"):
        measure_agreement(frame, "scott")


# --------------------------------------------------------------------------- spans


def span(start: int, end: int, label: str) -> dict[str, Any]:
    return {"start": start, "end": end, "label": label}


def test_span_f1_hand_cases() -> None:
    result = span_f1_agreement(
        {
            "t1": {
                "w1": [span(0, 5, "PER"), span(10, 15, "LOC")],
                "w2": [span(0, 5, "PER"), span(10, 14, "LOC")],
            },
            "t2": {"w1": [span(0, 5, "PER")], "w2": [span(0, 5, "ORG")]},
            "t3": {"w1": [span(0, 3, "PER")]},  # one annotator: nothing to compare
            "t4": {"w1": [], "w2": []},  # both saw nothing: they agree
        }
    )
    assert (result.n_items, result.n_pairs) == (3, 3)
    assert result.exact_f1 == pytest.approx((0.5 + 0.0 + 1.0) / 3)
    assert result.overlap_f1 == pytest.approx((18 / 19 + 0.0 + 1.0) / 3)


def test_span_f1_averages_pairs_within_an_item() -> None:
    a, b = [span(0, 4, "X")], [span(0, 4, "X")]
    c = [span(0, 2, "X")]
    result = span_f1_agreement([{"w1": a, "w2": b, "w3": c}])
    assert result.exact_f1 == pytest.approx((1 + 0 + 0) / 3)
    assert result.overlap_f1 == pytest.approx((1 + 2 * 2 / 6 + 2 * 2 / 6) / 3)
    assert math.isnan(span_f1_agreement([]).exact_f1)


def test_span_f1_rejects_malformed_spans() -> None:
    with pytest.raises(ValueError, match="worker 'w2', span 0"):
        span_f1_agreement([{"w1": [], "w2": [{"start": 3, "label": "X"}]}])
    with pytest.raises(ValueError, match="before start"):
        span_f1_agreement([{"w1": [span(5, 2, "X")], "w2": []}])


span_lists = st.lists(
    st.builds(
        lambda s, n, label: span(s, s + n, label),
        st.integers(0, 30),
        st.integers(0, 8),
        st.sampled_from("AB"),
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(a=span_lists, b=span_lists)
def test_span_f1_properties(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    forward = span_f1_agreement([{"w1": a, "w2": b}])
    backward = span_f1_agreement([{"w1": b, "w2": a}])
    assert forward == backward
    assert 0.0 <= forward.exact_f1 <= 1.0 and 0.0 <= forward.overlap_f1 <= 1.0
    same = span_f1_agreement([{"w1": a, "w2": list(reversed(a))}])
    assert (same.exact_f1, same.overlap_f1) == (1.0, 1.0)


# --------------------------------------------------------------------------- boxes


def box(x: float, y: float, w: float, h: float, label: str = "car") -> dict[str, Any]:
    return {"x": x, "y": y, "w": w, "h": h, "label": label}


def test_box_agreement_hand_cases() -> None:
    half = box_iou_agreement([{"w1": [box(0, 0, 10, 10)], "w2": [box(0, 0, 10, 5)]}])
    assert (half.f1, half.mean_iou) == (pytest.approx(1.0), pytest.approx(0.5))
    strict = box_iou_agreement([{"w1": [box(0, 0, 10, 10)], "w2": [box(0, 0, 10, 5)]}], iou_threshold=0.6)
    assert strict.f1 == 0.0 and math.isnan(strict.mean_iou)
    crossed = box_iou_agreement(
        [{"w1": [box(0, 0, 10, 10), box(20, 0, 10, 10)], "w2": [box(20, 0, 10, 10), box(0, 0, 10, 10)]}]
    )
    assert (crossed.f1, crossed.mean_iou) == (1.0, 1.0)
    extra = box_iou_agreement([{"w1": [box(0, 0, 10, 10)], "w2": [box(0, 0, 10, 10), box(50, 50, 5, 5)]}])
    assert extra.f1 == pytest.approx(2 / 3)
    other_label = [{"w1": [box(0, 0, 10, 10, "car")], "w2": [box(0, 0, 10, 10, "bus")]}]
    assert box_iou_agreement(other_label).f1 == 0.0
    assert box_iou_agreement(other_label, match_labels=False).f1 == 1.0
    empty = box_iou_agreement({"img": {"w1": [], "w2": []}, "solo": {"w1": [box(0, 0, 1, 1)]}})
    assert (empty.f1, empty.n_items, empty.n_pairs) == (1.0, 1, 1)


def test_box_agreement_prefers_more_matches_over_one_tight_match() -> None:
    # A's first box overlaps both of B's; the best assignment matches both pairs.
    a = [box(0, 0, 10, 10), box(8, 0, 10, 10)]
    b = [box(4, 0, 10, 10), box(12, 0, 10, 10)]
    assert box_iou_agreement([{"w1": a, "w2": b}], iou_threshold=0.4).f1 == 1.0


def test_box_agreement_rejects_bad_boxes() -> None:
    with pytest.raises(ValueError, match="box 0"):
        box_iou_agreement([{"w1": [box(0, 0, -1, 3)], "w2": []}])
    with pytest.raises(ValueError, match="needs numeric"):
        box_iou_agreement([{"w1": [{"x": 0, "y": 0, "w": 1}], "w2": []}])


box_lists = st.lists(
    st.builds(
        box,
        st.integers(0, 20),
        st.integers(0, 20),
        st.integers(0, 10),
        st.integers(0, 10),
        st.sampled_from(["car", "bus"]),
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(a=box_lists, b=box_lists, threshold=st.sampled_from([0.1, 0.5, 0.9]))
def test_box_agreement_properties(a: list[dict[str, Any]], b: list[dict[str, Any]], threshold: float) -> None:
    forward = box_iou_agreement([{"w1": a, "w2": b}], iou_threshold=threshold)
    backward = box_iou_agreement([{"w1": b, "w2": a}], iou_threshold=threshold)
    assert forward.f1 == pytest.approx(backward.f1)
    assert_same(forward.mean_iou, backward.mean_iou, tol=1e-12)
    assert 0.0 <= forward.f1 <= 1.0
    assert math.isnan(forward.mean_iou) or threshold - 1e-12 <= forward.mean_iou <= 1.0 + 1e-12
    same = box_iou_agreement([{"w1": a, "w2": list(reversed(a))}], iou_threshold=threshold)
    assert same.f1 == 1.0
    assert math.isnan(same.mean_iou) if not a else same.mean_iou == pytest.approx(1.0)


# --------------------------------------------------------------------------- real crowd data


def crowd_folders(root: Path) -> list[Path]:
    return sorted(p for p in (root / "crowd").glob("*") if (p / "labels.csv").is_file())


def test_all_metrics_on_shared_crowd_datasets(shared_datasets: Path) -> None:
    folders = crowd_folders(shared_datasets)
    if not folders:
        pytest.skip("no crowd datasets")
    for folder in folders:
        frame = pd.read_csv(folder / "labels.csv", dtype=str)
        enc = encode_labels(frame)
        values = {name: metric(enc) for name, metric in AGREEMENT_METRICS.items()}
        for name, value in values.items():
            assert -1.0 <= value <= 1.0, (folder.name, name, value)
        # The oracle: one value per (worker, item), last row wins, labels as numeric codes.
        last = frame.drop_duplicates(["item", "worker"], keep="last")
        codes = last["label"].astype("category").cat.codes.astype(float)
        matrix = (
            last.assign(code=codes.to_numpy()).pivot(index="worker", columns="item", values="code").to_numpy()
        )
        expected = float(krippendorff.alpha(matrix, level_of_measurement="nominal"))
        assert values["krippendorff"] == pytest.approx(expected, abs=1e-9), folder.name
        # Fleiss on a dense item x class table, written independently (classic formula).
        table = pd.crosstab(last["item"], last["label"]).to_numpy().astype(float)
        per_item = table.sum(axis=1)
        table, per_item = table[per_item >= 2], per_item[per_item >= 2]
        agreement = ((table * (table - 1)).sum(axis=1) / (per_item * (per_item - 1))).mean()
        shares = table.sum(axis=0) / table.sum()
        chance = (shares**2).sum()
        assert values["fleiss"] == pytest.approx((agreement - chance) / (1 - chance), abs=1e-9), folder.name
        assert values["percent"] == pytest.approx(agreement, abs=1e-9), folder.name
