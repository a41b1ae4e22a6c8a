"""Spammer and fraud detection: which annotators answer without looking at the item?

Paid crowds always contain a few workers who click through tasks for the fee. Their labels are
noise that aggregation can only partly discount, so a manager wants them named, with reasons,
before paying or before trusting a consensus. Each rule below catches one way of answering
without reading, and each needs only data the platform records anyway:

* ``spamming``: MACE's per-worker spamming probability, when the caller has fitted MACE;
* ``too_fast``: answers quicker than a person can read the item;
* ``constant``: one class far more often than the other workers' class mix explains;
* ``position``: always the same place in the option list (first, last), visible only when the
  UI shuffles options, so it catches a spammer that ``constant`` cannot;
* ``peers``: agreement with the other workers on the same items far below the typical
  worker's; always on, as it needs nothing but the labels, and catches random clickers;
* ``consensus`` / ``gold``: agreement with the consensus or the true answer near chance.

Every rule turns its statistic into evidence in ``[0, 1]`` that crosses 0.5 exactly at the
rule's threshold. A worker's score is the strongest evidence, not a sum: the rules are far from
independent (a fast spammer is usually also a constant one), so adding them would count one
behaviour twice, while the maximum stays readable as "the strongest single reason". A worker is a
spammer when the score reaches ``flag_threshold``; ``reasons`` names every rule that did.
A rule with too little support for a worker (``min_labels``) gives no evidence at all.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats

from labelmill.quality.agreement import EncodedLabels, IntArray, _co_labelled_pairs, encode_labels

__all__ = ["AnnotatorFlag", "SpammerConfig", "detect_spammers"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class SpammerConfig:
    """Thresholds of the spammer rules; defaults err towards not accusing honest workers.

    Attributes:
        min_labels: a worker with fewer labels (and a rule with less support than this for the
            worker) is never flagged: a handful of answers cannot tell bad luck from fraud.
        min_gold_labels: support needed for the gold rule, lower because gold items are rare.
        flag_threshold: score at which a worker is a spammer (0.5 = any rule at its threshold).
        spamming_threshold: MACE spamming probability at which the ``spamming`` rule fires.
        too_fast_seconds: an answer quicker than this is implausible whatever the task.
        too_fast_fraction: an answer quicker than this fraction of the project's median time is
            implausible (the limit is the larger of the two, so easy tasks are not penalised).
        too_fast_share: share of a worker's answers that must be implausibly fast to fire; honest
            workers have an occasional fast click (a misclick, an obvious item).
        dominance_excess: how much of the room above the others' share a worker's favourite
            class (or position) must fill to fire: ``(share − p) / (1 − p)``; 1 = always it.
        significance: one-sided binomial p-value below which that excess is not chance.
        min_kappa: Cohen's kappa with consensus or gold at or below which the agreement rules
            fire (0.2–0.4 is "fair agreement" on the Landis–Koch scale, 0 is chance).
        min_peer_ratio: the ``peers`` rule fires when a worker's (optimistic) kappa with the other
            workers on the same items is at most this fraction of the typical (median) worker's.
        kappa_z: the agreement rules test an optimistic kappa, ``kappa + kappa_z · se``, so a
            worker is flagged only when even that is low: ten gold items cannot condemn an honest
            worker through bad luck, while a chance-level worker with many labels is caught.
    """

    min_labels: int = 20
    min_gold_labels: int = 10
    flag_threshold: float = 0.5
    spamming_threshold: float = 0.5
    too_fast_seconds: float = 0.5
    too_fast_fraction: float = 0.2
    too_fast_share: float = 0.5
    dominance_excess: float = 0.7
    significance: float = 1e-3
    min_kappa: float = 0.3
    min_peer_ratio: float = 0.6
    kappa_z: float = 1.645

    def __post_init__(self) -> None:
        for name in ("flag_threshold", "spamming_threshold", "too_fast_fraction", "too_fast_share"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"SpammerConfig.{name} must be in (0, 1], got {getattr(self, name)}")
        if not 0.0 < self.dominance_excess < 1.0:
            raise ValueError(f"SpammerConfig.dominance_excess must be in (0, 1), got {self.dominance_excess}")
        for name in ("min_kappa", "min_peer_ratio"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"SpammerConfig.{name} must be in (0, 1), got {getattr(self, name)}")
        if self.min_labels < 1 or self.min_gold_labels < 1:
            raise ValueError("SpammerConfig.min_labels and min_gold_labels must be at least 1")


@dataclass(frozen=True)
class AnnotatorFlag:
    """One worker's verdict: ``score`` in [0, 1], ``is_spammer``, and human-readable ``reasons``.

    ``evidence`` holds each rule's evidence (rules without data are absent) so a reviewer can see
    what almost fired; ``reasons`` explains the flag, or why a worker could not be judged.
    """

    worker: Any
    score: float
    is_spammer: bool
    reasons: list[str]
    n_labels: int = 0
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Rule:
    """Per-worker evidence of one rule, NaN where the rule cannot judge the worker."""

    name: str
    evidence: FloatArray
    reasons: list[str]


def _rising(statistic: FloatArray, threshold: float) -> FloatArray:
    """Evidence for a statistic in [0, 1] where higher is worse: 0.5 at ``threshold``, 1 at 1."""
    below = 0.5 * statistic / threshold
    if threshold >= 1.0:
        return np.clip(0.5 * statistic + 0.5 * (statistic >= 1.0), 0.0, 1.0)
    above = 0.5 + 0.5 * (statistic - threshold) / (1.0 - threshold)
    return np.clip(np.where(statistic < threshold, below, above), 0.0, 1.0)


def _falling(kappa: FloatArray, threshold: float) -> FloatArray:
    """Evidence for a kappa where lower is worse: 0 at 1, 0.5 at ``threshold``, 1 at 0 or below."""
    above = 0.5 * (1.0 - kappa) / (1.0 - threshold)
    below = 0.5 + 0.5 * (threshold - kappa) / threshold
    return np.clip(np.where(kappa > threshold, above, below), 0.0, 1.0)


def _counts(worker: IntArray, category: IntArray, n_workers: int, n_categories: int) -> FloatArray:
    flat = np.bincount(worker * n_categories + category, minlength=n_workers * n_categories)
    return flat.reshape(n_workers, n_categories).astype(np.float64)


def _spamming_rule(enc: EncodedLabels, spamming: Mapping[Any, float], config: SpammerConfig) -> _Rule:
    """MACE models each worker as "knows the answer" or "spams" and estimates the spamming
    probability jointly with the truth; when the caller has it, it is the most principled signal."""
    probability = np.array([float(spamming.get(w, math.nan)) for w in enc.workers.tolist()])
    if np.any((probability < 0) | (probability > 1)):
        raise ValueError("spamming probabilities must be in [0, 1]")
    evidence = _rising(probability, config.spamming_threshold)
    reasons = [f"MACE spamming probability {p:.2f}" for p in probability]
    return _Rule("spamming", evidence, reasons)


def _group_medians(group: IntArray, values: FloatArray, sizes: npt.NDArray[np.int64]) -> FloatArray:
    """Median of ``values`` per non-empty group, from one sort instead of a pass per group."""
    ordered = values[np.lexsort((values, group))]
    present = sizes[sizes > 0]
    starts = np.cumsum(present) - present
    low = ordered[starts + (present - 1) // 2]
    high = ordered[starts + present // 2]
    return np.asarray((low + high) / 2.0, dtype=np.float64)


def _too_fast_rule(enc: EncodedLabels, durations: FloatArray, config: SpammerConfig) -> _Rule:
    """Nobody reads an item in a fraction of the time everyone else needs. The project's typical
    time is the median of per-worker medians, so a few prolific fast spammers cannot drag it down."""
    seconds = durations[enc.rows]
    known = np.isfinite(seconds)
    worker, seconds = enc.worker_idx[known], seconds[known]
    n_timed = np.bincount(worker, minlength=enc.n_workers)
    worker_medians = _group_medians(worker, seconds, n_timed)
    project_median = float(np.median(worker_medians)) if worker_medians.size else math.nan
    limit = max(config.too_fast_seconds, config.too_fast_fraction * project_median)
    fast = np.bincount(worker, weights=(seconds < limit).astype(np.float64), minlength=enc.n_workers)
    share = np.divide(fast, n_timed, out=np.zeros(enc.n_workers), where=n_timed > 0)
    evidence = np.where(n_timed >= config.min_labels, _rising(share, config.too_fast_share), np.nan)
    reasons = [
        f"{s:.0%} of {n} answers faster than {limit:.1f} s (project median {project_median:.1f} s)"
        for s, n in zip(share, n_timed, strict=True)
    ]
    return _Rule("too_fast", evidence, reasons)


def _dominance(
    counts: FloatArray, config: SpammerConfig
) -> tuple[FloatArray, IntArray, FloatArray, FloatArray]:
    """How far each worker's favourite category exceeds the other workers' share of it.

    Returns ``(evidence, favourite, share, others_share)``. The others' mix leaves the worker out
    (a prolific spammer would otherwise set their own baseline) and is Laplace-smoothed so a class
    nobody else uses does not give a zero baseline. Evidence needs both a large excess and a
    binomial test that rejects chance, so a skewed but honest worker with many labels is safe.
    """
    n = counts.sum(axis=1)
    favourite = counts.argmax(axis=1).astype(np.intp)
    rows = np.arange(len(counts))
    others = counts.sum(axis=0)[None, :] - counts
    others_share = (others[rows, favourite] + 1.0) / (others.sum(axis=1) + counts.shape[1])
    share = np.divide(counts[rows, favourite], n, out=np.zeros_like(n), where=n > 0)
    # With a single category in play everyone "always" uses it: no excess to speak of.
    room = 1.0 - others_share
    excess = np.clip(np.divide(share - others_share, room, out=np.zeros_like(room), where=room > 0), 0.0, 1.0)
    p_value = stats.binom.sf(counts[rows, favourite] - 1, n, others_share)
    evidence = _rising(excess, config.dominance_excess)
    evidence = np.where(p_value < config.significance, evidence, np.minimum(evidence, 0.49))
    evidence = np.where(n >= config.min_labels, evidence, np.nan)
    return evidence, favourite, share, others_share


def _constant_rule(enc: EncodedLabels, config: SpammerConfig) -> _Rule:
    """A worker who gives one class regardless of the item shows it as a class mix that the
    population's mix cannot explain."""
    counts = _counts(enc.worker_idx, enc.label_idx, enc.n_workers, max(enc.n_classes, 1))
    evidence, favourite, share, others = _dominance(counts, config)
    labels = enc.labels.tolist()
    reasons = [
        f"answers {labels[f]!r} {s:.0%} of the time (other workers {o:.0%})"
        for f, s, o in zip(favourite, share, others, strict=True)
    ]
    return _Rule("constant", evidence, reasons)


def _position_rule(enc: EncodedLabels, positions: FloatArray, config: SpammerConfig) -> _Rule:
    """With shuffled options, a class-blind clicker (always the first option) has a normal class
    mix but a lopsided position mix; this is the same dominance test over positions."""
    position = positions[enc.rows]
    known = np.isfinite(position) & (position >= 0)
    if not known.any():
        return _Rule("position", np.full(enc.n_workers, np.nan), [""] * enc.n_workers)
    codes = position[known].astype(np.intp)
    counts = _counts(enc.worker_idx[known], codes, enc.n_workers, int(codes.max()) + 1)
    evidence, favourite, share, others = _dominance(counts, config)
    reasons = [
        f"picks option #{f + 1} {s:.0%} of the time (other workers {o:.0%})"
        for f, s, o in zip(favourite, share, others, strict=True)
    ]
    return _Rule("position", evidence, reasons)


@dataclass(frozen=True)
class _Kappa:
    """Per-worker chance-corrected agreement with some reference, and its optimistic bound."""

    n: FloatArray
    accuracy: FloatArray
    kappa: FloatArray
    optimistic: FloatArray
    evidence: FloatArray


def _worker_kappa(
    worker: IntArray,
    given: IntArray,
    other: IntArray,
    n_workers: int,
    n_codes: int,
    n_effective: FloatArray,
    min_support: int,
    config: SpammerConfig,
) -> _Kappa:
    """Cohen's kappa of each worker's labels (``given``) against reference labels (``other``).

    Kappa rather than accuracy, because chance is what a spammer achieves: a random or constant
    answerer has kappa near 0 whatever the class balance, while the raw accuracy of a constant
    answerer on a 90 % class looks excellent. The standard error uses ``n_effective`` labels, so
    several comparisons of one answer (one per peer) do not pass for independent evidence.
    """
    n = np.bincount(worker, minlength=n_workers).astype(np.float64)
    agree = np.bincount(worker, weights=(given == other).astype(np.float64), minlength=n_workers)
    given_mix = _counts(worker, given, n_workers, max(n_codes, 1))
    other_mix = _counts(worker, other, n_workers, max(n_codes, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = agree / n
        chance = (given_mix * other_mix).sum(axis=1) / n**2
        kappa = (accuracy - chance) / (1.0 - chance)
        # Cohen's large-sample standard error of kappa, sqrt(p_o (1 − p_o) / n) / (1 − p_e).
        spread = np.sqrt(accuracy * (1.0 - accuracy) / n_effective) / (1.0 - chance)
        optimistic = kappa + config.kappa_z * spread
    # Where chance is 1 (one class on both sides) kappa is undefined: no evidence either way.
    valid = (n_effective >= min_support) & (chance < 1.0)
    evidence = np.where(valid, _falling(np.nan_to_num(optimistic), config.min_kappa), np.nan)
    return _Kappa(
        n_effective, np.nan_to_num(accuracy), np.nan_to_num(kappa), np.nan_to_num(optimistic), evidence
    )


def _kappa_reasons(what: str, result: _Kappa, note: str = "") -> list[str]:
    return [
        f"{what} {a:.0%} of the time over {int(n)} labels (kappa {k:.2f}, at most {up:.2f}{note})"
        for a, n, k, up in zip(result.accuracy, result.n, result.kappa, result.optimistic, strict=True)
    ]


def _reference_rule(
    name: str, enc: EncodedLabels, reference: Mapping[Any, Any], min_support: int, config: SpammerConfig
) -> _Rule:
    """Agreement with a reference label per item: the consensus, or the gold answer."""
    codes = {label: code for code, label in enumerate(enc.labels.tolist())}
    extra: dict[Any, int] = {}
    item_ref = np.full(enc.n_items, -1, dtype=np.intp)
    for position, item in enumerate(enc.items.tolist()):
        if item in reference and reference[item] is not None:
            label = reference[item]
            if label not in codes and label not in extra:
                extra[label] = enc.n_classes + len(extra)
            item_ref[position] = codes[label] if label in codes else extra[label]
    ref = item_ref[enc.item_idx]
    judged = ref >= 0
    worker = enc.worker_idx[judged]
    n_effective = np.bincount(worker, minlength=enc.n_workers).astype(np.float64)
    result = _worker_kappa(
        worker,
        enc.label_idx[judged],
        ref[judged],
        enc.n_workers,
        enc.n_classes + len(extra),
        n_effective,
        min_support,
        config,
    )
    what = "agrees with the consensus" if name == "consensus" else "matches gold"
    return _Rule(name, result.evidence, _kappa_reasons(what, result))


def _peer_rule(enc: EncodedLabels, config: SpammerConfig) -> _Rule:
    """Agreement with the other workers on the same items, needing no model and no gold.

    Every label is compared with each other worker's label of its item, so the worker's own
    answer never sways its reference (unlike a consensus that includes its vote).
    """
    left, right = _co_labelled_pairs(enc)
    rows = np.concatenate([left, right])
    peers = np.concatenate([right, left])
    worker = enc.worker_idx[rows]
    n_effective = np.bincount(enc.worker_idx[np.unique(rows)], minlength=enc.n_workers).astype(np.float64)
    result = _worker_kappa(
        worker,
        enc.label_idx[rows],
        enc.label_idx[peers],
        enc.n_workers,
        enc.n_classes,
        n_effective,
        config.min_labels,
        config,
    )
    # Peers are noisy, so peer kappa is roughly the worker's reliability times the peers': judge
    # it against the typical worker's, or a hard task would make everyone look like a spammer.
    judged = ~np.isnan(result.evidence)
    typical = float(np.median(result.kappa[judged])) if judged.any() else math.nan
    if not typical > 0.0:
        return _Rule("peers", np.full(enc.n_workers, np.nan), [""] * enc.n_workers)
    relative = result.optimistic / typical
    evidence = np.where(judged, _falling(relative, config.min_peer_ratio), np.nan)
    reasons = _kappa_reasons("agrees with other workers", result, f"; typical worker {typical:.2f}")
    return _Rule("peers", evidence, reasons)


def _per_label(values: Any, n_rows: int | None, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or (n_rows is not None and len(array) != n_rows):
        raise ValueError(f"{name} must have one value per label row ({n_rows}), got shape {array.shape}")
    return array


def _row_count(data: Any) -> int | None:
    """Rows in the caller's data, to check side arrays against (None for pre-encoded data)."""
    if isinstance(data, EncodedLabels):
        return None
    if getattr(data, "columns", None) is not None:
        return len(data)
    if isinstance(data, Mapping):
        return len(next(iter(data.values()), []))
    return len(data)


def detect_spammers(
    data: Any,
    *,
    durations: npt.ArrayLike | None = None,
    positions: npt.ArrayLike | None = None,
    consensus: Mapping[Any, Any] | None = None,
    gold: Mapping[Any, Any] | None = None,
    spamming: Mapping[Any, float] | None = None,
    config: SpammerConfig | None = None,
) -> list[AnnotatorFlag]:
    """Score every worker in ``data`` for spamming and say why.

    Args:
        data: label triples ``(item, worker, label)`` as for the agreement metrics (DataFrame-like
            with ``item``/``task``, ``worker``, ``label``, or rows); every row counts, repeats too.
        durations: seconds spent on each label row (NaN where unknown).
        positions: 0-based position of the chosen option in the list shown, per label row
            (NaN or negative where unknown); only telling when the UI shuffles options.
        consensus: the consensus label per item (the worker's own vote is part of it, so prefer a
            leave-one-out consensus where the caller has one).
        gold: the true label per gold item.
        spamming: MACE's spamming probability per worker.
        config: thresholds; :class:`SpammerConfig` defaults when omitted.

    Returns:
        One :class:`AnnotatorFlag` per worker, highest score first. Workers with fewer than
        ``config.min_labels`` labels get score 0 and are never flagged.
    """
    config = config or SpammerConfig()
    n_rows = _row_count(data)
    enc = data if isinstance(data, EncodedLabels) else encode_labels(data, keep_repeats=True)
    rules = [_constant_rule(enc, config), _peer_rule(enc, config)]
    if spamming is not None:
        rules.append(_spamming_rule(enc, spamming, config))
    if durations is not None:
        rules.append(_too_fast_rule(enc, _per_label(durations, n_rows, "durations"), config))
    if positions is not None:
        rules.append(_position_rule(enc, _per_label(positions, n_rows, "positions"), config))
    if consensus is not None:
        rules.append(_reference_rule("consensus", enc, consensus, config.min_labels, config))
    if gold is not None:
        rules.append(_reference_rule("gold", enc, gold, config.min_gold_labels, config))
    return _verdicts(enc, rules, config)


def _verdicts(enc: EncodedLabels, rules: list[_Rule], config: SpammerConfig) -> list[AnnotatorFlag]:
    n_labels = np.bincount(enc.worker_idx, minlength=enc.n_workers)
    flags: list[AnnotatorFlag] = []
    for w, worker in enumerate(enc.workers.tolist()):
        if n_labels[w] < config.min_labels:
            reason = f"too few labels to judge ({n_labels[w]} < {config.min_labels})"
            flags.append(AnnotatorFlag(worker, 0.0, False, [reason], int(n_labels[w])))
            continue
        evidence = {rule.name: float(rule.evidence[w]) for rule in rules if not np.isnan(rule.evidence[w])}
        score = max(evidence.values(), default=0.0)
        fired = [rule for rule in rules if evidence.get(rule.name, 0.0) >= config.flag_threshold]
        # Strongest reason first (stable, so ties keep the rule order).
        reasons = [rule.reasons[w] for rule in sorted(fired, key=lambda rule: -evidence[rule.name])]
        flags.append(
            AnnotatorFlag(worker, score, score >= config.flag_threshold, reasons, int(n_labels[w]), evidence)
        )
    order = sorted(range(len(flags)), key=lambda i: -flags[i].score)
    return [flags[i] for i in order]
