"""Boxes, polygons, keypoints and time segments: IoU, clustering, fusion, confidence."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.quality.geometry import (
    box_consensus,
    box_iou,
    cluster_by_iou,
    interval_iou,
    keypoint_consensus,
    polygon_consensus,
    polygon_iou,
    polygon_iou_matrix,
    segment_consensus,
    weighted_median,
)


def box(x: float, y: float, w: float, h: float, label: str = "car") -> dict[str, Any]:
    return {"x": x, "y": y, "w": w, "h": h, "label": label}


# --------------------------------------------------------------------------- IoU


def test_box_iou_hand_values() -> None:
    iou = box_iou([[0, 0, 2, 2], [10, 10, 1, 1]], [[1, 1, 2, 2], [0, 0, 2, 2], [0, 0, 0, 0]])
    assert iou == pytest.approx(np.array([[1 / 7, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    assert box_iou([[3, 3, 0, 0]], [[3, 3, 0, 0]])[0, 0] == 1.0  # identical empty boxes


def test_interval_iou_hand_values() -> None:
    assert interval_iou([[0, 10]], [[5, 15], [10, 20], [0, 10]]) == pytest.approx(np.array([[1 / 3, 0, 1]]))


SQUARE = [[0, 0], [2, 0], [2, 2], [0, 2]]
L_SHAPE = [[0, 0], [4, 0], [4, 1], [1, 1], [1, 4], [0, 4]]  # area 7, non-convex
U_SHAPE = [[0, 0], [3, 0], [3, 3], [2, 3], [2, 1], [1, 1], [1, 3], [0, 3]]  # area 7, non-convex


@pytest.mark.parametrize(
    ("p", "q", "expected"),
    [
        (SQUARE, [[1, 1], [3, 1], [3, 3], [1, 3]], 1 / 7),
        (SQUARE, SQUARE[::-1], 1.0),  # orientation does not matter
        (SQUARE, [[5, 5], [6, 5], [6, 6]], 0.0),
        (L_SHAPE, [[0, 0], [4, 0], [4, 4], [0, 4]], 7 / 16),
        (L_SHAPE, [[1, 1], [4, 1], [4, 4], [1, 4]], 0.0),  # touches along edges only
        (U_SHAPE, [[0, 2], [3, 2], [3, 3], [0, 3]], 2 / 8),  # the bar crosses both arms of the U
        ([[0, 0], [2, 0], [0, 2]], SQUARE, 0.5),  # triangle inside the square
    ],
)
def test_polygon_iou_exact_cases(p: list[list[float]], q: list[list[float]], expected: float) -> None:
    assert polygon_iou(p, q) == pytest.approx(expected, abs=1e-12)
    assert polygon_iou(q, p) == pytest.approx(expected, abs=1e-12)


def grid_iou(p: np.ndarray, q: np.ndarray, n: int = 400) -> float:
    """Monte-Carlo-free brute force: even-odd point-in-polygon on a fine grid."""
    lo = np.minimum(p.min(0), q.min(0))
    hi = np.maximum(p.max(0), q.max(0))
    xs = np.linspace(lo[0], hi[0], n)
    ys = np.linspace(lo[1], hi[1], n)
    gx, gy = np.meshgrid(xs, ys)

    def inside(ring: np.ndarray) -> np.ndarray:
        res = np.zeros(gx.shape, dtype=bool)
        for (x0, y0), (x1, y1) in zip(ring, np.roll(ring, -1, axis=0), strict=True):
            cross = (y0 <= gy) != (y1 <= gy)
            with np.errstate(divide="ignore", invalid="ignore"):
                xc = x0 + (gy - y0) * (x1 - x0) / (y1 - y0)
            res ^= cross & (gx < xc)
        return res

    a, b = inside(p), inside(q)
    return float((a & b).sum() / max((a | b).sum(), 1))


def star(rng: np.random.Generator, centre: tuple[float, float], k: int) -> np.ndarray:
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = rng.uniform(1, 4, k)
    return np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], axis=1)


def test_polygon_iou_matches_brute_force_on_random_non_convex_polygons() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        p = star(rng, (0, 0), int(rng.integers(4, 12)))
        q = star(rng, tuple(rng.uniform(-2, 2, 2)), int(rng.integers(4, 12)))
        assert polygon_iou(p, q) == pytest.approx(grid_iou(p, q), abs=0.01)


def test_polygon_iou_matrix_is_symmetric_with_unit_diagonal() -> None:
    m = polygon_iou_matrix([SQUARE, L_SHAPE, [[10, 10], [11, 10], [11, 11]]])
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
    assert m[0, 2] == 0.0


def test_weighted_median() -> None:
    assert weighted_median([1, 2, 3]) == 2
    assert weighted_median([1, 2]) == 1.5
    assert weighted_median([1, 2], lower=True) == 1
    assert weighted_median([1, 2, 10], [1, 1, 5]) == 10


def test_cluster_takes_at_most_one_region_per_annotator() -> None:
    sim = np.array([[1, 0.9, 0.8], [0.9, 1, 0.85], [0.8, 0.85, 1.0]])
    assert list(cluster_by_iou(sim, [0, 0, 1], 0.5)) == [0, 1, 1]  # 2 goes to its best match, 1
    # average linkage: the third region joins only if its mean IoU to the cluster is enough
    sim = np.array([[1, 0.9, 0.6], [0.9, 1, 0.3], [0.6, 0.3, 1.0]])
    assert list(cluster_by_iou(sim, [0, 1, 2], 0.5)) == [0, 0, 1]


# --------------------------------------------------------------------------- boxes


def test_box_consensus_fuses_matched_boxes_and_drops_lone_ones() -> None:
    annotations = {
        "ann": [box(10, 10, 20, 20), box(100, 100, 10, 10, "dog")],
        "bob": [box(12, 10, 20, 20)],
        "cy": [box(11, 10, 20, 20, "truck")],
    }
    result = box_consensus(annotations)
    assert result.value == [box(11, 10, 20, 20)]
    assert sorted(result.members[0]) == [("ann", 0), ("bob", 0), ("cy", 0)]
    iou = box_iou([[10, 10, 20, 20], [12, 10, 20, 20]], [[11, 10, 20, 20]])[:, 0]
    assert result.confidences == pytest.approx([iou.sum() / 3])
    assert result.confidence == pytest.approx((iou.sum() / 3 + 2 / 3) / 2)
    median = box_consensus(annotations, fusion="median")
    assert median.value == [box(11, 10, 20, 20)]


def test_box_weights_move_the_fused_box_and_the_label() -> None:
    annotations = [[box(0, 0, 10, 10, "car")], [box(2, 0, 10, 10, "truck")]]
    result = box_consensus(annotations, weights=[3.0, 1.0])
    assert result.value[0]["x"] == pytest.approx(0.5) and result.value[0]["label"] == "car"


def test_box_consensus_clips_to_the_image() -> None:
    annotations = [[box(-5, 0, 20, 10)], [box(-3, 0, 20, 10)]]
    (fused,) = box_consensus(annotations, image_size=(12, 100)).value
    assert fused["x"] == 0 and fused["x"] + fused["w"] == 12


def test_box_errors_name_the_region() -> None:
    with pytest.raises(ValueError, match=r"annotator 1, region 0, field 'h'"):
        box_consensus([[box(0, 0, 1, 1)], [{"x": 0, "y": 0, "w": 1, "label": "car"}]])
    with pytest.raises(ValueError, match="non-negative"):
        box_consensus([[box(0, 0, 1, 1)]], weights=[-1.0])


boxes_strategy = st.lists(
    st.tuples(
        st.integers(0, 80), st.integers(0, 80), st.integers(1, 20), st.integers(1, 20), st.sampled_from("abc")
    ),
    max_size=5,
).map(lambda rows: [box(x, y, w, h, label) for x, y, w, h, label in rows])


@settings(max_examples=50, deadline=None)
@given(boxes=boxes_strategy, n=st.integers(1, 4), fusion=st.sampled_from(["wbf", "median"]))
def test_identical_box_annotations_come_back_with_confidence_one(
    boxes: list[dict[str, Any]], n: int, fusion: str
) -> None:
    result = box_consensus([boxes] * n, fusion=fusion)
    key = lambda b: (b["x"], b["y"], b["w"], b["h"], b["label"])  # noqa: E731
    assert sorted(map(key, result.value)) == sorted(map(key, boxes))
    assert result.confidences == pytest.approx([1.0] * len(boxes))
    assert result.confidence == pytest.approx(1.0)


def _box_tuples(boxes: list[dict[str, Any]]) -> list[float]:
    """Boxes as one flat list of coordinates (``pytest.approx`` compares flat sequences only)."""
    return [float(box[k]) for box in boxes for k in ("x", "y", "w", "h")]


@settings(max_examples=50, deadline=None)
@given(annotators=st.lists(boxes_strategy, min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_boxes_stay_in_bounds_and_ignore_input_order(
    annotators: list[list[dict[str, Any]]], seed: int
) -> None:
    rng = random.Random(seed)
    shuffled = [rng.sample(boxes, len(boxes)) for boxes in annotators]
    rng.shuffle(shuffled)
    a = box_consensus(annotators, image_size=(100, 100))
    b = box_consensus(shuffled, image_size=(100, 100))
    assert _box_tuples(a.value) == pytest.approx(_box_tuples(b.value))
    assert [box["label"] for box in a.value] == [box["label"] for box in b.value]
    assert a.confidence == pytest.approx(b.confidence)
    for fused in a.value:
        assert fused["x"] >= 0 and fused["x"] + fused["w"] <= 100 + 1e-9
        assert fused["y"] >= 0 and fused["y"] + fused["h"] <= 100 + 1e-9
    assert all(0 <= c <= 1 for c in [a.confidence, *a.confidences])


# --------------------------------------------------------------------------- polygons, keypoints, segments


def test_polygon_consensus_picks_the_medoid() -> None:
    near = [[0.2, 0], [2.2, 0], [2.2, 2], [0.2, 2]]
    far = [[0.6, 0], [2.6, 0], [2.6, 2], [0.6, 2]]
    annotations = [
        [{"points": near, "label": "road"}],
        [{"points": SQUARE, "label": "road"}],
        [{"points": far, "label": "road"}],
    ]
    result = polygon_consensus(annotations)
    assert result.value == [{"points": near, "label": "road"}]
    assert result.method == "polygons-medoid"
    identical = polygon_consensus([[{"points": L_SHAPE, "label": "x"}]] * 3)
    assert identical.confidences == pytest.approx([1.0]) and identical.confidence == pytest.approx(1.0)


def test_polygon_needs_three_points() -> None:
    with pytest.raises(ValueError, match=r"annotator 0, polygon 0, field 'points'"):
        polygon_consensus([[{"points": [[0, 0], [1, 1]], "label": "x"}]])


def test_keypoints_median_and_outlier() -> None:
    annotations = [
        [{"x": 10, "y": 10, "label": "nose"}, {"x": 50, "y": 50, "label": "eye"}],
        [{"x": 12, "y": 10, "label": "nose"}, {"x": 51, "y": 50, "label": "eye"}],
        [{"x": 40, "y": 40, "label": "nose"}, {"x": 52, "y": 50, "label": "eye"}],
    ]
    result = keypoint_consensus(annotations, distance_threshold=5)
    assert result.value == [{"x": 51.0, "y": 50.0, "label": "eye"}, {"x": 11.0, "y": 10.0, "label": "nose"}]
    assert result.confidences[0] == pytest.approx((1 + 0.8 + 0.8) / 3)


def test_segments_fuse_times_and_text() -> None:
    annotations = [
        [{"start": 0.0, "end": 1.0, "label": "speech", "text": "hello big world"}],
        [{"start": 0.1, "end": 1.1, "label": "speech", "text": "hello world"}],
        [{"start": 0.0, "end": 1.05, "label": "speech", "text": "hello big world"}],
        [{"start": 5.0, "end": 6.0, "label": "music"}],
    ]
    result = segment_consensus(annotations)
    assert result.value == [{"start": 0.0, "end": 1.05, "text": "hello big world", "label": "speech"}]
    mean = segment_consensus(annotations, fusion="mean")
    assert mean.value[0]["start"] == pytest.approx(0.1 / 3)
