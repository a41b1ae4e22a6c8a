"""A default that chooses its aggregator from the data alone, by held-out log-likelihood of labels."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import numpy as np

from labelmill.quality._codes import CodedLabels, FloatArray, IntArray, LabelAggregator
from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.ibcc import IBCC
from labelmill.quality.majority import MajorityVote
from labelmill.quality.one_coin import OneCoinDawidSkene
from labelmill.quality.wawa import Wawa

#: Candidates by name, simplest first (the ones `AutoAggregator` accepts as strings).
#: Imported class by class, not from `methods`, so `methods` can register "auto" without a cycle.
CANDIDATES: dict[str, Callable[[], LabelAggregator]] = {
    "mv": MajorityVote,
    "wawa": Wawa,
    "one-coin": OneCoinDawidSkene,
    "ds": DawidSkene,
    "ibcc": IBCC,
}
DEFAULT_CANDIDATES = ("mv", "one-coin", "ds", "ibcc")
#: Floor on a held-out label's predictive probability, so one label a model calls impossible
#: costs log(1e-6) rather than the whole comparison.
MIN_PROBABILITY = 1e-6
#: Pseudo-labels per worker (at chance) when a confusion is derived from agreement or posteriors.
DERIVED_SMOOTHING = 1.0

Candidate = str | LabelAggregator


class AutoAggregator(LabelAggregator):
    r"""Chooses among `candidates` by how well each predicts labels it did not see, then refits it.

    The labels are split into `n_folds` folds, stratified by item so that every item keeps at
    least one label in every fit (items with a single label are never held out). Each candidate
    is fitted on the kept labels; a held-out label $(i, w, l)$ scores
    $\log \sum_c p(c \mid \text{kept labels of } i)\, \pi^w_{cl}$, with $\pi^w$ the candidate's
    fitted confusion of worker $w$: its `confusions_` when it has them (Dawid–Skene, IBCC), a
    one-coin confusion from its `skills_` for majority vote, Wawa and one-coin DS (smoothed with
    one pseudo-label at chance), and otherwise one derived from its posteriors (expected counts
    of (true class, answer) per worker, plus one pseudo-label spread over the answers). A worker
    with no kept labels gets the pooled confusion (label-weighted mean over workers).

    The candidate with the best mean held-out log-likelihood wins, except that the simplest
    candidate (earliest in `candidates`) within one standard error of the best, paired over
    held-out labels, is preferred: majority vote is only replaced when a richer model predicts
    held-out labels better by more than noise. The chosen candidate is then refitted on all labels.

    `candidates` are names from `CANDIDATES` ("mv", "wawa", "one-coin", "ds", "ibcc") or unfitted
    aggregator instances (copied before each fit), simplest first. `random_state` seeds the folds.

    Fitted: `chosen_` (the chosen candidate's name), `model_` (it, fitted on all labels),
    `scores_` (name -> {"loglik": mean held-out log-likelihood per label, "se": its standard
    error, "gap": best mean minus this one, "gap_se": standard error of that paired difference}),
    `reason_` (one sentence), `n_heldout_`, and `probas_`, `skills_` from `model_`.

    Example:
        >>> rows = [(i, w, i % 2) for i in range(20) for w in range(3)]
        >>> AutoAggregator().fit(rows).chosen_
        'mv'
    """

    chosen_: str
    model_: LabelAggregator
    scores_: dict[str, dict[str, float]]
    reason_: str
    n_heldout_: int

    def __init__(
        self,
        candidates: Sequence[Candidate] = DEFAULT_CANDIDATES,
        n_folds: int = 5,
        random_state: int = 0,
    ) -> None:
        self.candidates = tuple(candidates)
        self.n_folds = n_folds
        self.random_state = random_state

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        named = self._named_candidates()
        if self.n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, not {self.n_folds}")
        gold = {coded.items[i]: coded.classes[gold_idx[i]] for i in np.flatnonzero(gold_idx >= 0).tolist()}
        folds = label_folds(coded, self.n_folds, self.random_state)
        heldout = np.flatnonzero(folds >= 0)
        logliks = {name: np.empty(heldout.size) for name, _ in named}
        position = np.full(coded.n_labels, -1, dtype=np.intp)
        position[heldout] = np.arange(heldout.size)
        for fold in range(self.n_folds):
            rows_out = np.flatnonzero(folds == fold)
            if rows_out.size == 0:
                continue
            kept = coded.take(folds != fold)
            for name, template in named:
                # Workers whose every label is held out stay on the axis with no labels; some
                # models divide by their count. Their fitted parameters are never read (unseen
                # workers get the pooled confusion), so the warning says nothing.
                with np.errstate(invalid="ignore", divide="ignore"):
                    model = copy.deepcopy(template).fit(kept, gold or None)
                logliks[name][position[rows_out]] = heldout_loglik(model, kept, coded, rows_out)
        self.n_heldout_ = int(heldout.size)
        self.scores_, self.chosen_, self.reason_ = _choose([name for name, _ in named], logliks)
        template = dict(named)[self.chosen_]
        self.model_ = copy.deepcopy(template).fit(coded, gold or None)
        self.probas_ = self.model_.probas_
        self.skills_ = self.model_.skills_

    def _named_candidates(self) -> list[tuple[str, LabelAggregator]]:
        if not self.candidates:
            raise ValueError("candidates must name at least one aggregator")
        named: list[tuple[str, LabelAggregator]] = []
        for candidate in self.candidates:
            if isinstance(candidate, str):
                if candidate not in CANDIDATES:
                    raise ValueError(
                        f"unknown candidate {candidate!r}; valid candidates: {', '.join(CANDIDATES)}"
                    )
                named.append((candidate, CANDIDATES[candidate]()))
            elif isinstance(candidate, LabelAggregator):
                named.append((type(candidate).__name__, candidate))
            else:
                raise ValueError(f"a candidate must be a method name or an aggregator, not {candidate!r}")
        names = [name for name, _ in named]
        if len(set(names)) != len(names):  # two instances of one class: tell them apart by parameters
            named = [
                (repr(model) if names.count(name) > 1 and not isinstance(given, str) else name, model)
                for (name, model), given in zip(named, self.candidates, strict=True)
            ]
            names = [name for name, _ in named]
        if len(set(names)) != len(names):
            raise ValueError(f"candidates must be distinct, got {names}")
        return named


def label_folds(coded: CodedLabels, n_folds: int, seed: int) -> IntArray:
    """Fold of every label (-1: never held out), so that no fit loses all labels of an item.

    An item's labels are ordered by a random key per worker (so row order does not matter) and
    dealt round the folds from a random offset: with n labels an item has at most ceil(n / K) < n
    in one fold. Items with one label are never held out.
    """
    rng = np.random.default_rng(seed)
    worker_key = rng.permutation(coded.n_workers)
    offset = rng.integers(0, n_folds, coded.n_items)
    order = np.lexsort((coded.label_idx, worker_key[coded.worker_idx], coded.item_idx))
    per_item = np.bincount(coded.item_idx, minlength=coded.n_items)
    starts = np.concatenate([[0], np.cumsum(per_item)[:-1]])
    item_sorted = coded.item_idx[order]
    rank = np.arange(coded.n_labels) - starts[item_sorted]
    folds = np.empty(coded.n_labels, dtype=np.intp)
    folds[order] = (rank + offset[item_sorted]) % n_folds
    folds[per_item[coded.item_idx] < 2] = -1
    return folds


def heldout_loglik(
    model: LabelAggregator, kept: CodedLabels, coded: CodedLabels, rows: IntArray
) -> FloatArray:
    """log P(label) of each held-out row under `model` fitted on `kept`."""
    confusions = worker_confusions(model, kept)
    answered = np.bincount(kept.worker_idx, minlength=kept.n_workers)
    confusions[answered == 0] = 1.0 / kept.n_classes  # no labels, so no fitted confusion to trust
    pooled = np.einsum("w,wcl->cl", answered.astype(np.float64), confusions) / max(int(answered.sum()), 1)
    item, worker, label = coded.item_idx[rows], coded.worker_idx[rows], coded.label_idx[rows]
    column = confusions[worker, :, label]  # (n, C): P_w(l | c)
    unseen = answered[worker] == 0
    column[unseen] = pooled[:, label[unseen]].T
    probability = np.einsum("nc,nc->n", model.probas_[item], column)
    return np.log(np.maximum(probability, MIN_PROBABILITY))


def worker_confusions(model: LabelAggregator, kept: CodedLabels) -> FloatArray:
    """(n_workers, C, C) P(worker answers l | true class c) under a fitted model."""
    n_classes = kept.n_classes
    confusions = getattr(model, "confusions_", None)
    if isinstance(confusions, np.ndarray) and confusions.shape == (kept.n_workers, n_classes, n_classes):
        return np.nan_to_num(confusions.astype(np.float64, copy=True), nan=1.0 / n_classes)
    if isinstance(model, MajorityVote | Wawa | OneCoinDawidSkene):
        answered = np.bincount(kept.worker_idx, minlength=kept.n_workers).astype(np.float64)
        hits = model.skills_ * answered
        skills = (hits + DERIVED_SMOOTHING / n_classes) / (answered + DERIVED_SMOOTHING)
        return one_coin_confusions(skills, n_classes)
    cell = kept.worker_idx * n_classes + kept.label_idx
    size = kept.n_workers * n_classes
    answers = [
        np.bincount(cell, weights=model.probas_[kept.item_idx, c], minlength=size) for c in range(n_classes)
    ]
    shape = (kept.n_workers, n_classes, n_classes)
    by_label: FloatArray = np.stack(answers, axis=1).astype(np.float64).reshape(shape)
    counts: FloatArray = by_label.transpose(0, 2, 1) + DERIVED_SMOOTHING / n_classes  # [w, c, l]
    return counts / counts.sum(axis=2, keepdims=True)


def one_coin_confusions(skills: FloatArray, n_classes: int) -> FloatArray:
    """Right with probability s_w, else a wrong class uniformly."""
    if n_classes == 1:
        return np.ones((skills.shape[0], 1, 1))
    wrong = (1.0 - skills) / (n_classes - 1)
    confusions = np.repeat(wrong[:, None, None], n_classes, axis=1).repeat(n_classes, axis=2)
    diagonal = np.arange(n_classes)
    confusions[:, diagonal, diagonal] = skills[:, None]
    return confusions


def _choose(names: list[str], logliks: dict[str, FloatArray]) -> tuple[dict[str, dict[str, float]], str, str]:
    n = next(iter(logliks.values())).size
    if n == 0:
        empty = {name: {"loglik": np.nan, "se": np.nan, "gap": np.nan, "gap_se": np.nan} for name in names}
        reason = f"Chose {names[0]}, the simplest candidate, because no item has two labels to hold one out."
        return empty, names[0], reason
    means = {name: float(logliks[name].mean()) for name in names}
    best = max(names, key=lambda name: (means[name], -names.index(name)))
    scores: dict[str, dict[str, float]] = {}
    for name in names:
        gap = logliks[best] - logliks[name]
        scores[name] = {
            "loglik": means[name],
            "se": _standard_error(logliks[name]),
            "gap": float(gap.mean()),
            "gap_se": _standard_error(gap),
        }
    chosen = next(name for name in names if scores[name]["gap"] <= scores[name]["gap_se"])
    if chosen == best:
        simpler = names[: names.index(chosen)]
        why = f"it predicts held-out labels best ({means[chosen]:.4f} nats per label over {n} labels)" + (
            f", ahead of the simpler {', '.join(simpler)} by more than one standard error" if simpler else ""
        )
    else:
        why = (
            f"it is simpler than {best} and within one standard error of it on held-out labels "
            f"({means[chosen]:.4f} vs {means[best]:.4f} nats per label, SE {scores[chosen]['gap_se']:.4f}, "
            f"over {n} labels)"
        )
    return scores, chosen, f"Chose {chosen} because {why}."


def _standard_error(values: FloatArray) -> float:
    if values.size < 2:
        return 0.0
    return float(values.std(ddof=1) / np.sqrt(values.size))
