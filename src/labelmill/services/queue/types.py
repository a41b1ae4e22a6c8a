"""What the queue hands out: a lease (the task, its item as the annotator may see it, the
predictions to show) and a stored annotation."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row


@dataclass(frozen=True)
class LeasedTask:
    id: int
    project_id: int
    item_id: int
    state: str
    is_gold: bool
    leased_at: datetime
    expires_at: datetime


@dataclass(frozen=True)
class LeasedItem:
    """The item as an annotator sees it: its data, and of its meta only what the schema shows
    (:func:`labelmill.services.queue.rules.shown_meta`)."""

    id: int
    data: dict[str, Any]
    meta: dict[str, Any] | None


@dataclass(frozen=True)
class ShownPrediction:
    value: dict[str, Any]
    score: float | None
    model_version: str


@dataclass(frozen=True)
class Lease:
    """What an annotator is given: the task, its item and the predictions to show. Never the
    item's gold answer."""

    task: LeasedTask
    item: LeasedItem
    predictions: list[ShownPrediction]


#: A stored annotation as the annotator sees it: a row with the columns of
#: ``statements.ANNOTATION_VIEW`` (id, task_id, item_id, value, status, lead_seconds,
#: created_at, updated_at).
SubmittedAnnotation = Row[*tuple[Any, ...]]


@dataclass(frozen=True)
class FullPath:
    """A hot path's answer when the call is not its common case: the caller runs the full
    implementation (:mod:`labelmill.services.queue.orm`), in a worker thread, as ``user``, with
    the same chance ``draw``."""

    user: Any
    draw: float = 0.0
