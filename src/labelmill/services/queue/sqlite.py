"""The annotator loop's common case on SQLite, run by :mod:`sqlite3` on the event loop's own
connection (:mod:`labelmill.store.sqlite_hot`), without SQLAlchemy's per-statement cost.

Next task is one write transaction: check the token, read the member and project, and (when
:func:`.rules.next_route` says REGULAR and no lease needs reclaiming) take an item's slot, insert
the task and read the predictions to show. Submit is one too: check the token, read the task,
validate the annotation, finish the task, store the annotation, count it and queue the consensus
refresh. The statements are :mod:`.statements`, the gates :mod:`.rules`: the whole call is one
transaction under SQLite's write lock, as in the full implementation.

Whatever is not the common case rolls back what it read and answers :class:`.types.FullPath`:
the caller runs :mod:`.orm` in a worker thread, which checks everything again in its own
transaction. So does a call that finds the write lock taken (:class:`WriterBusy`).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any, cast

from labelmill.services import users as user_service
from labelmill.services.projects import load_schema_json, settings_from_json
from labelmill.services.queue import orm, rules
from labelmill.services.queue import statements as sql
from labelmill.services.queue.types import (
    FullPath,
    Lease,
    LeasedItem,
    LeasedTask,
    ShownPrediction,
    SubmittedAnnotation,
)
from labelmill.store.engine import WriterBusy
from labelmill.store.models import User
from labelmill.store.sqlite_hot import Compiled, SqliteHotPath

TOKEN_USER = Compiled(user_service.TOKEN_USER)
NEXT_CONTEXT = Compiled(sql.NEXT_CONTEXT)
TAKE_NEXT = Compiled(sql.TAKE_NEXT)
INSERT_TASK = Compiled(sql.INSERT_TASK)
SHOWN_PREDICTIONS = Compiled(sql.SHOWN_PREDICTIONS)
SUBMIT_CONTEXT = Compiled(sql.SUBMIT_CONTEXT)
FINISH_TASK = Compiled(sql.FINISH_TASK)
INSERT_ANNOTATION = Compiled(sql.INSERT_ANNOTATION)
COUNT_ANNOTATION = Compiled(sql.COUNT_ANNOTATION)
ENQUEUE_CONSENSUS = Compiled(sql.ENQUEUE_CONSENSUS)


class _FullPath(Exception):
    """Not the common case: roll back and let the full implementation decide, as ``user``."""

    def __init__(self, user: User) -> None:
        self.user = user


def _user(hot: SqliteHotPath, token_hash: str, kind: str | None) -> User:
    return user_service.token_user(hot.fetch_one(TOKEN_USER, {"token_hash": token_hash}), kind)


def next_task(
    hot: SqliteHotPath, project_id: int, token_hash: str, kind: str | None, *, draw: float | None = None
) -> Lease | FullPath | None:
    """The caller's next task (see :func:`.orm.next_task`), authenticating the token in the same
    transaction (``kind`` as for :func:`~labelmill.services.users.token_user`), or
    :class:`FullPath` when the full implementation must answer."""
    now = datetime.now(UTC)
    draw = orm.gold_draw() if draw is None else draw
    try:
        with hot.transaction():
            return _lease(hot, project_id, _user(hot, token_hash, kind), now, draw)
    except _FullPath as slow:
        return FullPath(slow.user, draw)
    except WriterBusy:
        return FullPath(_user(hot, token_hash, kind), draw)  # a single read: WAL readers never wait


def _lease(hot: SqliteHotPath, project_id: int, user: User, now: datetime, draw: float) -> Lease | None:
    ctx = hot.fetch_one(NEXT_CONTEXT, {"pid": project_id, "uid": user.id, "now": now})
    if ctx is None:  # no such project: the full path answers 404
        raise _FullPath(user)
    settings = settings_from_json(ctx.settings)
    route = rules.next_route(
        settings,
        member=ctx.member_id is not None,
        is_admin=False,  # an admin's first visit (a membership to add) is for the full path
        paused=bool(ctx.paused),
        live_lease=ctx.live_task_id is not None,
        qualification=ctx.qualification,
        draw=draw,
    )
    if route is not rules.NextRoute.REGULAR or ctx.has_expired:
        raise _FullPath(user)
    overlap = settings.overlap
    taken = hot.fetch_one(TAKE_NEXT, {"pid": project_id, "uid": user.id, "by": 1, "overlap": overlap})
    if taken is None:
        return None
    expires_at = rules.lease_until(settings, now)
    task_id = hot.fetch_one(
        INSERT_TASK,
        {
            "pid": project_id,
            "iid": taken.id,
            "uid": user.id,
            "gold": False,
            "now": now,
            "lease_until": expires_at,
        },
    ).id
    predictions = (
        [
            ShownPrediction(p.value, p.score, p.model_version)
            for p in hot.fetch_all(SHOWN_PREDICTIONS, {"pid": project_id, "iid": taken.id})
        ]
        if ctx.has_predictions
        else []
    )
    meta = rules.shown_meta(load_schema_json(ctx.label_schema), taken.meta)
    return Lease(
        task=LeasedTask(task_id, project_id, taken.id, "leased", False, now, expires_at),
        item=LeasedItem(taken.id, taken.data, meta),
        predictions=predictions,
    )


def submit(
    hot: SqliteHotPath,
    task_id: int,
    token_hash: str,
    kind: str | None,
    value: Any,
    *,
    idempotency_key: str | None = None,
) -> tuple[SubmittedAnnotation, bool] | FullPath:
    """Store the annotation of a task (see :func:`.orm.submit`), authenticating the token in
    the same transaction, or :class:`FullPath` when the full implementation must answer."""
    key = idempotency_key
    now = datetime.now(UTC)
    try:
        with hot.transaction():
            return _submit(hot, task_id, _user(hot, token_hash, kind), value, key, now), True
    except _FullPath as slow:
        return FullPath(slow.user)
    except WriterBusy:
        return FullPath(_user(hot, token_hash, kind))


def _submit(
    hot: SqliteHotPath, task_id: int, user: User, value: Any, key: str | None, now: datetime
) -> SubmittedAnnotation:
    row = hot.fetch_one(SUBMIT_CONTEXT, {"tid": task_id})
    if (
        row is None
        or row.annotator_id != user.id  # not the caller's task: the full path answers 404
        or not rules.idempotency_key_ok(key)
        or rules.submit_route(row.state, row.is_gold, key) is not rules.SubmitRoute.STORE
        or row.state != "leased"
    ):
        raise _FullPath(user)
    settings = settings_from_json(row.settings)
    if rules.needs_scoring(settings, row.is_gold):
        raise _FullPath(user)
    orm.check_annotation(load_schema_json(row.label_schema), row.data, row.meta, value)
    if hot.execute(FINISH_TASK, {"tid": task_id, "was": row.state, "now": now}) != 1:
        raise _FullPath(user)
    annotation = orm.annotation_values(settings, row.leased_at, value, key, now)
    ids = {"pid": row.project_id, "iid": row.item_id, "uid": user.id, "tid": task_id}
    try:
        created = hot.fetch_one(INSERT_ANNOTATION, {**ids, **annotation})
    except sqlite3.IntegrityError:  # the Idempotency-Key is taken: a replay or a misuse
        raise _FullPath(user) from None
    hot.execute(COUNT_ANNOTATION, {"iid": row.item_id})
    if row.queued_consensus is None:
        hot.execute(ENQUEUE_CONSENSUS, {"pid": row.project_id})
    return cast(SubmittedAnnotation, created)
