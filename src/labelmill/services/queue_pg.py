"""The annotator loop on PostgreSQL in one statement per step, on the event loop.

Next task is one statement: check the token, read the member and project, and (when the common
case applies) pick, take and lease an item and read its predictions. Submit is two: check the
token and read the task (the annotation is then validated here, against the schema and the
item), then finish the task, count the label, store the annotation and queue the consensus
refresh. The statements are those of :mod:`labelmill.services.queue`, composed with the token
check, so every rule is the same and holds the same way (each statement is atomic).

Whatever is not the common case (an admin's first visit, a live lease to hand back, expired
leases to reclaim, qualification and gold, a queue whose free items are all locked this instant,
a late or repeated submit, gold scoring, adaptive overlap) goes to the ordinary implementation in
a worker thread, which checks everything again in its own transaction. The fast statements write
nothing unless they complete the common case.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

import anyio.to_thread
import asyncpg
from sqlalchemy import (
    Float,
    String,
    Table,
    and_,
    bindparam,
    exists,
    func,
    not_,
    or_,
    select,
    true,
)

from labelmill.services import queue
from labelmill.services import users as user_service
from labelmill.services.projects import load_schema_json
from labelmill.services.queue import Lease, SubmittedAnnotation
from labelmill.store.engine import Database
from labelmill.store.models import Item, Member, Project, Task
from labelmill.store.pg_async import Compiled, HotPath

_PROJECTS = cast(Table, Project.__table__)
_ITEMS = cast(Table, Item.__table__)
_MEMBERS = cast(Table, Member.__table__)
_TASKS = cast(Table, Task.__table__)

_PID, _TID, _NOW = queue.PID, queue.TID, queue.NOW
#: The token kind the request may use (``session`` for a cookie), or NULL for any.
_KIND = bindparam("kind", type_=String())
#: The chance draw for mixing in gold (``gold_rate``), drawn by the caller.
_DRAW = bindparam("draw", type_=Float())

#: The caller, from the hash of their token.
_WHO = user_service.TOKEN_USER.cte("who")
_TOKEN_USABLE = and_(
    _WHO.c.is_active,
    or_(_WHO.c.expires_at.is_(None), _WHO.c.expires_at > _NOW),
    or_(_KIND.is_(None), _WHO.c.kind == _KIND),
)
_WHO_COLUMNS = (
    _WHO.c.kind,
    _WHO.c.expires_at,
    _WHO.c.id,
    _WHO.c.name,
    _WHO.c.role,
    _WHO.c.is_active,
    _WHO.c.created_at,
)


def _lease_statement() -> Any:
    settings = _PROJECTS.c.settings
    member = (
        select(
            settings,
            _MEMBERS.c.paused,
            _MEMBERS.c.qualification,
            queue.live_lease(_WHO.c.id).label("live_task_id"),
            queue.HAS_EXPIRED,
        )
        .select_from(
            _WHO.join(_PROJECTS, _PROJECTS.c.id == _PID).join(
                _MEMBERS, and_(_MEMBERS.c.project_id == _PROJECTS.c.id, _MEMBERS.c.user_id == _WHO.c.id)
            )
        )
        .cte("member")
    )
    s = member.c.settings
    lease_seconds = func.coalesce(s["lease_seconds"].as_integer(), 600)
    # The common case: a member in good standing, with no live lease, in a project without
    # leases to reclaim, who is qualified (or needs no qualification) and did not draw gold.
    common = (
        select(
            _WHO.c.id.label("uid"),
            func.coalesce(s["overlap"].as_integer(), 1).label("overlap"),
            (_NOW + func.make_interval(0, 0, 0, 0, 0, 0, lease_seconds)).label("expires_at"),
        )
        .select_from(_WHO.join(member, true()))
        .where(
            _TOKEN_USABLE,
            not_(member.c.paused),
            member.c.live_task_id.is_(None),
            not_(member.c.has_expired),
            or_(
                member.c.qualification == "qualified",
                func.coalesce(s["qualification_size"].as_integer(), 0) <= 0,
            ),
            func.coalesce(s["gold_rate"].as_float(), 0.0) <= _DRAW,
        )
        .cte("common")
    )
    uid = select(common.c.uid).scalar_subquery()
    pick = queue.pick_next(uid, exists(select(common.c.uid))).with_for_update(skip_locked=True, of=_ITEMS)
    taken, leased, predictions = queue.pg_lease_parts(
        pick,
        uid=uid,
        overlap=select(common.c.overlap).scalar_subquery(),
        expires_at=select(common.c.expires_at).scalar_subquery(),
    )
    return select(
        *_WHO_COLUMNS,
        leased.c.id.label("task_id"),
        leased.c.expires_at.label("lease_expires_at"),
        taken.c.id.label("item_id"),
        taken.c.data,
        taken.c.meta,
        predictions.label("predictions"),
    ).select_from(_WHO.outerjoin(taken.join(leased, true()), true()))


#: Token check + next task, in one statement.
LEASE = Compiled(_lease_statement())
#: Token check + what submit needs to know, in one statement.
SUBMIT_CONTEXT = Compiled(
    select(*_WHO_COLUMNS, *queue.SUBMIT_CONTEXT_COLUMNS).select_from(
        _WHO.outerjoin(queue.SUBMIT_CONTEXT_FROM, _TASKS.c.id == _TID)
    )
)
#: Finish the task, count the label, store the annotation, queue the consensus refresh.
SUBMIT = Compiled(queue.PG_SUBMIT)


def _in_thread(call: Any, *args: Any, **kwargs: Any) -> Any:
    return anyio.to_thread.run_sync(partial(call, *args, **kwargs))


async def next_task(
    hot: HotPath, db: Database, project_id: int, token_hash: str, kind: str | None
) -> Lease | None:
    """The caller's next task (see :func:`labelmill.services.queue.next_task`), authenticating
    the token in the same statement (``kind`` as for :func:`~labelmill.services.users.token_user`)."""
    now = datetime.now(UTC)
    draw = queue.gold_draw()
    row = await hot.fetch_one(
        LEASE, {"token_hash": token_hash, "kind": kind, "pid": project_id, "now": now, "draw": draw, "by": 1}
    )
    user_service.check_token(row, kind)
    assert row is not None
    if row.task_id is None:
        # Not the common case, or every free item is locked by another annotator's lease this
        # instant: the full implementation decides (and waits for locked items).
        user = user_service.token_user(row, kind)
        return cast(Lease | None, await _in_thread(queue.next_task, db, project_id, user, draw=draw))
    return queue.pg_lease_from_row(row, project_id, now, row.lease_expires_at)


async def submit(
    hot: HotPath,
    db: Database,
    task_id: int,
    token_hash: str,
    kind: str | None,
    value: Any,
    *,
    idempotency_key: str | None = None,
) -> tuple[SubmittedAnnotation, bool]:
    """Store the annotation of a task (see :func:`labelmill.services.queue.submit`),
    authenticating the token in the same round trip as reading the task."""
    key = idempotency_key
    async with hot.connection() as conn:
        row, created = await _submit(conn, hot, task_id, token_hash, kind, value, key)
    if created is not None:
        return cast(SubmittedAnnotation, created), True
    # Not the common case (a replay, a conflict, a late submit, gold, adaptive overlap, someone
    # else's task), or the task changed state since it was read: the full implementation.
    user = user_service.token_user(row, kind)
    slow = await _in_thread(queue.submit, db, task_id, user, value, idempotency_key=key)
    return cast(tuple[SubmittedAnnotation, bool], slow)


async def _submit(
    conn: asyncpg.Connection,
    hot: HotPath,
    task_id: int,
    token_hash: str,
    kind: str | None,
    value: Any,
    key: str | None,
) -> tuple[Any, Any]:
    """(the token and task row, the stored annotation or None if the full path must decide)"""
    now = datetime.now(UTC)
    row = await hot.fetch_one(SUBMIT_CONTEXT, {"token_hash": token_hash, "tid": task_id, "now": now}, conn)
    user_service.check_token(row, kind)
    settings: dict[str, Any] = row.settings or {}
    if (
        row.annotator_id != row.id  # not the caller's task: the full path answers 404
        or row.state != "leased"
        or queue.needs_scoring(settings, row.is_gold)
        or (key is not None and not 1 <= len(key) <= 200)
    ):
        return row, None
    queue.check_annotation(load_schema_json(row.label_schema), row.data, row.meta, value)
    annotation = queue.annotation_values(settings, row.leased_at, value, key, now)
    params = {
        "tid": task_id,
        "was": row.state,
        "now": now,
        "pid": row.project_id,
        "uid": row.id,
        **{f"a_{k}": v for k, v in annotation.items()},
    }
    try:
        return row, await hot.fetch_one(SUBMIT, params, conn)
    except asyncpg.UniqueViolationError:  # the Idempotency-Key is taken: a replay or a misuse
        return row, None
