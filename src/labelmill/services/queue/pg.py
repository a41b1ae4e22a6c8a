"""The annotator loop's common case on PostgreSQL, one statement per step, run by asyncpg on
the event loop (:mod:`labelmill.store.pg_async`).

Next task is one statement (:data:`.statements.PG_TOKEN_LEASE`): check the token, read the
member and project, and, when the SQL forms of :mod:`.rules` say the common case applies, pick,
take and lease an item and read its predictions. Submit is two: check the token and read the
task (the annotation is then validated here, against the schema and the item), then finish the
task, count the label, store the annotation and queue the consensus refresh. Each statement is
atomic, and writes nothing unless it completes the common case.

Whatever is not the common case (an admin's first visit, a live lease to hand back, expired
leases to reclaim, qualification and gold, a queue whose free items are all locked this instant,
a late or repeated submit, gold scoring, adaptive overlap) answers :class:`.types.FullPath`: the
caller runs :mod:`.orm` in a worker thread, which checks everything again in its own transaction.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import asyncpg

from labelmill.services import users as user_service
from labelmill.services.projects import load_schema_json, settings_from_json
from labelmill.services.queue import orm, rules
from labelmill.services.queue import statements as sql
from labelmill.services.queue.types import FullPath, Lease, SubmittedAnnotation
from labelmill.store.pg_async import Compiled, HotPath

#: Token check + next task, in one statement.
LEASE = Compiled(sql.PG_TOKEN_LEASE)
#: Token check + what submit needs to know, in one statement.
SUBMIT_CONTEXT = Compiled(sql.PG_TOKEN_SUBMIT_CONTEXT)
#: Finish the task, count the label, store the annotation, queue the consensus refresh.
SUBMIT = Compiled(sql.PG_SUBMIT)


async def next_task(
    hot: HotPath, project_id: int, token_hash: str, kind: str | None, *, draw: float | None = None
) -> Lease | FullPath:
    """The caller's next task (see :func:`.orm.next_task`), authenticating the token in the same
    statement (``kind`` as for :func:`~labelmill.services.users.token_user`), or
    :class:`FullPath` (also when the queue may be empty: only the full path may say so, after
    waiting for the items other annotators are taking this instant)."""
    now = datetime.now(UTC)
    draw = orm.gold_draw() if draw is None else draw
    row = await hot.fetch_one(
        LEASE, {"token_hash": token_hash, "kind": kind, "pid": project_id, "now": now, "draw": draw, "by": 1}
    )
    rules.check_token(row, kind)
    assert row is not None
    if row.task_id is None:
        return FullPath(user_service.token_user(row, kind), draw)
    schema = load_schema_json(row.label_schema)
    return orm.pg_lease_from_row(row, project_id, now, row.lease_expires_at, schema)


async def submit(
    hot: HotPath,
    task_id: int,
    token_hash: str,
    kind: str | None,
    value: Any,
    *,
    idempotency_key: str | None = None,
) -> tuple[SubmittedAnnotation, bool] | FullPath:
    """Store the annotation of a task (see :func:`.orm.submit`), authenticating the token in the
    same round trip as reading the task, or :class:`FullPath`."""
    key = idempotency_key
    async with hot.connection() as conn:
        row, created = await _submit(conn, hot, task_id, token_hash, kind, value, key)
    if created is not None:
        return cast(SubmittedAnnotation, created), True
    # Not the common case (a replay, a conflict, a late submit, gold, adaptive overlap, someone
    # else's task), or the task changed state since it was read: the full implementation.
    return FullPath(user_service.token_user(row, kind))


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
    rules.check_token(row, kind)
    if (
        row.annotator_id != row.id  # not the caller's task (or none): the full path answers 404
        or not rules.idempotency_key_ok(key)
        or rules.submit_route(row.state, row.is_gold, key) is not rules.SubmitRoute.STORE
        or row.state != "leased"
    ):
        return row, None
    settings = settings_from_json(row.settings)
    if rules.needs_scoring(settings, row.is_gold):
        return row, None
    orm.check_annotation(load_schema_json(row.label_schema), row.data, row.meta, value)
    annotation = orm.annotation_values(settings, row.leased_at, value, key, now)
    params = {
        "tid": task_id,
        "was": row.state,
        "now": now,
        "pid": row.project_id,
        "uid": row.id,
        **annotation,
    }
    try:
        return row, await hot.fetch_one(SUBMIT, params, conn)
    except asyncpg.UniqueViolationError:  # the Idempotency-Key is taken: a replay or a misuse
        return row, None
