"""Integer codes for (item, worker, label) rows, and the estimator base the aggregators share.

Every aggregator works on three aligned integer arrays (`item_idx`, `worker_idx`, `label_idx`) so
that an EM iteration is a handful of vectorised passes (`np.bincount`, sparse products) instead of
group-bys over Python objects. Data arrives once at the edge, in whatever shape the caller has
(a DataFrame, a dict of columns, an iterable of triples), and is converted here exactly once.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]
FloatArray = npt.NDArray[np.float64]
Duplicates = Literal["keep", "first", "last"]

ITEM_COLUMNS = ("item", "task")
WORKER_COLUMN = "worker"
LABEL_COLUMN = "label"


@dataclass(frozen=True)
class CodedLabels:
    """Labels as positions into `items`, `workers` and `classes` (each sorted, unique original ids)."""

    item_idx: IntArray
    worker_idx: IntArray
    label_idx: IntArray
    items: npt.NDArray[Any]
    workers: npt.NDArray[Any]
    classes: npt.NDArray[Any]

    @property
    def n_labels(self) -> int:
        return int(self.item_idx.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.items.shape[0])

    @property
    def n_workers(self) -> int:
        return int(self.workers.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.classes.shape[0])

    def take(self, rows: Any) -> CodedLabels:
        """The labels at ``rows`` (positions or a boolean mask), in that order, with every
        item, worker and class kept, so positions into them stay aligned."""
        return CodedLabels(
            self.item_idx[rows],
            self.worker_idx[rows],
            self.label_idx[rows],
            self.items,
            self.workers,
            self.classes,
        )


def encode(
    data: Any,
    *,
    classes: Sequence[Hashable] | npt.NDArray[Any] | None = None,
    duplicates: Duplicates = "keep",
) -> CodedLabels:
    """Turn labels into a `CodedLabels`.

    `data` is a DataFrame-like object (anything with `.columns`) with columns `item` (or `task`),
    `worker` and `label`; a mapping with those three keys; an iterable of `(item, worker, label)`
    triples; or an already coded `CodedLabels`. `classes` fixes the class set (and its order);
    every label must then belong to it, which lets callers keep classes nobody chose yet.
    `duplicates` says what to do when one worker labelled one item more than once: `"keep"` every
    row (published datasets such as S_Adult count repeats as votes), or only the `"first"` or
    `"last"` row in data order.
    """
    if isinstance(data, CodedLabels):
        coded = data if classes is None else _recode_classes(data, classes)
    else:
        item, worker, label = _columns(data)
        if item.shape[0] == 0:
            raise ValueError("no labels: the data has no (item, worker, label) rows")
        items, item_idx = _factorize(item, "item")
        workers, worker_idx = _factorize(worker, "worker")
        if classes is None:
            class_ids, label_idx = _factorize(label, "label")
        else:
            class_ids, label_idx = _lookup_classes(label, classes)
        coded = CodedLabels(item_idx, worker_idx, label_idx, items, workers, class_ids)
    if duplicates != "keep":
        coded = _drop_duplicates(coded, keep=duplicates)
    return coded


def _columns(data: Any) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    if hasattr(data, "columns"):
        names = [str(c) for c in data.columns]
        return _pick(lambda key: np.asarray(data[key]), names)
    if isinstance(data, Mapping):
        return _pick(lambda key: _as_array(data[key]), [str(k) for k in data])
    rows = list(data)
    if not rows:
        empty = np.empty(0, dtype=object)
        return empty, empty, empty
    if any(len(row) != 3 for row in rows):
        raise ValueError("every label must be an (item, worker, label) triple")
    item, worker, label = zip(*rows, strict=True)
    return _as_array(item), _as_array(worker), _as_array(label)


def _pick(column: Any, names: list[str]) -> tuple[npt.NDArray[Any], npt.NDArray[Any], npt.NDArray[Any]]:
    item_key = next((name for name in ITEM_COLUMNS if name in names), None)
    missing = [
        name
        for name, present in (
            ("item", item_key is not None),
            (WORKER_COLUMN, WORKER_COLUMN in names),
            (LABEL_COLUMN, LABEL_COLUMN in names),
        )
        if not present
    ]
    if missing:
        raise ValueError(
            f"labels need columns item (or task), worker, label; missing {', '.join(missing)} "
            f"(got {', '.join(names) or 'no columns'})"
        )
    item, worker, label = column(item_key), column(WORKER_COLUMN), column(LABEL_COLUMN)
    if not item.shape[0] == worker.shape[0] == label.shape[0]:
        raise ValueError("columns item, worker and label must have the same length")
    return item, worker, label


def _as_array(values: Sequence[Any]) -> npt.NDArray[Any]:
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values
    try:
        array = np.asarray(values)
    except ValueError:  # ragged, e.g. lists of classes of different lengths
        array = None
    if array is not None and array.dtype.kind in "US" and not all(isinstance(v, str) for v in values):
        array = None  # numpy turned mixed ids such as 0 and "a" into strings, merging 0 with "0"
    if array is None or array.ndim != 1:  # tuples as ids, lists as multi-choice labels: opaque objects
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
    return array


def _factorize(values: npt.NDArray[Any], field: str) -> tuple[npt.NDArray[Any], IntArray]:
    """Sorted unique ids and each row's position among them."""
    if values.dtype.kind in "iub" and values.shape[0] > 0:
        small = _factorize_small_ints(values)
        if small is not None:
            return small
    try:
        uniques, inverse = np.unique(values, return_inverse=True)
    except TypeError:
        # Mixed, unorderable ids (say ints and strings): order by type, then value, once.
        uniques, inverse = _factorize_mixed(values)
    if _has_missing(uniques):
        raise ValueError(f"{field} has missing values (None or NaN)")
    return uniques, inverse.reshape(-1).astype(np.intp, copy=False)


def _has_missing(uniques: npt.NDArray[Any]) -> bool:
    if uniques.dtype.kind == "f":
        return bool(np.isnan(uniques).any())
    if uniques.dtype == object:
        return any(u is None or u != u for u in uniques.tolist())
    return False


def _factorize_small_ints(values: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], IntArray] | None:
    """O(n) unique for integers of a compact range: the common case of database ids and class codes."""
    low, high = values.min(), values.max()
    span = int(high) - int(low) + 1
    if span > 4 * values.shape[0] + 1024:
        return None
    offsets = (values - low).astype(np.intp, copy=False)
    present = np.zeros(span, dtype=bool)
    present[offsets] = True
    position = np.cumsum(present, dtype=np.intp) - 1
    uniques = (np.flatnonzero(present) + int(low)).astype(values.dtype)
    return uniques, position[offsets]


def _factorize_mixed(values: npt.NDArray[Any]) -> tuple[npt.NDArray[Any], IntArray]:
    seen: dict[Any, int] = {}
    first = np.fromiter((seen.setdefault(v, len(seen)) for v in values.tolist()), np.intp, values.shape[0])
    keys = list(seen)
    order = sorted(range(len(keys)), key=lambda i: (type(keys[i]).__name__, str(keys[i])))
    rank = np.empty(len(keys), dtype=np.intp)
    rank[order] = np.arange(len(keys))
    uniques = np.empty(len(keys), dtype=object)
    uniques[:] = [keys[i] for i in order]
    return uniques, rank[first]


def _lookup_classes(
    label: npt.NDArray[Any], classes: Sequence[Hashable] | npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], IntArray]:
    class_ids = _as_array(list(classes))
    position = {value: i for i, value in enumerate(class_ids.tolist())}
    if len(position) != class_ids.shape[0]:
        raise ValueError("classes must be unique")
    uniques, inverse = _factorize(label, "label")
    unknown = [u for u in uniques.tolist() if u not in position]
    if unknown:
        raise ValueError(f"labels {unknown[:5]!r} are not among the classes {class_ids.tolist()[:20]!r}")
    mapping = np.array([position[u] for u in uniques.tolist()], dtype=np.intp)
    return class_ids, mapping[inverse]


def _recode_classes(coded: CodedLabels, classes: Sequence[Hashable] | npt.NDArray[Any]) -> CodedLabels:
    class_ids, mapping = _lookup_classes(coded.classes, classes)
    label_idx = mapping[coded.label_idx] if coded.n_labels else coded.label_idx
    return CodedLabels(coded.item_idx, coded.worker_idx, label_idx, coded.items, coded.workers, class_ids)


def _drop_duplicates(coded: CodedLabels, *, keep: Literal["first", "last"]) -> CodedLabels:
    pair = coded.item_idx.astype(np.int64) * coded.n_workers + coded.worker_idx
    if keep == "last":
        _, reversed_first = np.unique(pair[::-1], return_index=True)
        rows = np.sort(coded.n_labels - 1 - reversed_first)
    elif keep == "first":
        _, first = np.unique(pair, return_index=True)
        rows = np.sort(first)
    else:
        raise ValueError(f"duplicates must be 'keep', 'first' or 'last', not {keep!r}")
    return coded.take(rows)


def sort_by_item(coded: CodedLabels) -> CodedLabels:
    """Labels grouped by item, so every iteration's per-item bincounts and gathers walk memory in order."""
    if coded.n_labels < 2 or bool(np.all(coded.item_idx[1:] >= coded.item_idx[:-1])):
        return coded
    order = np.argsort(coded.item_idx, kind="stable")
    return coded.take(order)


def weighted_count(index: IntArray, weights: FloatArray, size: int) -> FloatArray:
    """Sum of `weights` per value of `index` (0..size-1): the workhorse of every E- and M-step."""
    return np.bincount(index, weights=weights, minlength=size).astype(np.float64, copy=False)


def vote_counts(coded: CodedLabels, weights: FloatArray | None = None) -> FloatArray:
    """(n_items, n_classes) sum of (weighted) votes."""
    cell = coded.item_idx * coded.n_classes + coded.label_idx
    counts = np.bincount(cell, weights=weights, minlength=coded.n_items * coded.n_classes)
    return counts.astype(np.float64, copy=False).reshape(coded.n_items, coded.n_classes)


def normalize_rows(scores: FloatArray) -> FloatArray:
    """Rows scaled to sum to one; an all-zero row becomes uniform."""
    total = row_sum(scores)[:, None]
    uniform = np.full_like(scores, 1.0 / max(scores.shape[1], 1))
    return np.divide(scores, total, out=uniform, where=total > 0)


def softmax_rows(log_scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Row-wise softmax of log scores, and each row's log normaliser (the item's log evidence)."""
    top = row_max(log_scores)
    top[~np.isfinite(top)] = 0.0
    scaled = np.exp(log_scores - top[:, None])
    total = row_sum(scaled)
    scaled /= total[:, None]
    return scaled, np.log(total) + top


def row_max(matrix: FloatArray) -> FloatArray:
    # A loop over the (few) columns: numpy's reduce along a short last axis is ~10x slower.
    top = matrix[:, 0].copy()
    for column in range(1, matrix.shape[1]):
        np.maximum(top, matrix[:, column], out=top)
    return top


def row_sum(matrix: FloatArray) -> FloatArray:
    # einsum, not `matrix @ ones`: a threaded BLAS call on a tall thin matrix is slow on a busy machine.
    return np.einsum("ij->i", matrix)


def column_sum(matrix: FloatArray) -> FloatArray:
    return np.einsum("ij->j", matrix)


class LabelAggregator:
    """Shared estimator contract: fit on labels, read fitted `items_`, `classes_`, `probas_`, `labels_`.

    Subclasses implement `_fit_coded(coded, gold_idx)` which sets `probas_` (rows sum to one), and
    whatever model attributes they have; `gold_idx` holds the class position of every item with a
    known true label, or -1.
    """

    items_: npt.NDArray[Any]
    workers_: npt.NDArray[Any]
    classes_: npt.NDArray[Any]
    probas_: FloatArray
    labels_: npt.NDArray[Any]
    skills_: FloatArray

    def fit(self, data: Any, gold: Mapping[Any, Any] | None = None) -> Self:
        """Fit on labels (see `encode` for accepted shapes); `gold` maps item -> known true label."""
        coded = sort_by_item(encode(data))
        if gold:
            known = set(coded.classes.tolist())
            extra = [label for label in dict.fromkeys(gold.values()) if label not in known]
            if extra:
                coded = encode(coded, classes=sorted([*coded.classes.tolist(), *extra], key=_sort_key))
        gold_idx = _gold_positions(coded, gold)
        self.items_ = coded.items
        self.workers_ = coded.workers
        self.classes_ = coded.classes
        self._fit_coded(coded, gold_idx)
        self.labels_ = self.classes_[self.probas_.argmax(axis=1)]
        return self

    def _fit_coded(self, coded: CodedLabels, gold_idx: IntArray) -> None:
        raise NotImplementedError

    def predict(self) -> npt.NDArray[Any]:
        """Most probable class of every item in `items_` (ties go to the first class)."""
        self._check_fitted()
        return self.labels_

    def predict_proba(self) -> FloatArray:
        """(n_items, n_classes) posterior over `classes_` for every item in `items_`."""
        self._check_fitted()
        return self.probas_

    def fit_predict(self, data: Any, gold: Mapping[Any, Any] | None = None) -> dict[Any, Any]:
        """Fit, then return item -> aggregated label."""
        labels = self.fit(data, gold).predict()
        return dict(zip(self.items_.tolist(), labels.tolist(), strict=True))

    def fit_predict_proba(self, data: Any, gold: Mapping[Any, Any] | None = None) -> FloatArray:
        """Fit, then return the (n_items, n_classes) posteriors aligned with `items_` and `classes_`."""
        return self.fit(data, gold).predict_proba()

    def _check_fitted(self) -> None:
        if not hasattr(self, "probas_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(data) first")

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_"))
        return f"{type(self).__name__}({params})"


def _sort_key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)


def _gold_positions(coded: CodedLabels, gold: Mapping[Any, Any] | None) -> IntArray:
    gold_idx = np.full(coded.n_items, -1, dtype=np.intp)
    if not gold:
        return gold_idx
    item_position = {item: i for i, item in enumerate(coded.items.tolist())}
    class_position = {label: c for c, label in enumerate(coded.classes.tolist())}
    for item, label in gold.items():
        i = item_position.get(item)
        if i is not None:
            gold_idx[i] = class_position[label]
    return gold_idx


def clamp_gold(probas: FloatArray, gold_idx: IntArray) -> FloatArray:
    """Known items get a one-hot posterior, so they anchor the worker estimates."""
    known = np.flatnonzero(gold_idx >= 0)
    if known.size:
        probas[known] = 0.0
        probas[known, gold_idx[known]] = 1.0
    return probas


def agreement_skills(coded: CodedLabels, label_idx_of_item: IntArray) -> FloatArray:
    """Share of each worker's labels equal to the item's aggregated label."""
    agrees = (coded.label_idx == label_idx_of_item[coded.item_idx]).astype(np.float64)
    done = np.bincount(coded.worker_idx, minlength=coded.n_workers)
    hits = np.bincount(coded.worker_idx, weights=agrees, minlength=coded.n_workers)
    return np.divide(hits, done, out=np.zeros(coded.n_workers), where=done > 0)
