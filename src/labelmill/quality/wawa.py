"""Worker Agreement With Aggregate (Wawa): majority vote weighted by agreement with the majority."""

from __future__ import annotations

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    IntArray,
    LabelAggregator,
    agreement_skills,
    clamp_gold,
    normalize_rows,
    vote_counts,
)


class Wawa(LabelAggregator):
    r"""Majority vote where each worker's vote weighs their agreement with the plain majority.

    First the majority vote $\hat z_i$; then each worker's skill
    $s_w = \frac{1}{|L_w|}\sum_{(i,w,l)} [l = \hat z_i]$; then the posterior
    $p_{ic} \propto \sum_{(i,w,l)} s_w [l = c]$. An item whose workers all have skill zero falls
    back to its plain vote shares. This is the crowd-kit / Toloka "Wawa" heuristic; unlike
    crowd-kit 1.4.2's, it does not depend on scikit-learn internals.

    Example:
        >>> Wawa().fit_predict([("a", "w1", "x"), ("a", "w2", "x"), ("a", "w3", "y")])
        {'a': 'x'}
    """

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        plain = clamp_gold(normalize_rows(vote_counts(coded)), gold_idx)
        self.skills_ = agreement_skills(coded, plain.argmax(axis=1))
        self.probas_ = clamp_gold(weighted_probas(coded, self.skills_, plain), gold_idx)
        self.n_iter_ = 1


def weighted_probas(coded: CodedLabels, skills: FloatArray, fallback: FloatArray) -> FloatArray:
    weighted = vote_counts(coded, weights=skills[coded.worker_idx])
    unweighted = weighted.sum(axis=1) <= 0
    weighted[unweighted] = fallback[unweighted]
    return normalize_rows(weighted)
