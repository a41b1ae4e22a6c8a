"""Gold (honeypot) scoring: hand cases per control type, gold_score, and properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labelmill.quality.gold import CONTROL_TYPES, control_score, gold_score, is_correct

# --------------------------------------------------------------------------- hand cases


def box(x: float, y: float, w: float, h: float, label: str = "car") -> dict[str, Any]:
    return {"x": x, "y": y, "w": w, "h": h, "label": label}


def span(sid: str, start: int, end: int, label: str = "PER") -> dict[str, Any]:
    return {"id": sid, "start": start, "end": end, "label": label}


def square(x: float, y: float, size: float, label: str = "road") -> dict[str, Any]:
    points = [[x, y], [x + size, y], [x + size, y + size], [x, y + size]]
    return {"points": points, "label": label}


def track(tid: str, keyframes: list[tuple[int, float, float]], label: str = "car") -> dict[str, Any]:
    frames = [{"frame": f, "x": x, "y": y, "w": 10.0, "h": 10.0} for f, x, y in keyframes]
    return {"id": tid, "label": label, "keyframes": frames}


def seg(start: float, end: float, label: str = "speech") -> dict[str, Any]:
    return {"start": start, "end": end, "label": label}


MOVE = [(0, 0.0, 0.0), (10, 100.0, 0.0)]


@pytest.mark.parametrize(
    ("kind", "gold", "right", "wrong"),
    [
        ("choices", "pos", "pos", "neg"),
        ("pairwise", {"choice": "a"}, {"choice": "a", "rationale": "clearer"}, {"choice": "tie"}),
        ("rating", 4, 4, 2),
        ("text", "the quick brown fox", "the  quick brown\nfox", "a lazy dog jumps"),
        ("transcript", "hello world", "hello world", "goodbye moon"),
        ("multi_choices", ["a", "b"], ["b", "a"], ["c"]),
        ("spans", [span("s1", 0, 5), span("s2", 7, 9, "ORG")], [span("x", 7, 9, "ORG"), span("y", 0, 5)], []),
        ("boxes", [box(0, 0, 10, 10)], [box(1, 0, 10, 10)], [box(0, 0, 10, 10, "bus")]),
        ("polygons", [square(0, 0, 10)], [square(0, 1, 10)], [square(20, 20, 10)]),
        ("keypoints", [{"x": 5.0, "y": 5.0, "label": "nose"}], [{"x": 8.0, "y": 9.0, "label": "nose"}], []),
        ("segments", [seg(0.0, 1.0)], [{**seg(0.1, 1.0), "text": "hi"}], [seg(2.0, 3.0)]),
        ("tracks", [track("t1", MOVE)], [track("zz", MOVE)], [track("t1", [(0, 50, 50)])]),
        ("ranking", ["r1", "r2", "r3"], ["r1", "r2", "r3"], ["r3", "r2", "r1"]),
    ],
)
def test_right_scores_one_and_wrong_scores_zero(kind: str, gold: Any, right: Any, wrong: Any) -> None:
    assert control_score(kind, right, gold) == 1.0
    assert control_score(kind, wrong, gold) == 0.0
    assert control_score(kind, gold, gold) == 1.0


def test_rating_tolerance() -> None:
    assert control_score("rating", 3, 4) == 0.0
    assert control_score("rating", 3, 4, rating_tolerance=1) == 1.0
    assert control_score("rating", 2, 4, rating_tolerance=1) == 0.0
    assert control_score("rating", 4.0, 4) == 1.0  # JSON may carry an integer as 4.0
    assert control_score("rating", 3.5, 4, rating_tolerance=1) == 0.0  # not an integer
    assert control_score("rating", True, 1) == 0.0


def test_text_partial_and_clipped() -> None:
    assert control_score("text", "the quick fox", "the quick brown fox") == pytest.approx(0.75)
    # far more errors than gold words: WER > 1 is clipped
    assert control_score("text", "a b c d e f", "x") == 0.0
    assert control_score("text", "", "") == 1.0
    assert control_score("text", "extra", "") == 0.0
    assert control_score("text", "Hello", "hello") == 0.0  # case-sensitive


def test_multi_choices_jaccard() -> None:
    assert control_score("multi_choices", ["a", "b"], ["b", "c"]) == pytest.approx(1 / 3)
    assert control_score("multi_choices", [], []) == 1.0
    assert control_score("multi_choices", ["a", "a"], ["a"]) == 1.0
    assert control_score("multi_choices", [], ["a"]) == 0.0


def test_spans_f1_exact_matches() -> None:
    gold = [span("g1", 0, 5), span("g2", 10, 15, "ORG")]
    assert control_score("spans", [span("a", 0, 5)], gold) == pytest.approx(2 / 3)
    assert control_score("spans", [span("a", 0, 5), span("b", 10, 14, "ORG")], gold) == pytest.approx(0.5)
    assert control_score("spans", [span("a", 0, 5, "LOC")], [span("g", 0, 5)]) == 0.0
    assert control_score("spans", [], []) == 1.0


def test_relations_by_span_offsets() -> None:
    gold_spans = [span("g1", 0, 4), span("g2", 10, 15, "ORG")]
    mine_spans = [span("m2", 10, 15, "ORG"), span("m1", 0, 4)]
    gold = [{"from": "g1", "to": "g2", "label": "works_for"}]
    mine = [{"from": "m1", "to": "m2", "label": "works_for"}]
    reversed_ = [{"from": "m2", "to": "m1", "label": "works_for"}]
    kw = {"spans_value": mine_spans, "spans_gold": gold_spans}
    assert control_score("relations", mine, gold, **kw) == 1.0
    assert control_score("relations", reversed_, gold, **kw) == 0.0
    assert control_score("relations", [*mine, *reversed_], gold, **kw) == pytest.approx(2 / 3)
    # without both span lists, ids are compared: different ids never match
    assert control_score("relations", mine, gold) == 0.0
    assert control_score("relations", mine, gold, spans_value=mine_spans) == 0.0
    assert control_score("relations", gold, gold) == 1.0
    assert control_score("relations", [], []) == 1.0


def test_boxes_threshold_and_optimal_matching() -> None:
    gold = [box(0, 0, 10, 10), box(20, 0, 10, 10)]
    assert control_score("boxes", [box(0, 0, 10, 10)], gold) == pytest.approx(2 / 3)
    # IoU of a half-shifted box is 1/3: below 0.5, above 0.3
    assert control_score("boxes", [box(5, 0, 10, 10)], [box(0, 0, 10, 10)]) == 0.0
    assert control_score("boxes", [box(5, 0, 10, 10)], [box(0, 0, 10, 10)], iou_threshold=0.3) == 1.0
    # greedy by IoU would pair the wide box with the first gold box and leave the second unmatched
    wide = box(0, 0, 16, 10)
    gold2 = [box(0, 0, 14, 10), box(6, 0, 10, 10)]
    mine = [wide, box(0, 0, 10, 10)]
    assert control_score("boxes", mine, gold2, iou_threshold=0.6) == 1.0
    # one box cannot match two gold boxes
    assert control_score("boxes", [box(0, 0, 10, 10)], [box(0, 0, 10, 10)] * 2) == pytest.approx(2 / 3)


def test_polygons_partial() -> None:
    gold = [square(0, 0, 10), square(100, 100, 10, "car")]
    assert control_score("polygons", [square(0, 0, 10)], gold) == pytest.approx(2 / 3)
    assert control_score("polygons", [square(100, 100, 10)], gold) == 0.0  # wrong label


def test_keypoints_distance_threshold() -> None:
    gold = [{"x": 0.0, "y": 0.0, "label": "nose"}, {"x": 50.0, "y": 0.0, "label": "eye"}]
    near = [{"x": 6.0, "y": 8.0, "label": "nose"}]  # 10 px away
    assert control_score("keypoints", near, gold) == pytest.approx(2 / 3)
    assert control_score("keypoints", near, gold, distance_threshold=9.0) == 0.0


def test_segments_partial() -> None:
    gold = [{"start": 0.0, "end": 1.0, "label": "speech"}, {"start": 2.0, "end": 3.0, "label": "music"}]
    mine = [{"start": 0.0, "end": 0.9, "label": "speech"}, {"start": 2.0, "end": 3.0, "label": "speech"}]
    assert control_score("segments", mine, gold) == pytest.approx(0.5)


def test_tracks_interpolate_and_match_by_content() -> None:
    gold = [track("t1", [(0, 0, 0), (10, 100, 0)])]
    # same motion keyed at other frames: interpolation agrees everywhere
    assert control_score("tracks", [track("a", [(0, 0, 0), (5, 50, 0), (10, 100, 0)])], gold) == 1.0
    # stops at frame 5: frames 0 and 5 agree, 10 is missing -> 2/3 of the union's frames
    half = [track("a", [(0, 0, 0), (5, 50, 0)])]
    assert control_score("tracks", half, gold) == pytest.approx(2 / 3)
    # right boxes, wrong label
    assert control_score("tracks", [track("t1", [(0, 0, 0), (10, 100, 0)], "bus")], gold) == 0.0
    # a second, spurious track halves precision
    extra = [gold[0], track("t2", [(0, 500, 500)])]
    assert control_score("tracks", extra, gold) == pytest.approx(2 / 3)


def test_ranking_kendall() -> None:
    gold = ["r1", "r2", "r3"]
    # one of three pairs swapped: tau = 1/3 -> 2/3
    assert control_score("ranking", ["r2", "r1", "r3"], gold) == pytest.approx(2 / 3)
    # a left-out response: pairs (r1, r3), (r2, r3) count as wrong -> tau = -1/3
    assert control_score("ranking", ["r1", "r2"], gold) == pytest.approx(1 / 3)
    assert control_score("ranking", ["r1", "x", "r2", "r3"], gold) == 1.0  # extra ids ignored
    assert control_score("ranking", [], []) == 1.0
    assert control_score("ranking", ["r1"], ["r1"]) == 1.0
    assert control_score("ranking", [], ["r1"]) == 0.0


@pytest.mark.parametrize(
    ("kind", "value", "gold"),
    [
        ("choices", ["pos"], "pos"),
        ("choices", None, "pos"),
        ("pairwise", "a", {"choice": "a"}),
        ("rating", "4", 4),
        ("text", 5, "5"),
        ("multi_choices", "ab", ["a", "b"]),
        ("multi_choices", [["a"]], [["a"]]),
        ("spans", [{"start": 0, "end": 5}], [{"start": 0, "end": 5}]),
        ("spans", [span("a", 5, 0)], [span("a", 5, 0)]),
        ("boxes", [box(0, 0, float("nan"), 1)], [box(0, 0, float("nan"), 1)]),
        ("boxes", [box(0, 0, -1, 1)], [box(0, 0, -1, 1)]),
        ("boxes", {"x": 0}, [box(0, 0, 1, 1)]),
        (
            "polygons",
            [{"points": [[0, 0], [1, 1]], "label": "a"}],
            [{"points": [[0, 0], [1, 1]], "label": "a"}],
        ),
        ("keypoints", [{"x": 10**400, "y": 0, "label": "a"}], [{"x": 10**400, "y": 0, "label": "a"}]),
        ("tracks", [{"id": "t", "label": "a"}], [{"id": "t", "label": "a"}]),
        ("ranking", "r1", "r1"),
        ("relations", [{"from": "a", "label": "x"}], [{"from": "a", "label": "x"}]),
    ],
)
def test_malformed_scores_zero(kind: str, value: Any, gold: Any) -> None:
    assert control_score(kind, value, gold) == 0.0


def test_unknown_type_and_bad_options_raise() -> None:
    with pytest.raises(ValueError, match="unknown control type"):
        control_score("sliders", 1, 1)
    with pytest.raises(ValueError, match="iou_threshold"):
        control_score("boxes", [], [], iou_threshold=1.5)
    with pytest.raises(ValueError, match="rating_tolerance"):
        control_score("rating", 1, 1, rating_tolerance=-1)


# --------------------------------------------------------------------------- gold_score


CONTROLS = {"sentiment": "choices", "tags": "multi_choices", "entities": "spans", "links": "relations"}


def test_gold_score_means_over_gold_controls() -> None:
    gold = {"sentiment": "pos", "tags": ["a", "b"]}
    assert gold_score(CONTROLS, {"sentiment": "pos", "tags": ["a"]}, gold) == pytest.approx(0.75)
    # a control missing from the value scores 0; extra value controls are ignored
    assert gold_score(CONTROLS, {"tags": ["a", "b"], "entities": []}, gold) == pytest.approx(0.5)
    # a gold control the schema does not know, or a null gold, is not scored
    assert gold_score(CONTROLS, {"sentiment": "pos"}, {"sentiment": "pos", "other": 1, "tags": None}) == 1.0


def test_gold_score_none_when_nothing_to_score() -> None:
    assert gold_score(CONTROLS, {"sentiment": "pos"}, {}) is None
    assert gold_score(CONTROLS, {"sentiment": "pos"}, {"unknown": "x"}) is None
    assert gold_score({}, {}, {"sentiment": "pos"}) is None


def test_gold_score_passes_options_and_raises_on_unknown_type() -> None:
    controls = {"car": "boxes"}
    gold = {"car": [box(0, 0, 10, 10)]}
    mine = {"car": [box(5, 0, 10, 10)]}
    assert gold_score(controls, mine, gold) == 0.0
    assert gold_score(controls, mine, gold, iou_threshold=0.3) == 1.0
    with pytest.raises(ValueError, match="unknown control type"):
        gold_score({"x": "sliders"}, {}, {"x": 1})


def test_gold_score_relations_use_the_spans_control() -> None:
    gold = {
        "entities": [span("g1", 0, 4), span("g2", 10, 15, "ORG")],
        "links": [{"from": "g1", "to": "g2", "label": "works_for"}],
    }
    mine = {
        "entities": [span("m1", 0, 4), span("m2", 10, 15, "ORG")],
        "links": [{"from": "m1", "to": "m2", "label": "works_for"}],
    }
    assert gold_score(CONTROLS, mine, gold) == 1.0
    two_spans = {**CONTROLS, "more": "spans"}
    assert gold_score(two_spans, mine, gold) == pytest.approx(0.5)  # ambiguous: ids compared
    assert gold_score(two_spans, mine, gold, relation_spans={"links": "entities"}) == 1.0


def test_is_correct() -> None:
    assert is_correct(1.0)
    assert is_correct(0.9995)
    assert not is_correct(0.99)
    assert is_correct(0.8, threshold=0.75)
    assert not is_correct(float("nan"))


# --------------------------------------------------------------------------- properties

coord = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False) | st.integers(-1000, 1000)
size = st.floats(min_value=0, max_value=1e4, allow_nan=False)
label = st.sampled_from(["a", "b", "c"])
ident = st.text("xyz", min_size=1, max_size=3)


@st.composite
def spans_st(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for k in range(draw(st.integers(0, 5))):
        start = draw(st.integers(0, 50))
        out.append(span(f"s{k}", start, start + draw(st.integers(0, 10)), draw(label)))
    return out


@st.composite
def relations_st(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [
        {"from": draw(ident), "to": draw(ident), "label": draw(label)} for _ in range(draw(st.integers(0, 4)))
    ]


@st.composite
def segments_st(draw: st.DrawFn) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(0, 5))):
        start = draw(coord)
        out.append({"start": start, "end": start + draw(size), "label": draw(label)})
    return out


@st.composite
def polygons_st(draw: st.DrawFn) -> list[dict[str, Any]]:
    points = st.lists(st.lists(coord, min_size=2, max_size=2), min_size=3, max_size=6)
    return [{"points": draw(points), "label": draw(label)} for _ in range(draw(st.integers(0, 3)))]


@st.composite
def tracks_st(draw: st.DrawFn) -> list[dict[str, Any]]:
    keyframe = st.fixed_dictionaries(
        {"frame": st.integers(0, 30), "x": coord, "y": coord, "w": size, "h": size}
    )
    return [
        {"id": draw(ident), "label": draw(label), "keyframes": draw(st.lists(keyframe, max_size=4))}
        for _ in range(draw(st.integers(0, 3)))
    ]


words = st.lists(st.sampled_from(["the", "fox", "dog", "a"]), max_size=8).map(" ".join)

VALID: dict[str, st.SearchStrategy[Any]] = {
    "choices": label,
    "multi_choices": st.lists(label, max_size=4),
    "spans": spans_st(),
    "relations": relations_st(),
    "boxes": st.lists(
        st.fixed_dictionaries({"x": coord, "y": coord, "w": size, "h": size, "label": label}), max_size=5
    ),
    "polygons": polygons_st(),
    "keypoints": st.lists(st.fixed_dictionaries({"x": coord, "y": coord, "label": label}), max_size=5),
    "segments": segments_st(),
    "tracks": tracks_st(),
    "transcript": words,
    "rating": st.integers(-5, 10),
    "pairwise": st.fixed_dictionaries({"choice": st.sampled_from(["a", "b", "tie"])}),
    "ranking": st.lists(ident, max_size=6),
    "text": words,
}

KEYS = [
    "x",
    "y",
    "w",
    "h",
    "label",
    "start",
    "end",
    "id",
    "from",
    "to",
    "points",
    "keyframes",
    "frame",
    "choice",
]
json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.sampled_from(["a", "label", "start", "x", "points", "keyframes"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(KEYS),
            children,
            max_size=6,
        )
    ),
    max_leaves=20,
)

PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_valid_strategies_cover_every_type() -> None:
    assert set(VALID) == CONTROL_TYPES


@pytest.mark.parametrize("kind", sorted(CONTROL_TYPES))
@PROPERTY
@given(data=st.data())
def test_identical_scores_exactly_one(kind: str, data: st.DataObject) -> None:
    value = data.draw(VALID[kind])
    assert control_score(kind, value, value) == 1.0


@pytest.mark.parametrize("kind", sorted(CONTROL_TYPES))
@PROPERTY
@given(data=st.data())
def test_valid_values_score_in_unit_interval(kind: str, data: st.DataObject) -> None:
    value, gold = data.draw(VALID[kind]), data.draw(VALID[kind])
    score = control_score(kind, value, gold, iou_threshold=data.draw(st.floats(0, 1)))
    assert 0.0 <= score <= 1.0


@pytest.mark.parametrize("kind", sorted(CONTROL_TYPES))
@PROPERTY
@given(data=st.data())
def test_never_raises_on_arbitrary_json(kind: str, data: st.DataObject) -> None:
    value = data.draw(json_like | VALID[kind])
    gold = data.draw(json_like | VALID[kind])
    score = control_score(
        kind, value, gold, spans_value=data.draw(json_like), spans_gold=data.draw(json_like)
    )
    assert 0.0 <= score <= 1.0


@settings(max_examples=60, deadline=None)
@given(
    value=st.dictionaries(st.sampled_from(sorted(CONTROL_TYPES)), json_like, max_size=4),
    gold=st.dictionaries(st.sampled_from(sorted(CONTROL_TYPES)), json_like, max_size=4),
)
def test_gold_score_bounded(value: dict[str, Any], gold: dict[str, Any]) -> None:
    controls = {kind: kind for kind in CONTROL_TYPES}  # one control of each type, named after it
    score = gold_score(controls, value, gold)
    scored = [name for name, answer in gold.items() if answer is not None]
    assert (score is None) == (not scored)
    assert score is None or 0.0 <= score <= 1.0
    if scored:
        assert gold_score(controls, gold, gold) == pytest.approx(
            sum(control_score(k, gold[k], gold[k]) for k in scored) / len(scored)
        )
