"""Spammer detection: which annotators answer without looking at the item, on evidence only?

Paid crowds contain a few workers who click through tasks for the fee, and a manager wants them
named, with reasons, before paying or trusting a consensus. Accusing an honest annotator costs
more than missing a spammer for a while, so a worker is judged only where there is evidence:

* **gold**: at least ``min_gold`` answers on items with a known answer, or
* **peers**: at least ``min_shared`` labels on items that ``min_peers`` other workers labelled
  too. The reference for those items is a leave-one-out Dawid–Skene posterior: the worker's own
  labels are divided out of their items' posteriors, so nobody vouches for themselves.

A lone annotator on an overlap-1 project without gold has neither, and is never flagged.

The main statistic is **informedness** (Youden's J generalised to K classes): the mean over
classes of recall minus the rate of answering that class on items of the other classes. A worker
who answers without reading (at random, always the same class, with any habit) scores 0 whatever
the class balance, a perfect one 1. Raw accuracy and MACE's spamming probability are not
calibrated on imbalanced classes: on 87 % ham a constant "ham" clicker is 87 % accurate, and MACE
(which presumes uniform classes) calls a careful annotator who mostly answers "ham" a spammer.
A worker is flagged when even an optimistic informedness, ``J + z·SE`` (SE from a bootstrap over
items), is at most ``min_informedness`` **and** at most ``peer_ratio`` of the typical (median)
worker's, so a hard task where everyone is noisy flags nobody.

Three more rules catch what informedness needs many labels to see, each also on evidence only:

* ``constant``: one class in at least ``constant_share`` of the judged answers while the
  reference says that class is much rarer;
* ``too_fast``: most answers far quicker than the other workers' typical time (only where times
  are recorded, for ``min_timed`` answers and ``min_peers`` timed peers), unless the worker is
  demonstrably informed;
* ``position``: with shuffled options, always the same place in the list far more often than the
  other workers.

MACE's spamming probability, when given, is shown beside a flag as support, never raises one.
Every rule's evidence lies in ``[0, 1]`` and crosses 0.5 at the rule's threshold; a worker's score
is the strongest rule (the rules are not independent) and the worker is a spammer when it
reaches ``flag_threshold`` (the project's ``spam_threshold``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy import stats

from labelmill.quality._codes import CodedLabels, sort_by_item
from labelmill.quality.agreement import EncodedLabels, IntArray, encode_labels
from labelmill.quality.dawid_skene import DawidSkene

__all__ = ["AnnotatorFlag", "SpammerConfig", "detect_spammers"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
#: Floor for probabilities before taking logs.
_TINY = 1e-300


@dataclass(frozen=True)
class SpammerConfig:
    """Thresholds of the spammer rules; the defaults err towards not accusing honest workers.

    Attributes:
        min_informedness: flag when the optimistic informedness is at most this (0 = chance).
        informedness_z: the optimistic informedness is ``J + informedness_z · SE`` (1.645: one
            sided 95 %), so a few unlucky answers cannot condemn an honest worker.
        peer_ratio: ... and at most this fraction of the typical (median) judged worker's.
        min_peers: an item is peer evidence for a worker when this many other workers labelled it.
        min_gold: gold answers needed to judge a worker on gold.
        min_shared: labels on items with ``min_peers`` peers needed to judge a worker on peers.
        constant_share: share of one class in a worker's judged answers at which ``constant``
            looks at the reference...
        constant_margin: ... and fires when the reference gives that class at most
            ``constant_share - constant_margin`` of the same items.
        too_fast_seconds: an answer quicker than this is implausible whatever the task.
        too_fast_fraction: an answer quicker than this fraction of the peers' median time is
            implausible (the limit is the larger of the two, so easy tasks are not penalised).
        too_fast_share: share of a worker's timed answers that must be implausibly fast to fire.
        min_timed: timed answers needed before ``too_fast`` (and ``position``) judge a worker.
        dominance_excess: for ``position``, how much of the room above the others' share of a
            worker's favourite option it must fill: ``(share − p) / (1 − p)``.
        significance: one-sided binomial p-value below which that excess is not chance.
        flag_threshold: score at which a worker is a spammer (0.5 = any rule at its threshold);
            the project setting ``spam_threshold``.
        n_bootstrap: bootstrap resamples (over items) for the standard error of informedness.
        random_state: seed of the bootstrap, so a refresh gives the same verdicts.
    """

    min_informedness: float = 0.2
    informedness_z: float = 1.645
    peer_ratio: float = 0.6
    min_peers: int = 2
    min_gold: int = 10
    min_shared: int = 20
    constant_share: float = 0.95
    constant_margin: float = 0.25
    too_fast_seconds: float = 0.5
    too_fast_fraction: float = 0.2
    too_fast_share: float = 0.5
    min_timed: int = 20
    dominance_excess: float = 0.7
    significance: float = 1e-3
    flag_threshold: float = 0.5
    n_bootstrap: int = 200
    random_state: int = 0

    def __post_init__(self) -> None:
        for name in ("min_informedness", "peer_ratio", "constant_share", "dominance_excess"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"SpammerConfig.{name} must be in (0, 1), got {getattr(self, name)}")
        for name in ("flag_threshold", "too_fast_fraction", "too_fast_share"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"SpammerConfig.{name} must be in (0, 1], got {getattr(self, name)}")
        if not 0.0 < self.constant_margin < self.constant_share:
            raise ValueError(
                f"SpammerConfig.constant_margin must be in (0, constant_share), got {self.constant_margin}"
            )
        if self.informedness_z < 0 or self.too_fast_seconds < 0 or not 0 < self.significance < 1:
            raise ValueError(
                "SpammerConfig.informedness_z and too_fast_seconds must be >= 0, significance in (0, 1)"
            )
        for name in ("min_peers", "min_gold", "min_shared", "min_timed", "n_bootstrap"):
            if getattr(self, name) < 1:
                raise ValueError(f"SpammerConfig.{name} must be at least 1, got {getattr(self, name)}")

    @classmethod
    def from_spam_threshold(cls, spam_threshold: float, **overrides: Any) -> SpammerConfig:
        """The config of a project whose settings say ``spam_threshold`` (the score to flag at)."""
        return cls(flag_threshold=spam_threshold, **overrides)


@dataclass(frozen=True)
class AnnotatorFlag:
    """One worker's verdict: ``score`` in [0, 1], ``is_spammer``, and human-readable ``reasons``.

    ``evidence`` holds each rule's evidence (rules that could not judge are absent; MACE's
    ``spamming`` is there for reference only) so a reviewer can see what almost fired;
    ``reasons`` explains a flag, or why a worker could not be judged. ``informedness`` is the
    worker's estimate (NaN when not judged) and ``basis`` the evidence it rests on
    (``"gold"``, ``"peers"`` or ``""``).
    """

    worker: Any
    score: float
    is_spammer: bool
    reasons: list[str]
    n_labels: int = 0
    evidence: dict[str, float] = field(default_factory=dict)
    informedness: float = math.nan
    basis: str = ""


def _rising(statistic: FloatArray, threshold: float) -> FloatArray:
    """Evidence for a statistic in [0, 1] where higher is worse: 0.5 at ``threshold``, 1 at 1."""
    below = 0.5 * statistic / threshold
    if threshold >= 1.0:
        return np.clip(0.5 * statistic + 0.5 * (statistic >= 1.0), 0.0, 1.0)
    above = 0.5 + 0.5 * (statistic - threshold) / (1.0 - threshold)
    return np.clip(np.where(statistic < threshold, below, above), 0.0, 1.0)


def _falling(statistic: FloatArray, threshold: float) -> FloatArray:
    """Evidence for a statistic where lower is worse: 0 at 1, 0.5 at ``threshold``, 1 at 0 or below."""
    above = 0.5 * (1.0 - statistic) / (1.0 - threshold)
    below = 0.5 + 0.5 * (threshold - statistic) / threshold
    return np.clip(np.where(statistic > threshold, above, below), 0.0, 1.0)


@dataclass(frozen=True)
class _Informedness:
    """Per-worker informedness against one kind of reference, with its bootstrap standard error."""

    basis: str
    n: npt.NDArray[np.int64]  # labels judged against this reference
    judged: BoolArray  # enough of them, and informedness defined
    value: FloatArray
    se: FloatArray
    favourite: IntArray  # most frequent answer on the judged labels
    share: FloatArray  # its share of them
    reference_share: FloatArray  # the reference's share of that class on the same items


def _informedness(
    basis: str,
    enc: EncodedLabels,
    rows: IntArray,
    reference: FloatArray,
    min_labels: int,
    config: SpammerConfig,
) -> _Informedness:
    """Informedness of each worker's labels ``rows`` against soft ``reference`` rows (one per row).

    A noisy reference would make everyone look worse than they are (agreeing with a 90 % reference
    caps a perfect worker's apparent informedness at 0.8), so the worker's confusion matrix is
    de-attenuated: with ``r_i`` the reference posterior of item i, ``Σ r_i r_iᵀ · π = Σ r_i e_lᵢᵀ``
    holds in expectation when the posterior is calibrated and the worker's errors are independent
    of the others', and is solved for ``π``. Against gold (one-hot ``r``) it is plain counting.
    For class c, informedness is recall ``π_cc`` minus the rate of answering c on the other
    classes; a class enters the mean only where the worker met at least one item's worth of it
    and of the rest. The SE resamples items (Poisson weights), so repeats of one item move together.
    """
    n_workers, n_ref = enc.n_workers, reference.shape[1]
    worker, label, item = enc.worker_idx[rows], enc.label_idx[rows], enc.item_idx[rows]
    n_rows = len(rows)
    n = np.bincount(worker, minlength=n_workers).astype(np.int64)
    by_worker = sp.csr_matrix((np.ones(n_rows), (worker, np.arange(n_rows))), shape=(n_workers, n_rows))
    # Per row: the reference's outer product r rᵀ, and r against the answer given, e_lᵀ.
    gram_rows = (reference[:, :, None] * reference[:, None, :]).reshape(n_rows, -1)
    cross_rows = np.zeros((n_rows, n_ref, n_ref))
    cross_rows[np.arange(n_rows), :, label] = reference
    moments_rows = np.concatenate([gram_rows, cross_rows.reshape(n_rows, -1)], axis=1)
    # One sparse (worker x moment, item) table: any item weighting is then a single product.
    n_moments = moments_rows.shape[1]
    keep = moments_rows != 0.0
    where = np.nonzero(keep)
    table = sp.csr_matrix(
        (moments_rows[keep], (worker[where[0]] * n_moments + where[1], item[where[0]])),
        shape=(n_workers * n_moments, enc.n_items),
    )

    def per_class(weights: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """(n_workers, b, n_ref) recall and false rate per class and the reference mass of the
        class, for item weights (n_items, b)."""
        b = weights.shape[1]
        moments = np.asarray(table @ weights).reshape(n_workers, 2, n_ref, n_ref, b)
        gram = moments[:, 0].transpose(0, 3, 1, 2)  # (W, b, K, K)
        cross = moments[:, 1].transpose(0, 3, 1, 2)
        mass = gram.sum(axis=3)  # Σ r_c r_t over t = Σ r_c
        ridge = 1e-6 * np.eye(n_ref)
        confusion = np.linalg.solve(gram + ridge, cross)  # rows sum to one, as Σ_l cross = Σ_t gram
        answered = np.einsum("wbt,wbtc->wbc", mass, confusion)  # expected answers c over all classes
        recall = np.einsum("wbcc->wbc", confusion)
        other = mass.sum(axis=2, keepdims=True) - mass
        with np.errstate(divide="ignore", invalid="ignore"):
            false_rate = (answered - mass * recall) / other
        return np.asarray(recall), np.asarray(false_rate), mass

    recall, false_rate, mass = per_class(np.ones((enc.n_items, 1)))
    recall, false_rate, mass = recall[:, 0], false_rate[:, 0], mass[:, 0]
    other = mass.sum(axis=1, keepdims=True) - mass
    classes = (mass >= 1.0 - 1e-9) & (other >= 1.0 - 1e-9)  # (W, K)
    value = _class_mean(recall - false_rate, classes)
    rng = np.random.default_rng(config.random_state)
    item_weights = rng.poisson(1.0, size=(enc.n_items, config.n_bootstrap)).astype(np.float64)
    chunk = max(1, 4_000_000 // max(n_workers * n_moments, 1))
    replicates = []
    for start in range(0, config.n_bootstrap, chunk):
        boot_recall, boot_false, _ = per_class(item_weights[:, start : start + chunk])
        replicates.append(_class_mean(boot_recall - boot_false, classes[:, None, :]))
    with warnings.catch_warnings():  # workers with no defined class: all-NaN rows, expected
        warnings.simplefilter("ignore", RuntimeWarning)
        se = np.nanstd(np.concatenate(replicates, axis=1), axis=1, ddof=1)
    # A bootstrap cannot see what a worker was never tested on: a constant answerer's replicates
    # are all exactly 0 however few items of the other classes they met. So the SE is at least
    # that of the "plus four" (Agresti–Coull) binomial rates over the mass each was estimated from.
    se = np.fmax(se, _class_mean(np.sqrt(_plus_four(recall, mass) + _plus_four(false_rate, other)), classes))
    judged = (n >= min_labels) & np.isfinite(value) & np.isfinite(se)
    answers = np.bincount(worker * enc.n_classes + label, minlength=n_workers * enc.n_classes)
    answers = answers.reshape(n_workers, enc.n_classes)
    favourite = answers.argmax(axis=1).astype(np.intp)
    share = np.divide(answers.max(axis=1), n, out=np.zeros(n_workers), where=n > 0)
    ref_mass = np.asarray(by_worker @ reference)
    reference_share = np.divide(
        ref_mass[np.arange(n_workers), favourite], n, out=np.ones(n_workers), where=n > 0
    )
    return _Informedness(basis, n, judged, value, se, favourite, share, reference_share)


def _plus_four(rate: FloatArray, trials: FloatArray) -> FloatArray:
    """Variance of a binomial rate with two successes and two failures added."""
    with np.errstate(divide="ignore", invalid="ignore"):
        shrunk = (np.clip(rate, 0.0, 1.0) * trials + 2.0) / (trials + 4.0)
        return np.asarray(shrunk * (1.0 - shrunk) / (trials + 4.0))


def _class_mean(per_class: FloatArray, classes: BoolArray) -> FloatArray:
    """Mean over the defined classes (last axis); NaN where none is defined."""
    defined = classes & np.isfinite(per_class)
    count = defined.sum(axis=-1)
    total = np.where(defined, per_class, 0.0).sum(axis=-1)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def _coded(enc: EncodedLabels, keep: BoolArray, n_ref: int) -> CodedLabels:
    return sort_by_item(
        CodedLabels(
            enc.item_idx[keep],
            enc.worker_idx[keep],
            enc.label_idx[keep],
            np.arange(enc.n_items),
            np.arange(enc.n_workers),
            np.arange(n_ref),
        )
    )


def _reference_model() -> DawidSkene:
    # Fixed, moderate smoothing: a pool with a few labels per annotator must not get confusion
    # rows of exact zeros (a veto over items); this runs on every refresh, so no model selection.
    return DawidSkene(smoothing=2.0, prior_smoothing=1.0)


def _leave_one_out(enc: EncodedLabels, gold_idx: IntArray, n_ref: int) -> FloatArray:
    """(n_labels, n_ref) posterior of each label's item from everybody's labels but its worker's.

    One Dawid–Skene fit on everyone, then the worker's own labels are divided out of each of their
    items' posteriors (the cavity posterior), so their answers never count as evidence for
    themselves. Refitting without the worker instead would leave two annotators of a three-person
    pool, whose model is not identifiable: a near-random third annotator could then pass for the
    truth. The others' error rates are learnt with all three; the worker's answers are not used.
    """
    model = _reference_model()
    model._fit_coded(_coded(enc, np.ones(enc.n_labels, dtype=bool), n_ref), gold_idx)
    # Divide the worker's own labels out of the item's posterior: log p(c | others) = log p(c |
    # all) − Σ log π^w[c, l] over the worker's labels of the item, up to a constant.
    log_conf = np.log(np.maximum(model.confusions_, _TINY))  # (W, C, L)
    own = log_conf[enc.worker_idx, :, enc.label_idx]  # (n_labels, C)
    pair = enc.item_idx.astype(np.int64) * enc.n_workers + enc.worker_idx
    keys, group = np.unique(pair, return_inverse=True)
    mine_total = np.zeros((len(keys), n_ref))
    np.add.at(mine_total, group, own)
    log_post = np.log(np.maximum(model.probas_[enc.item_idx], _TINY)) - mine_total[group]
    log_post -= log_post.max(axis=1, keepdims=True)
    out = np.exp(log_post)
    out /= out.sum(axis=1, keepdims=True)
    if (gold_idx >= 0).any():  # a known answer stays known, whoever is left out
        known = gold_idx[enc.item_idx] >= 0
        out[known] = np.eye(n_ref)[gold_idx[enc.item_idx[known]]]
    return out


def _peer_rows(enc: EncodedLabels, min_peers: int) -> IntArray:
    """Rows on items that at least ``min_peers`` other workers labelled."""
    pairs = np.unique(enc.item_idx.astype(np.int64) * enc.n_workers + enc.worker_idx)
    workers_per_item = np.bincount((pairs // enc.n_workers).astype(np.intp), minlength=enc.n_items)
    return np.flatnonzero(workers_per_item[enc.item_idx] - 1 >= min_peers).astype(np.intp)


def _gold_codes(enc: EncodedLabels, gold: Mapping[Any, Any] | None) -> tuple[IntArray, int, list[Any]]:
    """Class position of each item's gold answer (or -1), the reference class count, and its names."""
    names = enc.labels.tolist()
    codes = {label: code for code, label in enumerate(names)}
    gold_idx = np.full(enc.n_items, -1, dtype=np.intp)
    if gold:
        for position, item in enumerate(enc.items.tolist()):
            label = gold.get(item)
            if label is None:
                continue
            if label not in codes:
                codes[label] = len(names)
                names.append(label)
            gold_idx[position] = codes[label]
    return gold_idx, len(names), names


def _timing(enc: EncodedLabels, durations: FloatArray, config: SpammerConfig) -> tuple[FloatArray, list[str]]:
    """Share of each worker's answers far quicker than the other workers' typical time.

    The typical time is the median of the other timed workers' medians, so a few prolific fast
    spammers cannot drag it down, and a worker never sets their own baseline.
    """
    seconds = durations[enc.rows]
    known = np.isfinite(seconds)
    worker, seconds = enc.worker_idx[known], seconds[known]
    n_timed = np.bincount(worker, minlength=enc.n_workers)
    medians = np.full(enc.n_workers, np.nan)
    for w in np.flatnonzero(n_timed >= config.min_timed):
        medians[w] = float(np.median(seconds[worker == w]))
    evidence = np.full(enc.n_workers, np.nan)
    reasons = [""] * enc.n_workers
    for w in np.flatnonzero(n_timed >= config.min_timed):
        peers = np.delete(medians, w)
        peers = peers[np.isfinite(peers)]
        if len(peers) < config.min_peers:
            continue
        typical = float(np.median(peers))
        limit = max(config.too_fast_seconds, config.too_fast_fraction * typical)
        share = float(np.mean(seconds[worker == w] < limit))
        evidence[w] = float(_rising(np.array([share]), config.too_fast_share)[0])
        reasons[w] = (
            f"too fast: {share:.0%} of {n_timed[w]} timed answers under {limit:.1f} s "
            f"(median {medians[w]:.1f} s; other annotators' median {typical:.1f} s)"
        )
    return evidence, reasons


def _positions(
    enc: EncodedLabels, positions: FloatArray, config: SpammerConfig
) -> tuple[FloatArray, list[str]]:
    """With shuffled options, a class-blind clicker (always the first option) has a normal class
    mix but a lopsided position mix, judged against the other workers' position mix."""
    position = positions[enc.rows]
    known = np.isfinite(position) & (position >= 0)
    evidence = np.full(enc.n_workers, np.nan)
    reasons = [""] * enc.n_workers
    if not known.any():
        return evidence, reasons
    codes = position[known].astype(np.intp)
    worker = enc.worker_idx[known]
    n_codes = int(codes.max()) + 1
    counts = np.bincount(worker * n_codes + codes, minlength=enc.n_workers * n_codes)
    counts = counts.reshape(enc.n_workers, n_codes).astype(np.float64)
    n = counts.sum(axis=1)
    timed_peers = (n >= config.min_timed).sum()
    favourite = counts.argmax(axis=1)
    rows = np.arange(enc.n_workers)
    others = counts.sum(axis=0)[None, :] - counts
    # Laplace-smoothed, so an option nobody else picks does not give a zero baseline.
    others_share = (others[rows, favourite] + 1.0) / (others.sum(axis=1) + n_codes)
    share = np.divide(counts[rows, favourite], n, out=np.zeros_like(n), where=n > 0)
    room = 1.0 - others_share
    excess = np.clip(np.divide(share - others_share, room, out=np.zeros_like(room), where=room > 0), 0.0, 1.0)
    p_value = stats.binom.sf(counts[rows, favourite] - 1, n, others_share)
    strength = _rising(excess, config.dominance_excess)
    strength = np.where(
        p_value < config.significance, strength, np.minimum(strength, 0.98 * config.flag_threshold)
    )
    enough = (n >= config.min_timed) & (timed_peers - 1 >= config.min_peers)
    evidence = np.where(enough, strength, np.nan)
    reasons = [
        f"picks option #{f + 1} {s:.0%} of the time (other annotators {o:.0%})"
        for f, s, o in zip(favourite, share, others_share, strict=True)
    ]
    return evidence, reasons


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
    gold: Mapping[Any, Any] | None = None,
    spamming: Mapping[Any, float] | None = None,
    config: SpammerConfig | None = None,
) -> list[AnnotatorFlag]:
    """Judge every worker in ``data`` on the evidence there is, and say why.

    Args:
        data: label triples ``(item, worker, label)`` as for the agreement metrics (DataFrame-like
            with ``item``/``task``, ``worker``, ``label``, or rows); every row counts, repeats too.
        durations: seconds spent on each label row (NaN where unknown).
        positions: 0-based position of the chosen option in the list shown, per label row
            (NaN or negative where unknown); only telling when the UI shuffles options.
        gold: the true label per gold item.
        spamming: MACE's spamming probability per worker: quoted beside a flag, never a flag.
        config: thresholds; :class:`SpammerConfig` defaults when omitted.

    Returns:
        One :class:`AnnotatorFlag` per worker, highest score first.
    """
    config = config or SpammerConfig()
    n_rows = _row_count(data)
    enc = data if isinstance(data, EncodedLabels) else encode_labels(data, keep_repeats=True)
    support = _mace_support(enc, spamming)
    gold_idx, n_ref, names = _gold_codes(enc, gold)
    sources: list[_Informedness] = []
    gold_rows = np.flatnonzero(gold_idx[enc.item_idx] >= 0).astype(np.intp)
    if len(gold_rows):
        onehot = np.eye(n_ref)[gold_idx[enc.item_idx[gold_rows]]]
        sources.append(_informedness("gold", enc, gold_rows, onehot, config.min_gold, config))
    peer_rows = _peer_rows(enc, config.min_peers)
    if len(peer_rows) and enc.n_classes >= 2:
        reference = _leave_one_out(enc, gold_idx, n_ref)[peer_rows]
        sources.append(_informedness("peers", enc, peer_rows, reference, config.min_shared, config))
    # Each worker is judged on the source that knows them best (the smaller standard error).
    chosen = np.full(enc.n_workers, -1)
    best_se = np.full(enc.n_workers, np.inf)
    for s, source in enumerate(sources):
        better = source.judged & (source.se < best_se)
        chosen[better], best_se[better] = s, source.se[better]
    judged = chosen >= 0
    value = np.array([sources[c].value[w] if c >= 0 else np.nan for w, c in enumerate(chosen)])
    se = np.array([sources[c].se[w] if c >= 0 else np.nan for w, c in enumerate(chosen)])
    upper = value + config.informedness_z * se
    lower = value - config.informedness_z * se
    # The typical worker needs a few judged workers; without them only the absolute bound applies.
    typical = float(np.median(value[judged])) if judged.sum() >= 3 else math.nan

    rules: dict[str, tuple[FloatArray, list[str]]] = {}
    rules["informedness"] = _informedness_rule(sources, chosen, value, upper, typical, config)
    rules["constant"] = _constant_rule(sources, chosen, names, config)
    # Fast or position-bound answering is not spamming in a worker shown to be informed.
    informed = judged & (lower > config.min_informedness)
    below = 0.98 * config.flag_threshold  # evidence that never flags on its own
    if durations is not None:
        fast, why = _timing(enc, _per_label(durations, n_rows, "durations"), config)
        rules["too_fast"] = (np.where(informed, np.minimum(fast, below), fast), why)
    if positions is not None:
        place, why = _positions(enc, _per_label(positions, n_rows, "positions"), config)
        rules["position"] = (np.where(informed, np.minimum(place, below), place), why)
    return _verdicts(enc, sources, chosen, value, rules, support, config)


def _informedness_rule(
    sources: list[_Informedness],
    chosen: IntArray,
    value: FloatArray,
    upper: FloatArray,
    typical: float,
    config: SpammerConfig,
) -> tuple[FloatArray, list[str]]:
    n_workers = len(chosen)
    evidence = np.full(n_workers, np.nan)
    reasons = [""] * n_workers
    if typical <= 0.0:  # nobody is better than chance: the task, not a worker, is the problem
        return evidence, reasons
    absolute = _falling(upper, config.min_informedness)
    relative = _falling(upper / typical, config.peer_ratio) if typical > 0 else np.ones(n_workers)
    compared = (
        f"the typical annotator {typical:.2f}; flagged at <= {config.min_informedness:g} and <= "
        f"{config.peer_ratio:g} x typical"
        if typical > 0
        else f"too few judged annotators for a typical one; flagged at <= {config.min_informedness:g}"
    )
    for w in np.flatnonzero(chosen >= 0):
        source = sources[chosen[w]]
        evidence[w] = min(float(absolute[w]), float(relative[w]))
        against = (
            f"{source.n[w]} gold answers"
            if source.basis == "gold"
            else f"{source.n[w]} labels on items shared with >= {config.min_peers} peers "
            "(against their leave-one-out consensus)"
        )
        reasons[w] = (
            f"informedness {value[w]:.2f} (at most {upper[w]:.2f} at {config.informedness_z:g} SE) "
            f"over {against}; chance is 0, {compared}"
        )
    return evidence, reasons


def _constant_rule(
    sources: list[_Informedness], chosen: IntArray, names: list[Any], config: SpammerConfig
) -> tuple[FloatArray, list[str]]:
    """One class in nearly all judged answers, where the reference says that class is far rarer."""
    n_workers = len(chosen)
    evidence = np.full(n_workers, np.nan)
    reasons = [""] * n_workers
    limit = config.constant_share - config.constant_margin
    for w in np.flatnonzero(chosen >= 0):
        source = sources[chosen[w]]
        share, rarity = source.share[w], 1.0 - source.reference_share[w]
        evidence[w] = min(
            float(_rising(np.array([share]), config.constant_share)[0]),
            float(_rising(np.array([rarity]), 1.0 - limit)[0]),
        )
        what = "gold" if source.basis == "gold" else "the leave-one-out consensus"
        reasons[w] = (
            f"answers {names[source.favourite[w]]!r} {share:.0%} of the time over {source.n[w]} "
            f"judged labels, where {what} says {source.reference_share[w]:.0%}"
        )
    return evidence, reasons


def _mace_support(enc: EncodedLabels, spamming: Mapping[Any, float] | None) -> FloatArray:
    if spamming is None:
        return np.full(enc.n_workers, np.nan)
    probability = np.array([float(spamming.get(w, math.nan)) for w in enc.workers.tolist()])
    if np.any((probability < 0) | (probability > 1)):
        raise ValueError("spamming probabilities must be in [0, 1]")
    return probability


def _no_evidence_reason(sources: list[_Informedness], w: int, config: SpammerConfig) -> str:
    counts = {source.basis: int(source.n[w]) for source in sources}
    return (
        f"not judged, too little evidence: {counts.get('gold', 0)} gold answers (needs {config.min_gold}), "
        f"{counts.get('peers', 0)} labels on items shared with >= {config.min_peers} peers "
        f"(needs {config.min_shared})"
    )


def _verdicts(
    enc: EncodedLabels,
    sources: list[_Informedness],
    chosen: IntArray,
    value: FloatArray,
    rules: Mapping[str, tuple[FloatArray, list[str]]],
    support: FloatArray,
    config: SpammerConfig,
) -> list[AnnotatorFlag]:
    n_labels = np.bincount(enc.worker_idx, minlength=enc.n_workers)
    flags: list[AnnotatorFlag] = []
    for w, worker in enumerate(enc.workers.tolist()):
        evidence = {name: float(ev[w]) for name, (ev, _) in rules.items() if not np.isnan(ev[w])}
        score = max(evidence.values(), default=0.0)
        fired = sorted(
            (name for name, strength in evidence.items() if strength >= config.flag_threshold),
            key=lambda name: -evidence[name],
        )
        reasons = [rules[name][1][w] for name in fired]
        if not np.isnan(support[w]):
            evidence["spamming"] = float(support[w])
            if fired:
                reasons.append(f"MACE spamming probability {support[w]:.2f} (support only)")
        if chosen[w] < 0 and not fired:
            reasons = [_no_evidence_reason(sources, w, config)]
        basis = sources[chosen[w]].basis if chosen[w] >= 0 else ""
        flags.append(
            AnnotatorFlag(
                worker,
                score,
                bool(fired),
                reasons,
                int(n_labels[w]),
                evidence,
                float(value[w]),
                basis,
            )
        )
    order = sorted(range(len(flags)), key=lambda i: -flags[i].score)
    return [flags[i] for i in order]
