"""Consensus of free-text transcripts (the ``transcript`` control, and segment texts).

Two methods:

- **medoid**: the transcript with the least weighted word edit distance to all the others.
  It is always something an annotator wrote, so it never invents a word order nobody typed.
- **rover** (default): Recognizer Output Voting Error Reduction (Fiscus, "A post-processing
  system to yield reduced word error rates: ROVER", IEEE ASRU 1997), pivoted on the medoid.
  Every transcript is aligned to the medoid word by word with a Levenshtein alignment
  (Levenshtein 1966; among equally short alignments, the one matching most words); the
  alignment defines *slots*: one per medoid word, and one gap before,
  between and after them for words the medoid lacks. Each transcript votes, with its weight,
  for the word it has in each slot or for the empty word; the winners, read in order, are the
  consensus; a tie goes to the pivot's own reading. Three annotators each dropping a
  different word give back the full sentence, which no single transcript has.

  One pivot can mis-align a dropped word as a substitution ("the brown fox" against "the
  quick fox" pairs *brown* with *quick*), so ROVER is run with every distinct transcript as
  pivot and the result closest to all transcripts (least weighted word edit distance; on a
  tie, the one whose words have more votes) is kept: a minimum-Bayes-risk choice among
  the candidates (Goel & Byrne, "Minimum Bayes-risk automatic speech recognition",
  Computer Speech & Language 14, 2000). The cost is one alignment per pair of transcripts,
  nothing for the three to five transcripts an item gets.

Confidence is the weighted mean, over the transcripts, of ``1 - d / max(len)``: the
normalised word edit distance between each transcript and the consensus, so identical
transcripts give 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "TranscriptConsensus",
    "transcript_consensus",
    "word_edit_distance",
    "word_error_rate",
]

Words = str | Sequence[str]


@dataclass(frozen=True)
class TranscriptConsensus:
    """The consensus transcript of one item.

    `word_confidences[k]` is the share of annotator weight that voted for the k-th word of
    `text`; `medoid` is the position of the medoid transcript in the input.
    """

    text: str
    confidence: float
    word_confidences: list[float]
    medoid: int
    method: str


def _words(text: Words) -> list[str]:
    return text.split() if isinstance(text, str) else list(text)


def _edit_matrix(a: Sequence[str], b: Sequence[str], *, prefer_matches: bool = False) -> NDArray[np.int64]:
    """The full Levenshtein table between word lists, one vectorised pass per row.

    A row's insertion recurrence ``D[i, j] = min(c[j], D[i, j-1] + 1)`` is a running minimum
    of ``c[k] + (j - k)``, i.e. ``minimum.accumulate(c - j) + j``. With `prefer_matches`, an
    insertion or deletion costs K and a substitution K + 1 (K above any substitution count),
    so among the alignments with the fewest edits the one with the most matching words wins:
    "the quick fox jumps" against "the quick brown fox" drops *brown* and adds *jumps*
    rather than pairing *fox* with *brown* and *jumps* with *fox*.
    """
    vocab: dict[str, int] = {}
    a_codes = np.array([vocab.setdefault(w, len(vocab)) for w in a], dtype=np.int64)
    b_codes = np.array([vocab.setdefault(w, len(vocab)) for w in b], dtype=np.int64)
    n, m = len(a_codes), len(b_codes)
    indel = min(n, m) + 1 if prefer_matches else 1
    sub = indel + 1 if prefer_matches else 1
    table = np.empty((n + 1, m + 1), dtype=np.int64)
    steps = np.arange(m + 1, dtype=np.int64) * indel
    table[0] = steps
    for i in range(1, n + 1):
        prev = table[i - 1]
        cand = np.empty(m + 1, dtype=np.int64)
        cand[0] = i * indel
        cand[1:] = np.minimum(prev[1:] + indel, prev[:-1] + sub * (b_codes != a_codes[i - 1]))
        table[i] = np.minimum.accumulate(cand - steps) + steps
    return table


def word_edit_distance(a: Words, b: Words) -> int:
    """Levenshtein distance between two texts counted in words (whitespace-split)."""
    return int(_edit_matrix(_words(a), _words(b))[-1, -1])


def word_error_rate(reference: Words, hypothesis: Words) -> float:
    """Word error rate: (substitutions + deletions + insertions) / words in the reference.

    With an empty reference there is nothing to divide by; the rate is then the number of
    inserted words (0.0 when the hypothesis is empty too), so it stays a count of errors.
    """
    ref = _words(reference)
    return word_edit_distance(ref, hypothesis) / max(len(ref), 1)


def _align(pivot: Sequence[str], hyp: Sequence[str]) -> tuple[list[str], list[list[str]]]:
    """Align `hyp` to `pivot`: the hyp word in each pivot slot ("" if none) and the gap insertions."""
    table = _edit_matrix(pivot, hyp, prefer_matches=True)
    indel = min(len(pivot), len(hyp)) + 1
    slots = [""] * len(pivot)
    gaps: list[list[str]] = [[] for _ in range(len(pivot) + 1)]
    i, j = len(pivot), len(hyp)
    while i > 0 or j > 0:
        if (
            i > 0
            and j > 0
            and table[i, j] == table[i - 1, j - 1] + (indel + 1) * (pivot[i - 1] != hyp[j - 1])
        ):
            slots[i - 1] = hyp[j - 1]
            i, j = i - 1, j - 1
        elif i > 0 and table[i, j] == table[i - 1, j] + indel:
            i -= 1
        else:
            gaps[i].insert(0, hyp[j - 1])
            j -= 1
    return slots, gaps


def _vote(candidates: Sequence[str], weights: NDArray[np.float64], preferred: str) -> tuple[str, float]:
    totals: dict[str, float] = {}
    for word, w in zip(candidates, weights, strict=True):
        totals[word] = totals.get(word, 0.0) + float(w)
    top = max(totals.values())
    leaders = sorted(word for word, total in totals.items() if total >= top - 1e-9)
    winner = preferred if preferred in leaders else leaders[0]  # never the input order
    return winner, totals[winner]


def _rover(pivot: list[str], words: list[list[str]], w: NDArray[np.float64]) -> tuple[list[str], list[float]]:
    """ROVER on one pivot: the winning word of every slot and its vote weight."""
    aligned = [_align(pivot, hyp) for hyp in words]
    out: list[str] = []
    support: list[float] = []
    for slot in range(len(pivot) + 1):
        gap, share = _vote([" ".join(a[1][slot]) for a in aligned], w, "")
        if gap:
            out.extend(gap.split())
            support.extend([share] * len(gap.split()))
        if slot < len(pivot):
            word, share = _vote([a[0][slot] for a in aligned], w, pivot[slot])
            if word:
                out.append(word)
                support.append(share)
    return out, support


def transcript_consensus(
    texts: Sequence[str],
    weights: ArrayLike | None = None,
    *,
    method: str = "rover",
) -> TranscriptConsensus:
    """Consensus of several annotators' transcripts of one item (see the module docstring)."""
    if method not in ("rover", "medoid"):
        raise ValueError(f"method must be 'rover' or 'medoid'; got {method!r}")
    if len(texts) == 0:
        raise ValueError("transcript_consensus needs at least one transcript")
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"transcript {k}: expected a string, got {type(text).__name__}")
    w = np.ones(len(texts)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(texts),) or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights: one finite non-negative weight per transcript, not all zero")
    words = [_words(text) for text in texts]
    n = len(words)
    dist = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = _edit_matrix(words[i], words[j])[-1, -1]
    cost = dist @ w
    medoid = min(range(n), key=lambda k: (round(float(cost[k]), 9), " ".join(words[k])))
    total = float(w.sum())
    if method == "medoid":
        out = list(words[medoid])
        word_conf = [float(w[dist[medoid] == 0].sum()) / total] * len(out)
    else:
        best: tuple[float, float, str] | None = None
        for pivot in dict.fromkeys(" ".join(hyp) for hyp in words):
            cand, cand_conf = _rover(pivot.split(), words, w)
            risk = sum(wk * _edit_matrix(cand, hyp)[-1, -1] for hyp, wk in zip(words, w, strict=True))
            # rounded so that summation order (input order) cannot flip a tie
            key = (round(float(risk), 9), round(-sum(cand_conf), 9), " ".join(cand))
            if best is None or key < best:
                best, out, word_conf = key, cand, [c / total for c in cand_conf]
    agree = np.array([1.0 - _edit_matrix(out, hyp)[-1, -1] / max(len(out), len(hyp), 1) for hyp in words])
    return TranscriptConsensus(
        text=" ".join(out) if method == "rover" else texts[medoid],
        confidence=float(agree @ w / total),
        word_confidences=word_conf,
        medoid=int(medoid),
        method=method,
    )
