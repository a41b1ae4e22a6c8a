"""The annotator loop on SQLite, on the event loop, without SQLAlchemy's per-statement cost.

Next task is one write transaction: check the token, read the member and project, and (when
the common case applies) take an item's slot, insert the task and read the predictions to show.
Submit is one too: check the token, read the task, validate the annotation against the schema
and the item, finish the task, store the annotation, count it and queue the consensus refresh.
The statements are those of :mod:`labelmill.services.queue`, compiled for :mod:`sqlite3`
(:mod:`labelmill.store.sqlite_hot`), so every rule is the same and holds the same way: the whole
call is one transaction under SQLite's write lock.

Whatever is not the common case (an admin's first visit, a live lease to hand back, expired
leases to reclaim, qualification and gold, a late or repeated submit, gold scoring, adaptive
overlap, someone else's task) rolls back what it read and goes to the full implementation,
which checks everything again in its own transaction. So does a call that finds the write
lock taken, in a worker thread that waits for it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, Float, String, Table, bindparam, insert
from starlette.concurrency import run_in_threadpool

from labelmill.services import queue
from labelmill.services import users as user_service
from labelmill.services.projects import load_schema_json
from labelmill.services.queue import Lease, LeasedItem, LeasedTask, ShownPrediction, SubmittedAnnotation
from labelmill.store.engine import Database, WriterBusy
from labelmill.store.models import Annotation, Job, Task, User, UTCDateTime
from labelmill.store.sqlite_hot import Compiled, SqliteHotPath

T = TypeVar("T")

_TASKS = cast(Table, Task.__table__)
_ANNOTATIONS = cast(Table, Annotation.__table__)
_JOBS = cast(Table, Job.__table__)

#: The caller, from the hash of their token.
TOKEN_USER = Compiled(user_service.TOKEN_USER)
NEXT_CONTEXT = Compiled(queue.NEXT_CONTEXT)
TAKE_NEXT = Compiled(queue.TAKE_NEXT)
INSERT_TASK = Compiled(
    insert(_TASKS)
    .values(
        project_id=queue.PID,
        item_id=queue.IID,
        annotator_id=queue.UID,
        state="leased",
        is_gold=False,
        leased_at=queue.NOW,
        expires_at=bindparam("lease_until", type_=UTCDateTime()),
    )
    .returning(_TASKS.c.id)
)
SHOWN_PREDICTIONS = Compiled(queue.SHOWN_PREDICTIONS)
SUBMIT_CONTEXT = Compiled(queue.SUBMIT_CONTEXT)
FINISH_TASK = Compiled(queue.FINISH_TASK)
INSERT_ANNOTATION = Compiled(
    insert(_ANNOTATIONS)
    .values(
        project_id=queue.PID,
        item_id=queue.IID,
        annotator_id=queue.UID,
        task_id=queue.TID,
        value=bindparam("a_value", type_=JSON()),
        lead_seconds=bindparam("a_lead_seconds", type_=Float()),
        idempotency_key=bindparam("a_idempotency_key", type_=String()),
        status=bindparam("a_status", type_=String()),
    )
    .returning(*queue.ANNOTATION_VIEW)
)
COUNT_ANNOTATION = Compiled(queue.COUNT_ANNOTATION)
ENQUEUE_CONSENSUS = Compiled(
    insert(_JOBS).values(project_id=queue.PID, kind="consensus", status="queued", progress_done=0)
)


class _FullPath(Exception):
    """Not the common case: roll back and let the full implementation decide, as ``user``."""

    def __init__(self, user: User) -> None:
        self.user = user


async def run_writer(db: Database, call: Callable[[], T]) -> T:
    """Run one of the annotator loop's short write transactions through SQLAlchemy.

    On SQLite it runs right here on the event loop when the write lock is free at once: one
    thread does all the writing, so a transaction never waits on the GIL while holding
    SQLite's only write lock (in a thread pool it would, at every statement, behind the
    threads parsing other requests). When the lock is taken it goes to a worker thread and
    waits there. PostgreSQL transactions may wait on row locks, so they always go to a thread.
    """
    if db.dialect == "sqlite":
        try:
            with db.nowait():
                return call()
        except WriterBusy:
            pass
    return await run_in_threadpool(call)


def _user(hot: SqliteHotPath, token_hash: str, kind: str | None) -> User:
    return user_service.token_user(hot.fetch_one(TOKEN_USER, {"token_hash": token_hash}), kind)


async def next_task(
    hot: SqliteHotPath, db: Database, project_id: int, token_hash: str, kind: str | None
) -> Lease | None:
    """The caller's next task (see :func:`labelmill.services.queue.next_task`), authenticating
    the token in the same transaction (``kind`` as for :func:`~labelmill.services.users.token_user`)."""
    now = datetime.now(UTC)
    draw = queue.gold_draw()
    try:
        with hot.transaction():
            return _lease(hot, project_id, _user(hot, token_hash, kind), now, draw)
    except _FullPath as slow:
        user = slow.user
    except WriterBusy:
        user = _user(hot, token_hash, kind)  # a single read: WAL readers never wait
    return await run_writer(db, lambda: queue.next_task(db, project_id, user, draw=draw))


def _lease(hot: SqliteHotPath, project_id: int, user: User, now: datetime, draw: float) -> Lease | None:
    ctx = hot.fetch_one(NEXT_CONTEXT, {"pid": project_id, "uid": user.id, "now": now})
    settings: dict[str, Any] = (ctx.settings if ctx is not None else None) or {}
    if (
        ctx is None  # no such project: the full path answers 404
        or ctx.member_id is None  # not a member (404), or an admin's first visit
        or ctx.paused
        or ctx.live_task_id is not None
        or ctx.has_expired
        or queue.needs_qualification(settings, ctx.qualification)
        or queue.draws_gold(settings, draw)
    ):
        raise _FullPath(user)
    overlap = int(settings.get("overlap", 1))
    taken = hot.fetch_one(TAKE_NEXT, {"pid": project_id, "uid": user.id, "by": 1, "overlap": overlap})
    if taken is None:
        return None
    expires_at = queue.lease_until(settings, now)
    task_id = hot.fetch_one(
        INSERT_TASK,
        {"pid": project_id, "iid": taken.id, "uid": user.id, "now": now, "lease_until": expires_at},
    ).id
    predictions = (
        [
            ShownPrediction(p.value, p.score, p.model_version)
            for p in hot.fetch_all(SHOWN_PREDICTIONS, {"pid": project_id, "iid": taken.id})
        ]
        if ctx.has_predictions
        else []
    )
    return Lease(
        task=LeasedTask(task_id, project_id, taken.id, "leased", False, now, expires_at),
        item=LeasedItem(taken.id, taken.data, taken.meta),
        predictions=predictions,
    )


async def submit(
    hot: SqliteHotPath,
    db: Database,
    task_id: int,
    token_hash: str,
    kind: str | None,
    value: Any,
    *,
    idempotency_key: str | None = None,
) -> tuple[SubmittedAnnotation, bool]:
    """Store the annotation of a task (see :func:`labelmill.services.queue.submit`),
    authenticating the token in the same transaction."""
    key = idempotency_key
    now = datetime.now(UTC)
    try:
        with hot.transaction():
            return _submit(hot, task_id, _user(hot, token_hash, kind), value, key, now), True
    except _FullPath as slow:
        user = slow.user
    except WriterBusy:
        user = _user(hot, token_hash, kind)
    return await run_writer(db, lambda: queue.submit(db, task_id, user, value, idempotency_key=key))


def _submit(
    hot: SqliteHotPath, task_id: int, user: User, value: Any, key: str | None, now: datetime
) -> SubmittedAnnotation:
    row = hot.fetch_one(SUBMIT_CONTEXT, {"tid": task_id})
    settings: dict[str, Any] = (row.settings if row is not None else None) or {}
    if (
        row is None
        or row.annotator_id != user.id  # not the caller's task: the full path answers 404
        or row.state != "leased"
        or queue.needs_scoring(settings, row.is_gold)
        or (key is not None and not 1 <= len(key) <= 200)
    ):
        raise _FullPath(user)
    queue.check_annotation(load_schema_json(row.label_schema), row.data, row.meta, value)
    if hot.execute(FINISH_TASK, {"tid": task_id, "was": row.state, "now": now}) != 1:
        raise _FullPath(user)
    annotation = queue.annotation_values(settings, row.leased_at, value, key, now)
    try:
        created = hot.fetch_one(
            INSERT_ANNOTATION,
            {
                "pid": row.project_id,
                "iid": row.item_id,
                "uid": user.id,
                "tid": task_id,
                **{f"a_{k}": v for k, v in annotation.items()},
            },
        )
    except sqlite3.IntegrityError:  # the Idempotency-Key is taken: a replay or a misuse
        raise _FullPath(user) from None
    hot.execute(COUNT_ANNOTATION, {"iid": row.item_id})
    if row.queued_consensus is None:
        hot.execute(ENQUEUE_CONSENSUS, {"pid": row.project_id})
    return cast(SubmittedAnnotation, created)
