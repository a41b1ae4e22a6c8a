"""Transcript consensus: edit distance, WER, medoid and ROVER."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from labelmill.quality.transcripts import transcript_consensus, word_edit_distance, word_error_rate


def reference_distance(a: list[str], b: list[str]) -> int:
    """Textbook O(nm) Levenshtein, the oracle for the vectorised one."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


words = st.lists(st.sampled_from(["a", "b", "c", "the", "cat"]), max_size=9)


@settings(max_examples=150, deadline=None)
@given(a=words, b=words)
def test_edit_distance_matches_the_textbook_dp(a: list[str], b: list[str]) -> None:
    assert word_edit_distance(a, b) == reference_distance(a, b)
    assert word_edit_distance(" ".join(a), " ".join(b)) == reference_distance(a, b)


def test_word_error_rate() -> None:
    assert word_error_rate("the cat sat on the mat", "the cat sat on mat") == pytest.approx(1 / 6)
    assert word_error_rate("a b", "x y z") == pytest.approx(3 / 2)
    assert word_error_rate("", "") == 0.0
    assert word_error_rate("", "extra words") == 2.0


def test_rover_recovers_words_each_annotator_dropped() -> None:
    texts = [
        "the quick brown fox jumps",  # complete
        "the brown fox jumps",  # drops "quick"
        "the quick fox jumps",  # drops "brown"
        "the quick brown fox",  # drops "jumps"
    ]
    result = transcript_consensus(texts[1:])
    assert result.text == "the quick brown fox jumps"
    assert result.word_confidences == pytest.approx([1, 2 / 3, 2 / 3, 1, 2 / 3])
    assert transcript_consensus(texts[1:], method="medoid").text in texts[1:]


def test_rover_votes_insertions_and_substitutions() -> None:
    texts = ["hello world", "hello big world", "hello big world", "jello world"]
    assert transcript_consensus(texts).text == "hello big world"
    assert transcript_consensus(texts, weights=[3, 1, 1, 0]).text == "hello world"


def test_tie_goes_to_the_medoid_reading() -> None:
    result = transcript_consensus(["a b c", "a x c"])
    assert result.text in ("a b c", "a x c")
    assert result.text == ["a b c", "a x c"][result.medoid]


def test_confidence_is_agreement_with_consensus() -> None:
    result = transcript_consensus(["one two three four", "one two three four", "one two tree four"])
    assert result.text == "one two three four"
    assert result.confidence == pytest.approx((1 + 1 + 0.75) / 3)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="at least one"):
        transcript_consensus([])
    with pytest.raises(ValueError, match="transcript 1"):
        transcript_consensus(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="weights"):
        transcript_consensus(["a", "b"], weights=[1.0])


sentences = st.lists(st.sampled_from(["we", "go", "to", "the", "park", "now"]), max_size=8).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(text=sentences, n=st.integers(1, 5))
def test_identical_transcripts_come_back_with_confidence_one(text: str, n: int) -> None:
    for method in ("rover", "medoid"):
        result = transcript_consensus([text] * n, method=method)
        assert result.text == text and result.confidence == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(sentences, min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_consensus_ignores_the_order_of_annotators(texts: list[str], seed: int) -> None:
    shuffled = random.Random(seed).sample(texts, len(texts))
    a, b = transcript_consensus(texts), transcript_consensus(shuffled)
    assert a.text == b.text and a.confidence == pytest.approx(b.confidence)
    assert 0 <= a.confidence <= 1
