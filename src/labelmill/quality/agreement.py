"""Inter-annotator agreement: how far annotators agree beyond what chance explains.

Agreement tells a manager whether the task itself is well defined (low agreement among good
annotators means unclear instructions or a genuinely ambiguous schema), which is a different
question from which label is right (that is aggregation's job).

Categorical metrics take label triples ``(item, worker, label)``: a DataFrame-like object with
columns ``item`` (or ``task``), ``worker`` and ``label``, any iterable of 3-tuples, or an
:class:`EncodedLabels` made once by :func:`encode_labels` and reused across metrics. Every
metric works on integer codes from one ``np.unique`` pass, so thousands of items cost a few
vectorised passes and no Python loop over items.

Two conventions hold for all categorical metrics, because they all assume one coder gives one
value per unit:

* a missing label (``None``/NaN) is no label at all (Krippendorff's missing data);
* when a worker labelled the same item more than once, the *last* row wins, as a resubmission
  supersedes an earlier answer.

Structured values (``spans``, ``boxes`` in DESIGN.md "Annotation values") have their own
metrics, :func:`span_f1_agreement` and :func:`box_iou_agreement`, which take per item a mapping
of worker to that worker's list of spans or boxes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
from scipy import sparse
from scipy.optimize import linear_sum_assignment

__all__ = [
    "AGREEMENT_METRICS",
    "AgreementResult",
    "BoxAgreement",
    "EncodedLabels",
    "Level",
    "SpanAgreement",
    "box_iou_agreement",
    "cohen_kappa",
    "encode_labels",
    "fleiss_kappa",
    "krippendorff_alpha",
    "mean_pairwise_cohen_kappa",
    "measure_agreement",
    "pairwise_cohen_kappa",
    "percent_agreement",
    "span_f1_agreement",
]

IntArray: TypeAlias = npt.NDArray[np.intp]
FloatArray: TypeAlias = npt.NDArray[np.float64]
Level: TypeAlias = Literal["nominal", "ordinal", "interval", "ratio"]
#: Per item, each worker's list of spans or boxes: a mapping keyed by item, or a plain sequence.
PerItemAnnotations: TypeAlias = (
    Mapping[Any, Mapping[Any, Sequence[Mapping[str, Any]]]]
    | Sequence[Mapping[Any, Sequence[Mapping[str, Any]]]]
)


# --------------------------------------------------------------------------- encoding


@dataclass(frozen=True)
class EncodedLabels:
    """Label triples as integer codes: row ``r`` says ``workers[worker_idx[r]]`` gave
    ``labels[label_idx[r]]`` to ``items[item_idx[r]]``.

    Encoding once and passing this object to several metrics avoids sorting the same strings
    again for each one.
    """

    item_idx: IntArray
    worker_idx: IntArray
    label_idx: IntArray
    items: npt.NDArray[Any]
    workers: npt.NDArray[Any]
    labels: npt.NDArray[Any]
    #: Position of each kept row in the input, to align per-label side data (durations, ...).
    rows: IntArray

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def n_labels(self) -> int:
        """Number of labels (rows) kept after dropping missing and superseded ones."""
        return len(self.label_idx)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float | np.floating):
        return bool(np.isnan(value))
    # pandas.NA / NaT without importing pandas (this package must not depend on it).
    return type(value).__name__ in {"NAType", "NaTType"}


def _column(values: Any) -> npt.NDArray[Any]:
    """One column as a 1-D array with the narrowest dtype numpy infers (object stays object)."""
    array = np.asarray(values.to_numpy() if hasattr(values, "to_numpy") else values)
    if array.ndim != 1:
        array = np.asarray(list(values), dtype=object)
    return array


def _missing_mask(array: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    if array.dtype.kind == "f":
        return np.isnan(array)
    if array.dtype.kind == "O":
        try:  # fast path: NaN is the one value unequal to itself
            return np.asarray(array != array, dtype=bool) | np.asarray(array == None, dtype=bool)  # noqa: E711
        except (TypeError, ValueError):  # pandas.NA refuses to be a bool
            return np.fromiter((_is_missing(v) for v in array), dtype=bool, count=len(array))
    return np.zeros(len(array), dtype=bool)


def _raw_columns(data: Any) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    columns = getattr(data, "columns", None)
    if columns is not None or isinstance(data, Mapping):
        names = {str(c) for c in (columns if columns is not None else data.keys())}
        item_key = "item" if "item" in names else "task"
        missing = [k for k in (item_key, "worker", "label") if k not in names]
        if missing:
            raise ValueError(
                f"label data needs columns item (or task), worker, label; missing {missing}, "
                f"got {sorted(names)}"
            )
        return _column(data[item_key]), _column(data["worker"]), _column(data["label"])
    rows = list(data)
    if not rows:
        empty = np.array([], dtype=object)
        return empty, empty, empty
    table = np.empty((len(rows), 3), dtype=object)
    try:
        table[:] = [tuple(row) for row in rows]
    except (TypeError, ValueError) as exc:
        raise ValueError("label data rows must be (item, worker, label) triples") from exc
    return table[:, 0], table[:, 1], table[:, 2]


def _narrow(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Let numpy pick a native dtype for a homogeneous object column (ints stay ints)."""
    if array.dtype.kind != "O" or len(array) == 0:
        return array
    narrowed = np.asarray(array.tolist())
    return narrowed if narrowed.ndim == 1 and narrowed.dtype.kind != "O" else array


def _unique(array: npt.NDArray[Any], what: str) -> tuple[npt.NDArray[Any], IntArray]:
    try:
        uniques, inverse = np.unique(array, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"{what} values mix types that cannot be compared; convert them to strings") from exc
    return uniques, inverse.reshape(-1).astype(np.intp)


def encode_labels(data: Any, *, keep_repeats: bool = False) -> EncodedLabels:
    """Encode label triples once, dropping missing labels and keeping a worker's last label per item.

    ``data`` is a DataFrame-like object (columns ``item`` or ``task``, ``worker``, ``label``), a
    mapping of those column names to sequences, an iterable of ``(item, worker, label)`` rows, or
    an :class:`EncodedLabels` (returned unchanged). ``keep_repeats`` keeps every row of a worker
    who labelled an item twice, for uses that judge each answer (spammer detection) rather than
    compare one answer per worker (agreement).
    """
    if isinstance(data, EncodedLabels):
        return data
    items_raw, workers_raw, labels_raw = _raw_columns(data)
    for name, column in (("item", items_raw), ("worker", workers_raw)):
        missing = _missing_mask(column)
        if missing.any():
            raise ValueError(f"row {int(np.argmax(missing))}: {name} is missing")
    rows = np.flatnonzero(~_missing_mask(labels_raw)).astype(np.intp)
    items_raw, workers_raw, labels_raw = items_raw[rows], workers_raw[rows], labels_raw[rows]
    items, item_idx = _unique(_narrow(items_raw), "item")
    workers, worker_idx = _unique(_narrow(workers_raw), "worker")
    # Last row wins per (item, worker): unique over the reversed key finds each last occurrence.
    last = np.arange(len(rows), dtype=np.intp)
    if not keep_repeats:
        key = item_idx.astype(np.int64) * max(len(workers), 1) + worker_idx
        _, first_from_end = np.unique(key[::-1], return_index=True)
        last = np.sort(len(key) - 1 - first_from_end).astype(np.intp)
    labels, label_idx = _unique(_narrow(labels_raw[last]), "label")
    return EncodedLabels(
        item_idx=item_idx[last],
        worker_idx=worker_idx[last],
        label_idx=label_idx,
        items=items,
        workers=workers,
        labels=labels,
        rows=rows[last],
    )


@dataclass(frozen=True)
class _ItemClassCounts:
    """Sparse item-by-class count table: ``count[r]`` labels of class ``cls[r]`` on item ``item[r]``."""

    item: IntArray
    cls: IntArray
    count: FloatArray
    labels_per_item: FloatArray  # m_u, indexed by item


def _item_class_counts(
    enc: EncodedLabels, cls: IntArray | None = None, n_classes: int | None = None
) -> _ItemClassCounts:
    cls = enc.label_idx if cls is None else cls
    n_classes = enc.n_classes if n_classes is None else n_classes
    key = enc.item_idx.astype(np.int64) * max(n_classes, 1) + cls
    unique_key, count = np.unique(key, return_counts=True)
    item = (unique_key // max(n_classes, 1)).astype(np.intp)
    per_item = np.bincount(item, weights=count, minlength=enc.n_items).astype(np.float64)
    return _ItemClassCounts(
        item, (unique_key % max(n_classes, 1)).astype(np.intp), count.astype(np.float64), per_item
    )


def _pairable(counts: _ItemClassCounts) -> _ItemClassCounts:
    """Keep items with at least two labels: a lone label has nobody to agree or disagree with."""
    keep = counts.labels_per_item[counts.item] >= 2
    return _ItemClassCounts(counts.item[keep], counts.cls[keep], counts.count[keep], counts.labels_per_item)


# --------------------------------------------------------------------------- categorical metrics


def _item_agreement(counts: _ItemClassCounts) -> FloatArray:
    """Per pairable item, the share of ordered pairs of its labels that agree."""
    m = counts.labels_per_item
    same = np.bincount(counts.item, weights=counts.count * (counts.count - 1), minlength=len(m))
    pairable = m >= 2
    return np.asarray(same[pairable] / (m[pairable] * (m[pairable] - 1)), dtype=np.float64)


def percent_agreement(data: Any) -> float:
    """Mean over items (with two labels or more) of the share of label pairs that agree.

    The simplest number to explain to a manager; it ignores chance, so it looks good on skewed
    classes. NaN when no item has two labels.
    """
    per_item = _item_agreement(_item_class_counts(encode_labels(data)))
    return float(per_item.mean()) if per_item.size else math.nan


def fleiss_kappa(data: Any) -> float:
    """Fleiss' kappa over all items, allowing a different number of raters per item.

    Fleiss (1971) assumes every item has the same number ``n`` of raters. Crowd data rarely does,
    so we use the usual generalisation: items with fewer than two labels are dropped, the observed
    agreement ``P̄`` is the unweighted mean over items of each item's pairwise agreement
    ``Σ_j n_ij (n_ij − 1) / (n_i (n_i − 1))``, and the chance agreement ``P_e = Σ_j p_j²`` uses the
    class shares ``p_j`` pooled over all labels of the kept items. With equal ``n_i`` this is
    exactly Fleiss (1971). NaN when chance agreement is 1 (a single class).
    """
    enc = encode_labels(data)
    counts = _item_class_counts(enc)
    per_item = _item_agreement(counts)
    if per_item.size == 0:
        return math.nan
    pairable = _pairable(counts)
    class_totals = np.bincount(pairable.cls, weights=pairable.count, minlength=enc.n_classes)
    shares = class_totals / class_totals.sum()
    chance = float(np.sum(shares**2))
    if chance >= 1.0:
        return math.nan
    return float((per_item.mean() - chance) / (1.0 - chance))


def cohen_kappa(a: Sequence[Any] | npt.ArrayLike, b: Sequence[Any] | npt.ArrayLike) -> float:
    """Cohen's kappa between two raters' labels of the same items (position ``i`` is one item).

    Pairs where either label is missing are left out. NaN when chance agreement is 1 (both raters
    used one and the same class), as scikit-learn does.
    """
    first, second = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if first.shape != second.shape or first.ndim != 1:
        raise ValueError(
            f"cohen_kappa needs two equally long 1-D label sequences, got {first.shape} and {second.shape}"
        )
    keep = ~(_missing_mask(first) | _missing_mask(second))
    if not keep.any():
        return math.nan
    _, codes = _unique(_narrow(np.concatenate([first[keep], second[keep]])), "label")
    n = int(keep.sum())
    return float(_kappa_from_codes(codes[:n], codes[n:]))


def _kappa_from_codes(a: IntArray, b: IntArray) -> float:
    n_classes = int(max(a.max(initial=0), b.max(initial=0))) + 1
    n = len(a)
    observed = np.count_nonzero(a == b) / n
    chance = float(np.dot(np.bincount(a, minlength=n_classes), np.bincount(b, minlength=n_classes))) / n**2
    return math.nan if chance >= 1.0 else (observed - chance) / (1.0 - chance)


def _co_labelled_pairs(enc: EncodedLabels) -> tuple[IntArray, IntArray]:
    """Row indices ``(left, right)`` of all label pairs on one item, with ``worker[left] < worker[right]``.

    Built without a loop over items: each row is repeated once per label on its item and paired
    with each of them, then self- and mirrored pairs are dropped.
    """
    order = np.argsort(enc.item_idx, kind="stable")
    sorted_item = enc.item_idx[order]
    per_item = np.bincount(sorted_item, minlength=enc.n_items)
    starts = np.concatenate([[0], np.cumsum(per_item)[:-1]])
    repeats = per_item[sorted_item]
    left = np.repeat(np.arange(len(order)), repeats)
    block_start = np.repeat(np.cumsum(repeats) - repeats, repeats)
    right = starts[sorted_item[left]] + (np.arange(len(left)) - block_start)
    left_rows, right_rows = order[left], order[right]
    keep = enc.worker_idx[left_rows] < enc.worker_idx[right_rows]
    return left_rows[keep].astype(np.intp), right_rows[keep].astype(np.intp)


def pairwise_cohen_kappa(data: Any) -> tuple[npt.NDArray[Any], FloatArray]:
    """Cohen's kappa for every pair of workers over the items both labelled.

    Returns ``(workers, matrix)`` where ``matrix[i, j]`` is the kappa of ``workers[i]`` and
    ``workers[j]``: symmetric, NaN on the diagonal, where a pair shares fewer than two items (one
    shared item says nothing about chance), and where kappa is undefined. All pairs are computed
    at once from the co-labelled rows, so hundreds of workers cost one pass, not a loop per pair.
    """
    enc = encode_labels(data)
    n_workers, n_classes = enc.n_workers, max(enc.n_classes, 1)
    matrix = np.full((n_workers, n_workers), np.nan)
    left, right = _co_labelled_pairs(enc)
    if left.size == 0:
        return enc.workers, matrix
    pair_key = enc.worker_idx[left].astype(np.int64) * n_workers + enc.worker_idx[right]
    pairs, pair, shared = np.unique(pair_key, return_inverse=True, return_counts=True)
    pair = pair.reshape(-1)
    a, b = enc.label_idx[left], enc.label_idx[right]
    agree = np.bincount(pair, weights=(a == b).astype(np.float64), minlength=len(pairs))
    # Chance agreement Σ_k row_k · col_k per pair, from sparse marginals matched on (pair, class).
    row_keys, row_counts = np.unique(pair.astype(np.int64) * n_classes + a, return_counts=True)
    col_keys, col_counts = np.unique(pair.astype(np.int64) * n_classes + b, return_counts=True)
    common, in_row, in_col = np.intersect1d(row_keys, col_keys, assume_unique=True, return_indices=True)
    chance_sum = np.bincount(
        common // n_classes,
        weights=row_counts[in_row].astype(np.float64) * col_counts[in_col],
        minlength=len(pairs),
    )
    observed = agree / shared
    chance = chance_sum / shared.astype(np.float64) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where((shared >= 2) & (chance < 1.0), (observed - chance) / (1.0 - chance), np.nan)
    first, second = pairs // n_workers, pairs % n_workers
    matrix[first, second] = kappa
    matrix[second, first] = kappa
    return enc.workers, matrix


def mean_pairwise_cohen_kappa(data: Any) -> float:
    """Mean Cohen's kappa over worker pairs that share at least two items (NaN pairs ignored)."""
    _, matrix = pairwise_cohen_kappa(data)
    upper = matrix[np.triu_indices_from(matrix, k=1)]
    upper = upper[~np.isnan(upper)]
    return float(upper.mean()) if upper.size else math.nan


# --------------------------------------------------------------------------- Krippendorff's alpha


def _numeric_values(labels: npt.NDArray[Any], level: str) -> FloatArray:
    try:
        values = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        hint = " (pass value_domain with the labels in order)" if level == "ordinal" else ""
        raise ValueError(f"{level} alpha needs numeric labels{hint}; got {labels[:5].tolist()}") from exc
    if not np.isfinite(values).all():
        raise ValueError(f"{level} alpha needs finite numeric labels")
    return values


def _class_values(labels: npt.NDArray[Any], level: Level, value_domain: Sequence[Any] | None) -> FloatArray:
    """A number per class whose order (ordinal) or value (interval, ratio) the distance uses."""
    if level == "ordinal" and value_domain is not None:
        domain = list(value_domain)
        position = {value: rank for rank, value in enumerate(domain)}
        outside = [label for label in labels.tolist() if label not in position]
        if outside:
            raise ValueError(f"labels outside value_domain: {outside[:5]}")
        return np.array([position[label] for label in labels.tolist()], dtype=np.float64)
    return _numeric_values(labels, level)


def _ratio_distance(x: FloatArray, y: FloatArray) -> FloatArray:
    total = x + y
    diff = np.divide(x - y, total, out=np.zeros(np.broadcast(x, y).shape), where=total != 0)
    return np.asarray(diff**2, dtype=np.float64)


def _ratio_disagreements(
    pairable: _ItemClassCounts, values: FloatArray, n_c: FloatArray
) -> tuple[float, float]:
    """Observed and expected ratio disagreement (the ratio distance has no closed-form moments).

    Observed pairs come from a sparse class-by-class coincidence matrix (only classes that meet on
    an item); expected pairs need every class pair, done in row blocks to bound memory.
    """
    m = pairable.labels_per_item
    n_items, n_classes = len(m), len(values)
    table = sparse.csr_matrix((pairable.count, (pairable.item, pairable.cls)), shape=(n_items, n_classes))
    weights = np.divide(1.0, m - 1, out=np.zeros_like(m), where=m >= 2)
    coincidences = (table.T @ sparse.diags(weights) @ table).tocoo()
    observed = float(
        np.sum(coincidences.data * _ratio_distance(values[coincidences.row], values[coincidences.col]))
    )
    used = n_c > 0
    x, n = values[used], n_c[used]
    block = max(1, 2**22 // max(len(x), 1))
    expected = 0.0
    for start in range(0, len(x), block):
        distances = _ratio_distance(x[start : start + block, None], x[None, :])
        expected += float(n[start : start + block] @ distances @ n)
    return observed, expected / (n.sum() - 1)


def _squared_disagreements(
    pairable: _ItemClassCounts, values: FloatArray, n_c: FloatArray
) -> tuple[float, float]:
    """Observed and expected disagreement for a squared-difference distance, in O(labels).

    ``Σ_{c,k} n_c n_k (x_c − x_k)² = 2 m Σ_c n_c (x_c − x̄)²`` turns the class-pair sums into
    per-item moments; deviations from the mean avoid the cancellation of ``m·S2 − S1²``.
    """
    m = pairable.labels_per_item
    n = n_c.sum()
    x = values - np.dot(n_c, values) / n
    item_sum = np.bincount(pairable.item, weights=pairable.count * x[pairable.cls], minlength=len(m))
    item_mean = np.divide(item_sum, m, out=np.zeros_like(m), where=m > 0)
    deviation = pairable.count * (x[pairable.cls] - item_mean[pairable.item]) ** 2
    item_dev = np.bincount(pairable.item, weights=deviation, minlength=len(m))
    pairable_items = m >= 2
    observed = float(np.sum(2.0 * m[pairable_items] * item_dev[pairable_items] / (m[pairable_items] - 1)))
    expected = float(2.0 * n * np.dot(n_c, x**2) / (n - 1))
    return observed, expected


def krippendorff_alpha(
    data: Any, level: Level = "nominal", *, value_domain: Sequence[Any] | None = None
) -> float:
    """Krippendorff's alpha, ``1 − D_o / D_e``, from the coincidence matrix of pairable values.

    Alpha is the agreement coefficient that copes with what crowd data looks like: any number of
    workers per item, missing labels, and a choice of distance (``level``): ``nominal`` (0/1),
    ``ordinal`` (rank distance over the observed value frequencies), ``interval`` (squared
    difference) and ``ratio`` (squared relative difference). Items with a single label are not
    pairable and drop out, as in Krippendorff (2011) and the ``krippendorff`` package, which this
    matches to 1e-9. Non-nominal levels need numeric labels (strings such as ``"3"`` are parsed);
    ``value_domain`` gives the order of non-numeric ordinal labels.

    No loop over items: nominal, ordinal and interval alpha reduce to per-item moments (ordinal
    distance equals the squared difference of mid-ranks), so memory and time are linear in the
    labels; ratio alpha uses a sparse coincidence matrix.

    Returns NaN where alpha is undefined: no item has two labels, or the pairable values do not
    vary at all (``D_e = 0``; the reference raises or returns NaN there).
    """
    if level not in ("nominal", "ordinal", "interval", "ratio"):
        raise ValueError(f"level must be nominal, ordinal, interval or ratio, got {level!r}")
    enc = encode_labels(data)
    cls, n_classes = enc.label_idx, enc.n_classes
    values = np.zeros(0)
    if level != "nominal":
        # Classes that are the same number ("1" and "1.0") are one value on a numeric scale.
        values, merged = np.unique(_class_values(enc.labels, level, value_domain), return_inverse=True)
        cls, n_classes = merged.reshape(-1)[cls].astype(np.intp), len(values)
    pairable = _pairable(_item_class_counts(enc, cls, n_classes))
    if pairable.item.size == 0:
        return math.nan
    n_c = np.bincount(pairable.cls, weights=pairable.count, minlength=n_classes).astype(np.float64)
    n = float(n_c.sum())
    m = pairable.labels_per_item
    if level == "nominal":
        same = np.bincount(pairable.item, weights=pairable.count**2, minlength=len(m))
        pairable_items = m >= 2
        observed = float(np.sum((m[pairable_items] ** 2 - same[pairable_items]) / (m[pairable_items] - 1)))
        expected = float((n * n - np.dot(n_c, n_c)) / (n - 1))
    elif level == "ratio":
        observed, expected = _ratio_disagreements(pairable, values, n_c)
    else:
        if level == "ordinal":
            # Mid-rank positions: the ordinal distance is (Σ_{g=c..k} n_g − (n_c + n_k)/2)² = (p_k − p_c)².
            values = np.cumsum(n_c) - n_c / 2.0
        observed, expected = _squared_disagreements(pairable, values, n_c)
    if expected <= 0.0:
        return math.nan
    return 1.0 - observed / expected


# --------------------------------------------------------------------------- metric registry


def _krippendorff_nominal(data: Any) -> float:
    return krippendorff_alpha(data, "nominal")


#: The CLI's ``labelmill agreement --metric`` choices, each ``(label data) -> float``.
AGREEMENT_METRICS: dict[str, Callable[[Any], float]] = {
    "krippendorff": _krippendorff_nominal,
    "fleiss": fleiss_kappa,
    "cohen": mean_pairwise_cohen_kappa,
    "percent": percent_agreement,
}


@dataclass(frozen=True)
class AgreementResult:
    """An agreement figure with the counts a reader needs to judge it."""

    metric: str
    value: float
    n_items: int
    n_workers: int
    n_labels: int


def measure_agreement(data: Any, metric: str = "krippendorff") -> AgreementResult:
    """Compute one of :data:`AGREEMENT_METRICS` and report how much data it rests on."""
    if metric not in AGREEMENT_METRICS:
        raise ValueError(f"unknown agreement metric {metric!r}; choose one of {sorted(AGREEMENT_METRICS)}")
    enc = encode_labels(data)
    return AgreementResult(metric, AGREEMENT_METRICS[metric](enc), enc.n_items, enc.n_workers, enc.n_labels)


# --------------------------------------------------------------------------- spans and boxes


@dataclass(frozen=True)
class SpanAgreement:
    """Mean pairwise span agreement: ``exact_f1`` counts spans equal in start, end and label;
    ``overlap_f1`` counts code points covered with the same label, so near misses earn credit."""

    exact_f1: float
    overlap_f1: float
    n_items: int
    n_pairs: int


@dataclass(frozen=True)
class BoxAgreement:
    """Mean pairwise box agreement: F1 of one-to-one matches at the IoU threshold and the mean IoU
    of those matches (NaN when nothing matched)."""

    f1: float
    mean_iou: float
    n_items: int
    n_pairs: int


def _per_item(
    annotations: PerItemAnnotations,
) -> Iterable[tuple[Any, Mapping[Any, Sequence[Mapping[str, Any]]]]]:
    if isinstance(annotations, Mapping):
        return annotations.items()
    return enumerate(annotations)


def _f1(matched: float, size_a: float, size_b: float) -> float:
    """F1 of two annotations; two empty annotations agree perfectly (both say "nothing here")."""
    return 1.0 if size_a + size_b == 0 else 2.0 * matched / (size_a + size_b)


def _spans(spans: Sequence[Mapping[str, Any]], where: str) -> set[tuple[int, int, str]]:
    result: set[tuple[int, int, str]] = set()
    for position, span in enumerate(spans):
        try:
            start, end, label = int(span["start"]), int(span["end"]), str(span["label"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}, span {position}: needs integer start, end and a label") from exc
        if end < start:
            raise ValueError(f"{where}, span {position}: end {end} is before start {start}")
        result.add((start, end, label))
    return result


def _covered(spans: set[tuple[int, int, str]]) -> dict[str, list[tuple[int, int]]]:
    """Per label, the merged, sorted intervals the spans cover."""
    by_label: dict[str, list[tuple[int, int]]] = {}
    for start, end, label in sorted(spans, key=lambda s: (s[2], s[0], s[1])):
        merged = by_label.setdefault(label, [])
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        elif end > start:
            merged.append((start, end))
    return by_label


def _intersection(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    total, i, j = 0, 0, 0
    while i < len(a) and j < len(b):
        total += max(0, min(a[i][1], b[j][1]) - max(a[i][0], b[j][0]))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def _overlap_f1(a: set[tuple[int, int, str]], b: set[tuple[int, int, str]]) -> float:
    cover_a, cover_b = _covered(a), _covered(b)
    size_a = sum(end - start for intervals in cover_a.values() for start, end in intervals)
    size_b = sum(end - start for intervals in cover_b.values() for start, end in intervals)
    shared = sum(_intersection(cover_a[label], cover_b[label]) for label in cover_a.keys() & cover_b.keys())
    return _f1(shared, size_a, size_b)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def span_f1_agreement(annotations: PerItemAnnotations) -> SpanAgreement:
    """Mean pairwise F1 between annotators' entity spans (``{"start", "end", "label"}``, end exclusive).

    Spans have no chance-corrected coefficient worth its assumptions, so NER practice compares
    annotators as if one were the gold standard of the other: F1 is symmetric, so the pair order
    does not matter. Each item scores the mean over its pairs of workers; the result is the mean
    over items with two workers or more (NaN when there are none). ``overlap_f1`` measures
    code points labelled alike, so a span off by one character still earns most of its credit.
    """
    exact_items: list[float] = []
    overlap_items: list[float] = []
    n_pairs = 0
    for item, by_worker in _per_item(annotations):
        spans = [_spans(value, f"item {item!r}, worker {worker!r}") for worker, value in by_worker.items()]
        pairs = list(itertools.combinations(spans, 2))
        if not pairs:
            continue
        n_pairs += len(pairs)
        exact_items.append(_mean([_f1(len(a & b), len(a), len(b)) for a, b in pairs]))
        overlap_items.append(_mean([_overlap_f1(a, b) for a, b in pairs]))
    return SpanAgreement(_mean(exact_items), _mean(overlap_items), len(exact_items), n_pairs)


def _boxes(boxes: Sequence[Mapping[str, Any]], where: str) -> tuple[FloatArray, list[str]]:
    coords = np.zeros((len(boxes), 4))
    labels: list[str] = []
    for position, box in enumerate(boxes):
        try:
            coords[position] = [float(box["x"]), float(box["y"]), float(box["w"]), float(box["h"])]
            labels.append(str(box["label"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}, box {position}: needs numeric x, y, w, h and a label") from exc
        if coords[position, 2] < 0 or coords[position, 3] < 0 or not np.isfinite(coords[position]).all():
            raise ValueError(f"{where}, box {position}: w and h must be finite and non-negative")
    return coords, labels


def _box_iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of every box in ``a`` (rows x, y, w, h) with every box in ``b``.

    Two identical zero-area boxes have IoU 1 (they mark the same point); other zero unions give 0.
    """
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * np.clip(
        np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None
    )
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    identical = (a[:, None, :] == b[None, :, :]).all(axis=2)
    iou = np.divide(inter, union, out=identical.astype(np.float64), where=union > 0)
    return np.asarray(iou, dtype=np.float64)


def _box_pair(
    a: tuple[FloatArray, list[str]], b: tuple[FloatArray, list[str]], threshold: float, match_labels: bool
) -> tuple[float, float]:
    """F1 and mean matched IoU of two annotators' boxes on one item.

    The assignment first maximises the number of matches at the threshold and only then their
    total IoU (a large constant per match), so the score does not depend on which annotator is
    called "a" even when matchings tie.
    """
    (coords_a, labels_a), (coords_b, labels_b) = a, b
    if len(labels_a) == 0 or len(labels_b) == 0:
        return _f1(0, len(labels_a), len(labels_b)), math.nan
    iou = _box_iou_matrix(coords_a, coords_b)
    if match_labels:
        iou = np.where(np.array(labels_a)[:, None] == np.array(labels_b)[None, :], iou, 0.0)
    valid = iou >= threshold
    weight = np.where(valid, min(len(labels_a), len(labels_b)) + 1.0 + iou, 0.0)
    rows, cols = linear_sum_assignment(weight, maximize=True)
    matched = valid[rows, cols]
    ious = iou[rows, cols][matched]
    mean_iou = float(ious.mean()) if ious.size else math.nan
    return _f1(int(matched.sum()), len(labels_a), len(labels_b)), mean_iou


def box_iou_agreement(
    annotations: PerItemAnnotations, *, iou_threshold: float = 0.5, match_labels: bool = True
) -> BoxAgreement:
    """Mean pairwise agreement of annotators' boxes (``{"x", "y", "w", "h", "label"}``, pixels).

    For each pair of annotators on an item, boxes are matched one-to-one by an optimal assignment
    (Hungarian algorithm) on IoU, as detection metrics do; a match counts when its IoU reaches
    ``iou_threshold`` and, with ``match_labels``, the labels are equal. F1 over matches says whether
    annotators found the same objects; the mean IoU of the matches says how tightly they drew them.
    Each item scores the mean over its pairs; the result is the mean over items with two workers
    or more (NaN when there are none).
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    f1_items: list[float] = []
    iou_items: list[float] = []
    n_pairs = 0
    for item, by_worker in _per_item(annotations):
        boxes = [_boxes(value, f"item {item!r}, worker {worker!r}") for worker, value in by_worker.items()]
        scores = [_box_pair(a, b, iou_threshold, match_labels) for a, b in itertools.combinations(boxes, 2)]
        if not scores:
            continue
        n_pairs += len(scores)
        f1_items.append(_mean([f1 for f1, _ in scores]))
        iou_items.append(_mean([iou for _, iou in scores]))
    return BoxAgreement(_mean(f1_items), _mean(iou_items), len(f1_items), n_pairs)
