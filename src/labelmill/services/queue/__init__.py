"""The annotation queue: hand out tasks, take submissions, skips and edits.

Every rule is written once, in :mod:`.rules` (the gates, as plain functions, and the SQL forms
PostgreSQL's one-statement lease evaluates), and every statement once, in :mod:`.statements`
(SQLAlchemy Core). Three thin executors run them:

- :mod:`.orm`: the full implementation, every case, through SQLAlchemy (one transaction per call;
  on PostgreSQL the common paths write with a single statement, its own transaction);
- :mod:`.sqlite`: the common case on SQLite, run by :mod:`sqlite3` on the event loop;
- :mod:`.pg`: the common case on PostgreSQL, one statement per step, run by asyncpg on the
  event loop.

The hot paths answer :class:`FullPath` for everything else, and the caller (the API) runs the
full implementation in a worker thread. The rules hold under any number of API processes:

- an item never has more than its ``needed`` labels (the project's ``overlap``, raised up to
  ``max_overlap`` by adaptive overlap, decided by
  :func:`labelmill.quality.decision.item_needs_another_label`) submitted or leased:
  ``items.assigned`` counts both and ``items.is_open`` says whether a slot is free; gold items
  are outside this accounting;
- an annotator never gets the same item twice: ``tasks`` is unique on ``(item_id, annotator_id)``;
- a live lease is handed back to its holder instead of a new task; expired leases return
  their slot to the pool;
- items are served by priority, then age, from the partial index ``ix_items_open``, whose
  size is the number of open items: the query costs the same at 0% and at 99% done.

SQLite serialises writers (``BEGIN IMMEDIATE``); PostgreSQL locks the chosen item row with
``FOR UPDATE SKIP LOCKED``, so concurrent annotators take different rows instead of waiting.
"""

from __future__ import annotations

from labelmill.services.queue.orm import (
    DEFAULT_SKILL,
    MIN_GOLD_FOR_PAUSE,
    annotation_values,
    check_annotation,
    edit,
    gold_accuracy,
    gold_draw,
    item_confidence,
    my_tasks,
    next_item_query,
    next_task,
    shift_slots,
    skip,
    submit,
    validate_annotation,
)
from labelmill.services.queue.types import (
    FullPath,
    Lease,
    LeasedItem,
    LeasedTask,
    ShownPrediction,
    SubmittedAnnotation,
)

__all__ = [
    "DEFAULT_SKILL",
    "MIN_GOLD_FOR_PAUSE",
    "FullPath",
    "Lease",
    "LeasedItem",
    "LeasedTask",
    "ShownPrediction",
    "SubmittedAnnotation",
    "annotation_values",
    "check_annotation",
    "edit",
    "gold_accuracy",
    "gold_draw",
    "item_confidence",
    "my_tasks",
    "next_item_query",
    "next_task",
    "shift_slots",
    "skip",
    "submit",
    "validate_annotation",
]
