"""The queue's SQL, each statement written once with SQLAlchemy Core: the full implementation
(:mod:`.orm`) runs them through SQLAlchemy, the event-loop hot paths (:mod:`.sqlite`, :mod:`.pg`)
compile them once and run them with the driver.

PostgreSQL answers each statement over the network, so there the common paths are one
statement each (data-modifying CTEs composed from the same pieces): pick + take the slot +
insert the task + read the predictions; and finish the task + count + insert the annotation +
queue the consensus refresh. SQLite, in process, runs the same steps as separate statements.

Bind names must not be column names of a table an UPDATE writes: SQLAlchemy would take them
as extra SET values (hence ``iid``, ``tid``, ``a_value``...).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import (
    Float,
    Integer,
    Select,
    String,
    Table,
    Text,
    and_,
    bindparam,
    exists,
    false,
    func,
    insert,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by

from labelmill.services import users as user_service
from labelmill.services.jobs import queued_job
from labelmill.services.queue import rules
from labelmill.store.models import (
    Annotation,
    Item,
    Job,
    Member,
    Prediction,
    Project,
    Task,
    UTCDateTime,
    labels_needed,
)

#: Expired leases reclaimed per next-task call (bounded so one call never does unbounded work).
RECLAIM_BATCH = 200

ITEMS = cast(Table, Item.__table__)
TASKS = cast(Table, Task.__table__)
PROJECTS = cast(Table, Project.__table__)
MEMBERS = cast(Table, Member.__table__)
ANNOTATIONS = cast(Table, Annotation.__table__)
PREDICTIONS = cast(Table, Prediction.__table__)
JOBS = cast(Table, Job.__table__)

PID = bindparam("pid", type_=Integer())
UID = bindparam("uid", type_=Integer())
IID = bindparam("iid", type_=Integer())
TID = bindparam("tid", type_=Integer())
NOW = bindparam("now", type_=UTCDateTime())
BY = bindparam("by", type_=Integer())
OVERLAP = bindparam("overlap", type_=Integer())
LEASE_UNTIL = bindparam("lease_until", type_=UTCDateTime())
#: The token kind the request may use (``session`` for a cookie), or NULL for any.
KIND = bindparam("kind", type_=String())
#: The chance draw for mixing in gold (``gold_rate``), drawn by the caller.
DRAW = bindparam("draw", type_=Float())

#: Settings and schema are read as their stored JSON text: the parse caches' keys
#: (:func:`~labelmill.services.projects.settings_from_json`, ``load_schema_json``).
SETTINGS_TEXT = sql_cast(PROJECTS.c.settings, Text).label("settings")
SCHEMA_TEXT = sql_cast(PROJECTS.c.label_schema, Text).label("label_schema")


# --------------------------------------------------------------------------- slots


def slot_values(overlap: Any, by: Any = BY) -> dict[str, Any]:
    """The open-slot rule: take (``by=1``) or give back (``by=-1``) one of the item's slots,
    keeping ``is_open`` true to ``assigned < labels needed`` (the item's own ``needed``, raised
    by adaptive overlap, else the project's ``overlap``)."""
    return {"assigned": ITEMS.c.assigned + by, "is_open": ITEMS.c.assigned + by < labels_needed(overlap)}


SHIFT_SLOTS = update(ITEMS).where(ITEMS.c.id == IID).values(slot_values(OVERLAP))
SLOTS = select(ITEMS.c.needed, ITEMS.c.assigned).where(ITEMS.c.id == IID)


# --------------------------------------------------------------------------- next task

#: The partial index's own predicate, written as the index writes it: SQLite uses a partial
#: index only when the query contains its WHERE terms literally, and SQLAlchemy would render
#: ``is_open = 1 AND is_gold = 0``, which SQLite does not match (a full scan and a sort).
OPEN_ITEMS = text("items.is_open AND NOT items.is_gold")


def _not_mine(uid: Any) -> Any:
    """ "This annotator has not had the item": one probe of the unique (item, annotator) index
    per candidate, in priority order, stopping at the first free one. ``OFFSET 0`` keeps
    PostgreSQL from turning the NOT EXISTS into an anti-join, which, on a tasks table whose
    statistics are stale, it plans as a scan of all the annotator's tasks per pick."""
    return ~exists(
        select(literal(1))
        .where(TASKS.c.item_id == ITEMS.c.id, TASKS.c.annotator_id == uid)
        .offset(literal(0, Integer()))
    )


def pick_next(uid: Any, *when: Any) -> Select[Any]:
    """The next-task pick: open items annotator ``uid`` has not had, best priority, then oldest
    (``when``: further conditions, which a combined statement uses to pick only if allowed)."""
    return (
        select(ITEMS.c.id)
        .where(ITEMS.c.project_id == PID, OPEN_ITEMS, _not_mine(uid), *when)
        .order_by(ITEMS.c.priority.desc(), ITEMS.c.id)
        .limit(1)
    )


PICK = pick_next(UID)
PICK_SKIP_LOCKED = PICK.with_for_update(skip_locked=True, of=ITEMS)
PICK_WAIT = PICK.with_for_update(of=ITEMS)


def take_next(pick: Select[Any], overlap: Any = OVERLAP) -> Any:
    """Pick the next item and take one of its slots, in one statement."""
    return (
        update(ITEMS)
        .where(ITEMS.c.id == pick.scalar_subquery().correlate(None))
        .values(slot_values(overlap))
        .returning(ITEMS.c.id, ITEMS.c.data, ITEMS.c.meta)
    )


TAKE_NEXT = take_next(PICK)


def live_lease(uid: Any) -> Any:
    """The id of annotator ``uid``'s live lease in the project, if any."""
    return (
        select(TASKS.c.id)
        .where(
            TASKS.c.project_id == PID,
            TASKS.c.annotator_id == uid,
            TASKS.c.state == "leased",
            TASKS.c.expires_at > NOW,
        )
        .order_by(TASKS.c.id)
        .limit(1)
        .scalar_subquery()
    )


#: Some lease of the project is past its time (reclaiming it needs a transaction).
HAS_EXPIRED = (
    exists()
    .where(TASKS.c.project_id == PID, TASKS.c.state == "leased", TASKS.c.expires_at <= NOW)
    .label("has_expired")
)

#: Everything next-task needs to know before picking, in one round trip.
NEXT_CONTEXT = (
    select(
        SETTINGS_TEXT,
        SCHEMA_TEXT,
        MEMBERS.c.id.label("member_id"),
        MEMBERS.c.paused,
        MEMBERS.c.pause_reason,
        MEMBERS.c.qualification,
        live_lease(UID).label("live_task_id"),
        HAS_EXPIRED,
        exists().where(PREDICTIONS.c.project_id == PID).label("has_predictions"),
    )
    .select_from(
        PROJECTS.outerjoin(MEMBERS, and_(MEMBERS.c.project_id == PROJECTS.c.id, MEMBERS.c.user_id == UID))
    )
    .where(PROJECTS.c.id == PID)
)

EXPIRED = (
    select(TASKS.c.id, TASKS.c.item_id, TASKS.c.is_gold)
    .where(TASKS.c.project_id == PID, TASKS.c.state == "leased", TASKS.c.expires_at <= NOW)
    .order_by(TASKS.c.expires_at)
    .limit(RECLAIM_BATCH)
)
EXPIRED_SKIP_LOCKED = EXPIRED.with_for_update(skip_locked=True)
EXPIRE_TASKS = (
    update(TASKS)
    .where(TASKS.c.id.in_(bindparam("ids", expanding=True)))
    .values(state="expired", finished_at=NOW)
)

#: A new lease (a regular item's or a gold one's).
INSERT_TASK = (
    insert(TASKS)
    .values(
        project_id=PID,
        item_id=IID,
        annotator_id=UID,
        state="leased",
        is_gold=bindparam("gold", type_=TASKS.c.is_gold.type),
        leased_at=NOW,
        expires_at=LEASE_UNTIL,
    )
    .returning(TASKS.c.id)
)
ITEM_VIEW = select(ITEMS.c.data, ITEMS.c.meta).where(ITEMS.c.id == IID)
TASK_VIEW = select(
    TASKS.c.id,
    TASKS.c.project_id,
    TASKS.c.item_id,
    TASKS.c.state,
    TASKS.c.is_gold,
    TASKS.c.leased_at,
    TASKS.c.expires_at,
).where(TASKS.c.id == TID)
SHOWN_PREDICTIONS = (
    select(PREDICTIONS.c.value, PREDICTIONS.c.score, PREDICTIONS.c.model_version)
    .where(PREDICTIONS.c.project_id == PID, PREDICTIONS.c.item_id == IID)
    .order_by(PREDICTIONS.c.id)
)
ADD_MEMBER = insert(MEMBERS).values(
    project_id=PID,
    user_id=UID,
    role=bindparam("role", type_=String()),
    qualification=bindparam("qualification", type_=String()),
)


def gold_candidates(project_id: int, user_id: int) -> Select[Any]:
    """Gold items of the project this annotator has not had."""
    mine = exists().where(TASKS.c.item_id == ITEMS.c.id, TASKS.c.annotator_id == user_id)
    return select(ITEMS.c.id).where(ITEMS.c.project_id == project_id, ITEMS.c.is_gold, ~mine)


# --------------------------------------------------------------------------- submit

#: What submit needs to know of the task, its item and project, and where they are read from.
SUBMIT_CONTEXT_COLUMNS = (
    TASKS.c.project_id,
    TASKS.c.item_id,
    TASKS.c.annotator_id,
    TASKS.c.state,
    TASKS.c.is_gold,
    TASKS.c.leased_at,
    ITEMS.c.data,
    ITEMS.c.meta,
    SETTINGS_TEXT,
    SCHEMA_TEXT,
)
SUBMIT_CONTEXT_FROM = TASKS.join(ITEMS, ITEMS.c.id == TASKS.c.item_id).join(
    PROJECTS, PROJECTS.c.id == TASKS.c.project_id
)
#: Everything submit needs to know, in one round trip.
SUBMIT_CONTEXT = (
    select(
        *SUBMIT_CONTEXT_COLUMNS,
        queued_job("consensus", TASKS.c.project_id).scalar_subquery().label("queued_consensus"),
    )
    .select_from(SUBMIT_CONTEXT_FROM)
    .where(TASKS.c.id == TID)
)
#: Finishing a task is also the guard against a concurrent submit or reclaim of the same task:
#: it changes the row only from the state this transaction read.
FINISH_TASK = (
    update(TASKS)
    .where(TASKS.c.id == TID, TASKS.c.state == bindparam("was", type_=String()))
    .values(state="submitted", finished_at=NOW)
)
COUNT_ANNOTATION = (
    update(ITEMS).where(ITEMS.c.id == IID).values(annotation_count=ITEMS.c.annotation_count + 1)
)
ANNOTATION_VIEW = (
    ANNOTATIONS.c.id,
    ANNOTATIONS.c.task_id,
    ANNOTATIONS.c.item_id,
    ANNOTATIONS.c.value,
    ANNOTATIONS.c.status,
    ANNOTATIONS.c.lead_seconds,
    ANNOTATIONS.c.created_at,
    ANNOTATIONS.c.updated_at,
)
#: The new annotation's own values (:func:`labelmill.services.queue.orm.annotation_values`).
A_VALUE = bindparam("a_value", type_=ANNOTATIONS.c.value.type)
A_LEAD = bindparam("a_lead_seconds", type_=Float())
A_KEY = bindparam("a_idempotency_key", type_=String())
A_STATUS = bindparam("a_status", type_=String())
INSERT_ANNOTATION = (
    insert(ANNOTATIONS)
    .values(
        project_id=PID,
        item_id=IID,
        annotator_id=UID,
        task_id=TID,
        value=A_VALUE,
        lead_seconds=A_LEAD,
        idempotency_key=A_KEY,
        status=A_STATUS,
    )
    .returning(*ANNOTATION_VIEW)
)
BY_KEY = select(*ANNOTATION_VIEW).where(
    ANNOTATIONS.c.annotator_id == UID, ANNOTATIONS.c.idempotency_key == bindparam("key", type_=String())
)
ENQUEUE_CONSENSUS = insert(JOBS).values(project_id=PID, kind="consensus", status="queued", progress_done=0)


# --------------------------------------------------------------------------- PostgreSQL, one statement each


def pg_lease_parts(pick: Select[Any], *, uid: Any, overlap: Any, expires_at: Any) -> tuple[Any, Any, Any]:
    """The CTEs of a PostgreSQL lease: ``taken`` (the picked item, its slot taken), ``leased``
    (the task inserted for annotator ``uid``) and the predictions to show, as one JSON array."""
    taken = take_next(pick, overlap).cte("taken")
    columns = ["project_id", "item_id", "annotator_id", "state", "is_gold", "leased_at", "expires_at"]
    row = select(PID, taken.c.id, uid, literal("leased"), false(), NOW, expires_at).select_from(taken)
    leased = insert(TASKS).from_select(columns, row).returning(TASKS.c.id, TASKS.c.expires_at).cte("leased")
    shown = func.json_build_object(
        "value",
        PREDICTIONS.c.value,
        "score",
        PREDICTIONS.c.score,
        "model_version",
        PREDICTIONS.c.model_version,
    )
    predictions = (
        select(func.json_agg(aggregate_order_by(shown, PREDICTIONS.c.id), type_=JSONB))
        .where(PREDICTIONS.c.project_id == PID, PREDICTIONS.c.item_id == taken.c.id)
        .scalar_subquery()
    )
    return taken, leased, predictions


def _pg_lease_statement(pick: Select[Any]) -> Select[Any]:
    taken, leased, predictions = pg_lease_parts(pick, uid=UID, overlap=OVERLAP, expires_at=LEASE_UNTIL)
    return select(
        leased.c.id.label("task_id"),
        taken.c.id.label("item_id"),
        taken.c.data,
        taken.c.meta,
        predictions.label("predictions"),
    ).join_from(taken, leased, true())


PG_LEASE_SKIP_LOCKED = _pg_lease_statement(PICK_SKIP_LOCKED)
PG_LEASE_WAIT = _pg_lease_statement(PICK_WAIT)


def _pg_submit_statement() -> Select[Any]:
    finished = FINISH_TASK.returning(TASKS.c.id, TASKS.c.item_id).cte("finished")
    counted = (
        update(ITEMS)
        .where(ITEMS.c.id == select(finished.c.item_id).scalar_subquery())
        .values(annotation_count=ITEMS.c.annotation_count + 1)
        .cte("counted")
    )
    columns = ["project_id", "item_id", "annotator_id", "task_id", "value", "lead_seconds", "idempotency_key"]
    row = select(PID, finished.c.item_id, UID, finished.c.id, A_VALUE, A_LEAD, A_KEY, A_STATUS).select_from(
        finished
    )
    created = (
        insert(ANNOTATIONS).from_select([*columns, "status"], row).returning(*ANNOTATION_VIEW).cte("created")
    )
    # the consensus refresh is queued in the same statement, unless one is queued already
    refresh = select(PID, literal("consensus"), literal("queued"), literal(0)).where(
        ~exists(queued_job("consensus", PID)), exists(select(finished.c.id))
    )
    job_columns = ["project_id", "kind", "status", "progress_done"]
    enqueued = insert(JOBS).from_select(job_columns, refresh).cte("enqueued")
    return select(created).add_cte(counted).add_cte(enqueued)


#: Finish the task, count the label, store the annotation, queue the consensus refresh.
PG_SUBMIT = _pg_submit_statement()

#: The caller, from the hash of their token (the hot paths fold the token check into their
#: statements).
WHO = user_service.TOKEN_USER.cte("who")
WHO_COLUMNS = (
    WHO.c.kind,
    WHO.c.expires_at,
    WHO.c.id,
    WHO.c.name,
    WHO.c.role,
    WHO.c.is_active,
    WHO.c.created_at,
)


def _pg_token_lease_statement() -> Select[Any]:
    """Token check + the gate + next task, in one statement: it leases only when the token is
    usable and :func:`rules.next_route` is REGULAR with nothing to reclaim (the SQL forms of
    :mod:`.rules`); otherwise it returns the token's row alone and the caller goes the full way."""
    member = (
        select(
            PROJECTS.c.settings,
            MEMBERS.c.paused,
            MEMBERS.c.qualification,
            live_lease(WHO.c.id).label("live_task_id"),
            HAS_EXPIRED,
        )
        .select_from(
            WHO.join(PROJECTS, PROJECTS.c.id == PID).join(
                MEMBERS, and_(MEMBERS.c.project_id == PROJECTS.c.id, MEMBERS.c.user_id == WHO.c.id)
            )
        )
        .cte("member")
    )
    s = member.c.settings
    common = (
        select(
            WHO.c.id.label("uid"),
            rules.pg_overlap(s).label("overlap"),
            rules.pg_lease_until(s, NOW).label("expires_at"),
        )
        .select_from(WHO.join(member, true()))
        .where(
            rules.pg_token_usable(WHO.c.expires_at, WHO.c.is_active, WHO.c.kind, KIND, NOW),
            rules.pg_common_lease(
                s,
                paused=member.c.paused,
                live_task_id=member.c.live_task_id,
                has_expired=member.c.has_expired,
                qualification=member.c.qualification,
                draw=DRAW,
            ),
        )
        .cte("common")
    )
    uid = select(common.c.uid).scalar_subquery()
    pick = pick_next(uid, exists(select(common.c.uid))).with_for_update(skip_locked=True, of=ITEMS)
    taken, leased, predictions = pg_lease_parts(
        pick,
        uid=uid,
        overlap=select(common.c.overlap).scalar_subquery(),
        expires_at=select(common.c.expires_at).scalar_subquery(),
    )
    schema = select(SCHEMA_TEXT).where(PROJECTS.c.id == PID).scalar_subquery()
    return select(
        *WHO_COLUMNS,
        leased.c.id.label("task_id"),
        leased.c.expires_at.label("lease_expires_at"),
        taken.c.id.label("item_id"),
        taken.c.data,
        taken.c.meta,
        predictions.label("predictions"),
        schema.label("label_schema"),
    ).select_from(WHO.outerjoin(taken.join(leased, true()), true()))


#: Token check + next task, in one statement (PostgreSQL).
PG_TOKEN_LEASE = _pg_token_lease_statement()
#: Token check + what submit needs to know, in one statement (PostgreSQL).
PG_TOKEN_SUBMIT_CONTEXT = select(*WHO_COLUMNS, *SUBMIT_CONTEXT_COLUMNS).select_from(
    WHO.outerjoin(SUBMIT_CONTEXT_FROM, TASKS.c.id == TID)
)
