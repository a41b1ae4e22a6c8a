"""Multi-choice labels: one binary aggregation per class."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from labelmill.quality._codes import (
    CodedLabels,
    FloatArray,
    LabelAggregator,
    _columns,
    _factorize,
    sort_by_item,
)
from labelmill.quality.dawid_skene import DawidSkene
from labelmill.quality.majority import MajorityVote  # noqa: F401  (used by the doctest)

BINARY = np.array([False, True])


class MultiLabel:
    """Aggregates `multi_choices` labels (each a set of classes) as one yes/no problem per class.

    A worker who labelled an item said "yes" to the classes in their set and "no" to every other
    class; each class is then aggregated on its own by a copy of `base_estimator` (any of this
    package's aggregators), and an item's set holds the classes whose posterior of "yes" is above
    one half. Treating classes independently is the standard reduction (binary relevance): it
    ignores correlations between classes but lets every worker have a different reliability per
    class, which a single model over the power set could not estimate from realistic data.

    Fitted: `items_`, `classes_`, `probas_` ((n_items, n_classes) probability that each class
    belongs to the item), `labels_` (a frozenset per item), `estimators_` (class -> fitted copy),
    `skills_` ((n_workers, n_classes) per-class skills), `workers_`.

    Example:
        >>> rows = [("a", "w1", ["x", "y"]), ("a", "w2", ["x"]), ("a", "w3", ["x", "y"])]
        >>> MultiLabel(MajorityVote()).fit_predict(rows)
        {'a': frozenset({'x', 'y'})}
    """

    items_: npt.NDArray[Any]
    workers_: npt.NDArray[Any]
    classes_: npt.NDArray[Any]
    probas_: FloatArray
    labels_: list[frozenset[Any]]
    skills_: FloatArray
    estimators_: dict[Any, LabelAggregator]

    def __init__(self, base_estimator: LabelAggregator | None = None) -> None:
        self.base_estimator = base_estimator

    def fit(self, data: Any, gold: Mapping[Any, Iterable[Any]] | None = None) -> Self:
        """Fit on rows whose label is a collection of classes; `gold` maps item -> its true set."""
        item, worker, label = _columns(data)
        if item.shape[0] == 0:
            raise ValueError("no labels: the data has no (item, worker, label) rows")
        items, item_idx = _factorize(item, "item")
        workers, worker_idx = _factorize(worker, "worker")
        row_idx, chosen = _explode(label)
        classes, class_idx = _factorize(chosen, "label") if chosen.size else (np.empty(0, object), chosen)
        present = np.zeros((item.shape[0], classes.shape[0]), dtype=np.intp)
        present[row_idx, class_idx] = 1
        base = self.base_estimator if self.base_estimator is not None else DawidSkene()
        self.items_, self.workers_, self.classes_ = items, workers, classes
        self.estimators_ = {}
        self.probas_ = np.zeros((items.shape[0], classes.shape[0]))
        self.skills_ = np.zeros((workers.shape[0], classes.shape[0]))
        for c, name in enumerate(classes.tolist()):
            coded = sort_by_item(CodedLabels(item_idx, worker_idx, present[:, c], items, workers, BINARY))
            estimator = copy.deepcopy(base).fit(coded, _binary_gold(gold, name))
            self.estimators_[name] = estimator
            self.probas_[:, c] = estimator.probas_[:, 1]
            self.skills_[:, c] = estimator.skills_
        chosen_mask = self.probas_ > 0.5
        self.labels_ = [frozenset(classes[row].tolist()) for row in chosen_mask]
        return self

    def predict(self) -> list[frozenset[Any]]:
        """The aggregated set of classes of every item in `items_`."""
        self._check_fitted()
        return self.labels_

    def predict_proba(self) -> FloatArray:
        """(n_items, n_classes) probability that each class in `classes_` belongs to each item."""
        self._check_fitted()
        return self.probas_

    def fit_predict(
        self, data: Any, gold: Mapping[Any, Iterable[Any]] | None = None
    ) -> dict[Any, frozenset[Any]]:
        labels = self.fit(data, gold).predict()
        return dict(zip(self.items_.tolist(), labels, strict=True))

    def fit_predict_proba(self, data: Any, gold: Mapping[Any, Iterable[Any]] | None = None) -> FloatArray:
        return self.fit(data, gold).predict_proba()

    def _check_fitted(self) -> None:
        if not hasattr(self, "probas_"):
            raise RuntimeError("MultiLabel is not fitted yet: call fit(data) first")


def _explode(label: npt.NDArray[Any]) -> tuple[npt.NDArray[np.intp], npt.NDArray[Any]]:
    """(row, class) for every class named in every row's collection."""
    rows: list[int] = []
    chosen: list[Any] = []
    for row, value in enumerate(label.tolist()):
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ValueError(
                f"row {row}: a multi-choice label must be a list or set of classes, got {value!r}"
            )
        for name in dict.fromkeys(value):
            rows.append(row)
            chosen.append(name)
    chosen_array = np.empty(len(chosen), dtype=object)
    chosen_array[:] = chosen
    if chosen and all(isinstance(c, str) for c in chosen):
        chosen_array = chosen_array.astype(str)
    return np.asarray(rows, dtype=np.intp), chosen_array


def _binary_gold(gold: Mapping[Any, Iterable[Any]] | None, name: Any) -> dict[Any, bool] | None:
    if not gold:
        return None
    return {item: name in set(value) for item, value in gold.items()}
