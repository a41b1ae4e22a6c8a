"""Majority vote: the baseline every other aggregator must beat."""

from __future__ import annotations

from labelmill.quality._codes import (
    CodedLabels,
    IntArray,
    LabelAggregator,
    agreement_skills,
    clamp_gold,
    normalize_rows,
    vote_counts,
)


class MajorityVote(LabelAggregator):
    r"""Each item takes the class most of its labels chose.

    The posterior of item $i$ is the share of its labels per class, $p_{ic} = n_{ic} / \sum_k n_{ik}$;
    ties go to the first class in sorted order, as in crowd-kit. It assumes every worker is
    equally reliable, which is why it is the yardstick rather than the default.
    `skills_` is each worker's agreement with the majority (with `gold` items counted at their
    known label).

    Example:
        >>> MajorityVote().fit_predict([("a", "w1", "x"), ("a", "w2", "x"), ("a", "w3", "y")])
        {'a': 'x'}
    """

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        self.probas_ = clamp_gold(normalize_rows(vote_counts(coded)), gold_idx)
        self.skills_ = agreement_skills(coded, self.probas_.argmax(axis=1))
        self.n_iter_ = 1
