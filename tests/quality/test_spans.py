"""Span and relation consensus: hand-checked cases, properties, and simulated annotators on WNUT16."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.quality.spans import relation_consensus, span_consensus, span_id_map


def span(sid: str, start: int, end: int, label: str) -> dict[str, Any]:
    return {"id": sid, "start": start, "end": end, "label": label}


def test_majority_keeps_span_and_votes_label() -> None:
    annotations = {
        "ann": [span("a1", 0, 5, "PER"), span("a2", 10, 15, "ORG")],
        "bob": [span("b1", 0, 5, "PER"), span("b2", 10, 14, "ORG")],
        "cy": [span("c1", 0, 5, "LOC"), span("c2", 20, 25, "MISC")],
    }
    result = span_consensus(annotations)
    assert result.value == [span("s1", 0, 5, "PER"), span("s2", 10, 14, "ORG")]
    # s1: all three drew it, two with the winning label -> 2/3; s2: 1.0 + 0.8 IoU of (10, 15) -> 1.8/3
    assert result.confidences == pytest.approx([2 / 3, 0.6])
    # the dropped MISC span counts as 2/3 agreement that nothing is there
    assert result.confidence == pytest.approx((2 / 3 + 0.6 + 2 / 3) / 3)
    assert sorted(result.members[0]) == [("ann", 0), ("bob", 0), ("cy", 0)]


def test_boundary_majority_beats_median() -> None:
    annotations = [[span("x", 3, 9, "PER")], [span("y", 3, 9, "PER")], [span("z", 2, 9, "PER")]]
    assert span_consensus(annotations).value == [span("s1", 3, 9, "PER")]


def test_weights_decide_label() -> None:
    annotations = [[span("x", 0, 4, "PER")], [span("y", 0, 4, "ORG")]]
    result = span_consensus(annotations, weights=[0.9, 0.3])
    assert result.value[0]["label"] == "PER"
    assert result.confidences == pytest.approx([0.75])
    assert span_consensus(annotations, weights=[0.3, 0.9]).value[0]["label"] == "ORG"


def test_quorum_drops_lone_span() -> None:
    annotations = [[span("x", 0, 4, "PER")], [], []]
    assert span_consensus(annotations).value == []
    assert span_consensus(annotations).confidence == pytest.approx(2 / 3)
    assert span_consensus(annotations, quorum=0.3).value == [span("s1", 0, 4, "PER")]


def test_exact_matching_splits_shifted_spans() -> None:
    annotations = [[span("x", 0, 10, "PER")], [span("y", 0, 9, "PER")], [span("z", 0, 9, "PER")]]
    overlap = span_consensus(annotations)
    exact = span_consensus(annotations, match="exact")
    assert overlap.value == exact.value == [span("s1", 0, 9, "PER")]
    assert len(overlap.members[0]) == 3 and len(exact.members[0]) == 2


def test_token_iou_matches_spans_sharing_most_tokens() -> None:
    text = "the Empire State Building"
    tokens = [(0, 3), (4, 10), (11, 16), (17, 25)]
    a = [span("x", 0, 25, "FAC")]  # all four tokens
    b = [span("y", 4, 25, "FAC")]  # three of the four
    assert text[4:25] == "Empire State Building"
    by_token = span_consensus([a, b], tokens=tokens, iou_threshold=0.75)
    assert len(by_token.value) == 1
    by_char = span_consensus([a, b], iou_threshold=0.9)
    assert len(by_char.value) == 2


def test_match_labels_keeps_labels_apart() -> None:
    annotations = [[span("x", 0, 4, "PER")], [span("y", 0, 4, "ORG")], [span("z", 0, 4, "PER")]]
    assert len(span_consensus(annotations, match_labels=True, quorum=0.3).value) == 2


def test_relations_follow_span_matching() -> None:
    spans = {
        "ann": [span("a1", 0, 5, "PER"), span("a2", 10, 15, "ORG")],
        "bob": [span("p", 0, 5, "PER"), span("q", 10, 15, "ORG")],
        "cy": [span("c1", 0, 5, "PER")],
    }
    relations = {
        "ann": [{"from": "a1", "to": "a2", "label": "works_for"}],
        "bob": [{"from": "p", "to": "q", "label": "works_for"}],
        "cy": [],
    }
    consensus = span_consensus(spans)
    assert span_id_map(spans, consensus) == {
        "ann": {"a1": "s1", "a2": "s2"},
        "bob": {"p": "s1", "q": "s2"},
        "cy": {"c1": "s1"},
    }
    result = relation_consensus(spans, relations, consensus)
    assert result.value == [{"from": "s1", "to": "s2", "label": "works_for"}]
    assert result.confidences == pytest.approx([2 / 3])
    reversed_only = {"ann": [{"from": "a2", "to": "a1", "label": "works_for"}], "bob": [], "cy": []}
    assert relation_consensus(spans, reversed_only, consensus).value == []


def test_bad_input_names_the_annotator_and_field() -> None:
    with pytest.raises(ValueError, match=r"annotator 'bob', region 0, field 'end'"):
        span_consensus({"ann": [span("a", 0, 1, "X")], "bob": [{"id": "b", "start": 0, "label": "X"}]})
    with pytest.raises(ValueError, match="match must be"):
        span_consensus([], match="fuzzy")


def test_no_annotations_is_full_agreement_on_nothing() -> None:
    result = span_consensus([[], []])
    assert result.value == [] and result.confidence == 1.0


span_lists = st.lists(
    st.tuples(st.integers(0, 40), st.integers(1, 8), st.sampled_from(["PER", "ORG", "LOC"])),
    max_size=5,
).map(lambda rows: [span(f"t{k}", s, s + n, label) for k, (s, n, label) in enumerate(rows)])


@settings(max_examples=60, deadline=None)
@given(spans=span_lists, n=st.integers(1, 4))
def test_identical_annotators_give_back_their_spans(spans: list[dict[str, Any]], n: int) -> None:
    # spans of one annotator may overlap each other; the consensus must still be exactly them
    result = span_consensus([spans] * n)
    expected = sorted((s["start"], s["end"], s["label"]) for s in spans)
    assert sorted((s["start"], s["end"], s["label"]) for s in result.value) == expected
    assert all(c == pytest.approx(1.0) for c in result.confidences)
    assert result.confidence == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(annotators=st.lists(span_lists, min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_consensus_ignores_input_order(annotators: list[list[dict[str, Any]]], seed: int) -> None:
    rng = random.Random(seed)
    shuffled = [rng.sample(spans, len(spans)) for spans in annotators]
    rng.shuffle(shuffled)
    a, b = span_consensus(annotators), span_consensus(shuffled)
    assert a.value == b.value
    assert a.confidences == pytest.approx(b.confidences)
    assert a.confidence == pytest.approx(b.confidence)
    for value in a.value:
        assert 0 <= value["start"] < value["end"]


# --------------------------------------------------------------------------- WNUT16 simulation


def read_conll_spans(path: Path) -> list[tuple[int, list[tuple[int, int, str]]]]:
    """Sentences as (token count, spans as token intervals) from token<TAB>IOB2 lines."""
    sentences: list[tuple[int, list[tuple[int, int, str]]]] = []
    tags: list[str] = []
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        if line.strip():
            tags.append(line.rsplit("\t", 1)[-1].strip())
            continue
        if tags:
            spans, start, label = [], -1, ""
            for k, tag in enumerate([*tags, "O"]):
                if start >= 0 and not (tag.startswith("I-") and tag[2:] == label):
                    spans.append((start, k, label))
                    start = -1
                if tag.startswith("B-") or (tag.startswith("I-") and start < 0):
                    start, label = k, tag[2:]
            sentences.append((len(tags), spans))
            tags = []
    return sentences


def noisy_annotator(
    gold: list[tuple[int, int, str]], n_tokens: int, labels: list[str], rng: random.Random
) -> list[tuple[int, int, str]]:
    out = []
    for start, end, label in gold:
        roll = rng.random()
        if roll < 0.2:
            continue  # missed
        if roll < 0.35:  # boundary slip by one token
            if rng.random() < 0.5 and end - start > 1:
                start += 1
            else:
                end = min(end + 1, n_tokens)
        if rng.random() < 0.1:
            label = rng.choice(labels)
        out.append((start, end, label))
    if rng.random() < 0.15:  # a spurious span
        start = rng.randrange(n_tokens)
        out.append((start, start + 1, rng.choice(labels)))
    return out


def f1(predicted: list[set[tuple[int, int, str]]], gold: list[set[tuple[int, int, str]]]) -> float:
    tp = sum(len(p & g) for p, g in zip(predicted, gold, strict=True))
    n_pred, n_gold = sum(map(len, predicted)), sum(map(len, gold))
    return 2 * tp / (n_pred + n_gold) if n_pred + n_gold else 1.0


def test_consensus_beats_each_simulated_annotator_on_wnut16(shared_datasets: Path) -> None:
    path = shared_datasets / "ner" / "wnut16" / "train.conll"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    sentences = read_conll_spans(path)
    labels = sorted({label for _, spans in sentences for *_, label in spans})
    assert len(labels) >= 5
    rng = random.Random(7)
    gold, consensus = [], []
    annotators: list[list[set[tuple[int, int, str]]]] = [[], [], []]
    for n_tokens, spans in sentences:
        drawn = [noisy_annotator(spans, n_tokens, labels, rng) for _ in annotators]
        # token offsets are the offsets here: the consensus is indifferent to the unit
        value = [[span(f"t{k}", s, e, lab) for k, (s, e, lab) in enumerate(d)] for d in drawn]
        result = span_consensus(value)
        consensus.append({(s["start"], s["end"], s["label"]) for s in result.value})
        gold.append(set(spans))
        for k, d in enumerate(drawn):
            annotators[k].append(set(d))
    consensus_f1 = f1(consensus, gold)
    single = [f1(a, gold) for a in annotators]
    assert consensus_f1 > max(single) + 0.05, (consensus_f1, single)
