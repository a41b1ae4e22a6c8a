"""The annotation queue: hand out tasks, take submissions, skips and edits.

Every rule holds inside one database transaction (on PostgreSQL the common paths write with a
single statement, its own transaction), so it holds under any number of API processes and
threads:

- an item never has more than its ``needed`` labels (the project's ``overlap``, raised up to
  ``max_overlap`` by adaptive overlap) submitted or leased: ``items.assigned`` counts both and
  ``items.is_open`` says whether a slot is free; gold items are outside this accounting;
- an annotator never gets the same item twice: ``tasks`` is unique on ``(item_id, annotator_id)``;
- a live lease is handed back to its holder instead of a new task; expired leases return
  their slot to the pool;
- items are served by priority, then age, from the partial index ``ix_items_open``, whose
  size is the number of open items: the query costs the same at 0% and at 99% done.

SQLite serialises writers (``BEGIN IMMEDIATE``); PostgreSQL locks the chosen item row with
``FOR UPDATE SKIP LOCKED``, so concurrent annotators take different rows instead of waiting.

The annotator loop (next task, submit) is the hot path: it runs prepared Core statements on
one connection (two to five per call, each built once at import), not the ORM unit of work,
and the rare branches (gold scoring, adaptive overlap) use an ORM session on the same
connection. The API serves the common case from :mod:`queue_pg` and :mod:`queue_sqlite`
instead (the same statements, with the token check folded in, run on the event loop) and comes
here for everything else.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Float,
    Integer,
    Row,
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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labelmill.quality.decision import item_posterior
from labelmill.quality.gold import gold_score, is_correct
from labelmill.schema import AnnotationValueError, LabelSchema, check_value
from labelmill.services import pausing
from labelmill.services.errors import Conflict, Forbidden, Invalid, NotFound
from labelmill.services.jobs import enqueue, queued_job
from labelmill.services.projects import load_schema, load_schema_json, project_settings
from labelmill.store.engine import Database
from labelmill.store.models import (
    Annotation,
    AnnotatorSkill,
    Item,
    Job,
    Member,
    Prediction,
    Project,
    Task,
    User,
    UTCDateTime,
    labels_needed,
)

#: Expired leases reclaimed per next-task call (bounded so one call never does unbounded work).
RECLAIM_BATCH = 200
#: Gold labels an annotator needs before a falling gold accuracy can pause them.
MIN_GOLD_FOR_PAUSE = 5
#: Skill assumed for an annotator the quality engine has not measured yet.
DEFAULT_SKILL = 0.7

_rng = random.Random()


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


#: A stored annotation as the annotator sees it: a row with the columns of ``ANNOTATION_VIEW``
#: (id, task_id, item_id, value, status, lead_seconds, created_at, updated_at).
SubmittedAnnotation = Row[*tuple[Any, ...]]


def _now() -> datetime:
    return datetime.now(UTC)


def _overlap(project: Project) -> int:
    return int(project.settings.get("overlap", 1))


def _member(session: Session, project: Project, user: User) -> Member:
    member = session.scalar(select(Member).where(Member.project_id == project.id, Member.user_id == user.id))
    if member is None:
        if user.role == "admin":  # admins may label any project; they get a membership on first use
            member = Member(project_id=project.id, user_id=user.id, role="manager", qualification="qualified")
            session.add(member)
            session.flush()
            return member
        raise NotFound(f"no project {project.id}", field="project_id")
    return member


# --------------------------------------------------------------------------- statements

_ITEMS = cast(Table, Item.__table__)
_TASKS = cast(Table, Task.__table__)
_PROJECTS = cast(Table, Project.__table__)
_MEMBERS = cast(Table, Member.__table__)
_ANNOTATIONS = cast(Table, Annotation.__table__)
_PREDICTIONS = cast(Table, Prediction.__table__)
_JOBS = cast(Table, Job.__table__)

# The public statements and parameters of this module are shared with the event-loop paths
# (queue_pg, queue_sqlite), which compose and compile them: one definition of every rule.
PID = bindparam("pid", type_=Integer())
UID = bindparam("uid", type_=Integer())
IID = bindparam("iid", type_=Integer())
TID = bindparam("tid", type_=Integer())
NOW = bindparam("now", type_=UTCDateTime())
_BY = bindparam("by", type_=Integer())
_OVERLAP = bindparam("overlap", type_=Integer())


#: The open-slot rule, in one statement: take (``by=1``) or give back (``by=-1``) one of the
#: item's slots, keeping ``is_open`` true to ``assigned < labels needed`` (the item's own
#: ``needed``, raised by adaptive overlap, else the project's ``overlap``).
def _slot_values(overlap: Any, by: Any = _BY) -> dict[str, Any]:
    return {"assigned": _ITEMS.c.assigned + by, "is_open": _ITEMS.c.assigned + by < labels_needed(overlap)}


_SLOT_VALUES = _slot_values(_OVERLAP)
_SHIFT_SLOTS = update(_ITEMS).where(_ITEMS.c.id == IID).values(_SLOT_VALUES)

#: The partial index's own predicate, written as the index writes it: SQLite uses a partial
#: index only when the query contains its WHERE terms literally, and SQLAlchemy would render
#: ``is_open = 1 AND is_gold = 0``, which SQLite does not match (a full scan and a sort).
OPEN_ITEMS = text("items.is_open AND NOT items.is_gold")


#: "This annotator has not had the item": one probe of the unique (item, annotator) index per
#: candidate, in priority order, stopping at the first free one. ``OFFSET 0`` keeps PostgreSQL
#: from turning the NOT EXISTS into an anti-join, which, on a tasks table whose statistics are
#: stale (no ANALYZE since it grew), it plans as a scan of all the annotator's tasks per pick:
#: a cost that grows with the work done. SQLite probes the index either way.
def _not_mine(uid: Any) -> Any:
    return ~exists(
        select(literal(1))
        .where(_TASKS.c.item_id == _ITEMS.c.id, _TASKS.c.annotator_id == uid)
        .offset(literal(0, Integer()))
    )


def pick_next(uid: Any, *when: Any) -> Select[Any]:
    """The next-task pick: open items annotator ``uid`` has not had, best priority, then oldest
    (``when``: further conditions, which a combined statement uses to pick only if allowed)."""
    return (
        select(_ITEMS.c.id)
        .where(_ITEMS.c.project_id == PID, OPEN_ITEMS, _not_mine(uid), *when)
        .order_by(_ITEMS.c.priority.desc(), _ITEMS.c.id)
        .limit(1)
    )


_PICK = pick_next(UID)
_PICK_SKIP_LOCKED = _PICK.with_for_update(skip_locked=True, of=_ITEMS)
_PICK_WAIT = _PICK.with_for_update(of=_ITEMS)


def _take_next(pick: Select[Any], overlap: Any = _OVERLAP) -> Any:
    """Pick the next item and take one of its slots, in one statement."""
    return (
        update(_ITEMS)
        .where(_ITEMS.c.id == pick.scalar_subquery().correlate(None))
        .values(_slot_values(overlap))
        .returning(_ITEMS.c.id, _ITEMS.c.data, _ITEMS.c.meta)
    )


TAKE_NEXT = _take_next(_PICK)


def live_lease(uid: Any) -> Any:
    """The id of annotator ``uid``'s live lease in the project, if any."""
    return (
        select(_TASKS.c.id)
        .where(
            _TASKS.c.project_id == PID,
            _TASKS.c.annotator_id == uid,
            _TASKS.c.state == "leased",
            _TASKS.c.expires_at > NOW,
        )
        .order_by(_TASKS.c.id)
        .limit(1)
        .scalar_subquery()
    )


#: Some lease of the project is past its time (reclaiming it needs a transaction).
HAS_EXPIRED = (
    exists()
    .where(_TASKS.c.project_id == PID, _TASKS.c.state == "leased", _TASKS.c.expires_at <= NOW)
    .label("has_expired")
)

#: Everything next-task needs to know before picking, in one round trip.
NEXT_CONTEXT = (
    select(
        _PROJECTS.c.settings,
        _MEMBERS.c.id.label("member_id"),
        _MEMBERS.c.paused,
        _MEMBERS.c.pause_reason,
        _MEMBERS.c.qualification,
        live_lease(UID).label("live_task_id"),
        HAS_EXPIRED,
        exists().where(_PREDICTIONS.c.project_id == PID).label("has_predictions"),
    )
    .select_from(
        _PROJECTS.outerjoin(
            _MEMBERS, and_(_MEMBERS.c.project_id == _PROJECTS.c.id, _MEMBERS.c.user_id == UID)
        )
    )
    .where(_PROJECTS.c.id == PID)
)

_EXPIRED = (
    select(_TASKS.c.id, _TASKS.c.item_id, _TASKS.c.is_gold)
    .where(_TASKS.c.project_id == PID, _TASKS.c.state == "leased", _TASKS.c.expires_at <= NOW)
    .order_by(_TASKS.c.expires_at)
    .limit(RECLAIM_BATCH)
)
_EXPIRED_SKIP_LOCKED = _EXPIRED.with_for_update(skip_locked=True)
_EXPIRE_TASKS = (
    update(_TASKS)
    .where(_TASKS.c.id.in_(bindparam("ids", expanding=True)))
    .values(state="expired", finished_at=NOW)
)

_INSERT_TASK = insert(_TASKS).returning(_TASKS.c.id)
_ITEM_VIEW = select(_ITEMS.c.data, _ITEMS.c.meta).where(_ITEMS.c.id == IID)
_TASK_VIEW = select(
    _TASKS.c.id,
    _TASKS.c.project_id,
    _TASKS.c.item_id,
    _TASKS.c.state,
    _TASKS.c.is_gold,
    _TASKS.c.leased_at,
    _TASKS.c.expires_at,
).where(_TASKS.c.id == TID)
SHOWN_PREDICTIONS = (
    select(_PREDICTIONS.c.value, _PREDICTIONS.c.score, _PREDICTIONS.c.model_version)
    .where(_PREDICTIONS.c.project_id == PID, _PREDICTIONS.c.item_id == IID)
    .order_by(_PREDICTIONS.c.id)
)
_ADD_MEMBER = insert(_MEMBERS).values(
    project_id=PID,
    user_id=UID,
    role=bindparam("role", type_=String()),
    qualification=bindparam("qualification", type_=String()),
)

#: What submit needs to know of the task, its item and project (the schema as its JSON text,
#: the schema cache's key), and where they are read from.
SUBMIT_CONTEXT_COLUMNS = (
    _TASKS.c.project_id,
    _TASKS.c.item_id,
    _TASKS.c.annotator_id,
    _TASKS.c.state,
    _TASKS.c.is_gold,
    _TASKS.c.leased_at,
    _ITEMS.c.data,
    _ITEMS.c.meta,
    _PROJECTS.c.settings,
    sql_cast(_PROJECTS.c.label_schema, Text).label("label_schema"),
)
SUBMIT_CONTEXT_FROM = _TASKS.join(_ITEMS, _ITEMS.c.id == _TASKS.c.item_id).join(
    _PROJECTS, _PROJECTS.c.id == _TASKS.c.project_id
)
#: Everything submit needs to know, in one round trip.
SUBMIT_CONTEXT = (
    select(
        *SUBMIT_CONTEXT_COLUMNS,
        queued_job("consensus", _TASKS.c.project_id).scalar_subquery().label("queued_consensus"),
    )
    .select_from(SUBMIT_CONTEXT_FROM)
    .where(_TASKS.c.id == TID)
)
#: Finishing a task is also the guard against a concurrent submit or reclaim of the same task:
#: it changes the row only from the state this transaction read.
FINISH_TASK = (
    update(_TASKS)
    .where(_TASKS.c.id == TID, _TASKS.c.state == bindparam("was", type_=String()))
    .values(state="submitted", finished_at=NOW)
)
_SLOTS_FOR_LATE_SUBMIT = select(_ITEMS.c.needed, _ITEMS.c.assigned).where(_ITEMS.c.id == IID)
COUNT_ANNOTATION = (
    update(_ITEMS).where(_ITEMS.c.id == IID).values(annotation_count=_ITEMS.c.annotation_count + 1)
)
ANNOTATION_VIEW = (
    _ANNOTATIONS.c.id,
    _ANNOTATIONS.c.task_id,
    _ANNOTATIONS.c.item_id,
    _ANNOTATIONS.c.value,
    _ANNOTATIONS.c.status,
    _ANNOTATIONS.c.lead_seconds,
    _ANNOTATIONS.c.created_at,
    _ANNOTATIONS.c.updated_at,
)
_INSERT_ANNOTATION = insert(_ANNOTATIONS).returning(*ANNOTATION_VIEW)
_BY_KEY = select(*ANNOTATION_VIEW).where(
    _ANNOTATIONS.c.annotator_id == UID, _ANNOTATIONS.c.idempotency_key == bindparam("key", type_=String())
)


# PostgreSQL answers each statement over the network, so there the common paths are one
# statement each (data-modifying CTEs): pick + take the slot + insert the task + read the
# predictions; and finish the task + count + insert the annotation. SQLite, in process,
# runs the same steps as the separate statements above.


def pg_lease_parts(pick: Select[Any], *, uid: Any, overlap: Any, expires_at: Any) -> tuple[Any, Any, Any]:
    """The CTEs of a PostgreSQL lease: ``taken`` (the picked item, its slot taken), ``leased``
    (the task inserted for annotator ``uid``) and the predictions to show, as one JSON array."""
    taken = _take_next(pick, overlap).cte("taken")
    columns = ["project_id", "item_id", "annotator_id", "state", "is_gold", "leased_at", "expires_at"]
    row = select(PID, taken.c.id, uid, literal("leased"), false(), NOW, expires_at).select_from(taken)
    leased = (
        insert(_TASKS).from_select(columns, row).returning(_TASKS.c.id, _TASKS.c.expires_at).cte("leased")
    )
    shown = func.json_build_object(
        "value",
        _PREDICTIONS.c.value,
        "score",
        _PREDICTIONS.c.score,
        "model_version",
        _PREDICTIONS.c.model_version,
    )
    predictions = (
        select(func.json_agg(aggregate_order_by(shown, _PREDICTIONS.c.id), type_=JSONB))
        .where(_PREDICTIONS.c.project_id == PID, _PREDICTIONS.c.item_id == taken.c.id)
        .scalar_subquery()
    )
    return taken, leased, predictions


def _pg_lease_statement(pick: Select[Any]) -> Select[Any]:
    taken, leased, predictions = pg_lease_parts(pick, uid=UID, overlap=_OVERLAP, expires_at=_EXPIRES_AT)
    return select(
        leased.c.id.label("task_id"),
        taken.c.id.label("item_id"),
        taken.c.data,
        taken.c.meta,
        predictions.label("predictions"),
    ).join_from(taken, leased, true())


_EXPIRES_AT = bindparam("lease_until", type_=UTCDateTime())
PG_LEASE_SKIP_LOCKED = _pg_lease_statement(_PICK_SKIP_LOCKED)
_PG_LEASE_WAIT = _pg_lease_statement(_PICK_WAIT)


def _pg_submit_statement() -> Select[Any]:
    finished = FINISH_TASK.returning(_TASKS.c.id, _TASKS.c.item_id).cte("finished")
    counted = (
        update(_ITEMS)
        .where(_ITEMS.c.id == select(finished.c.item_id).scalar_subquery())
        .values(annotation_count=_ITEMS.c.annotation_count + 1)
        .cte("counted")
    )
    columns = [
        "project_id",
        "item_id",
        "annotator_id",
        "task_id",
        "value",
        "lead_seconds",
        "idempotency_key",
        "status",
    ]
    row = select(
        PID,
        finished.c.item_id,
        UID,
        finished.c.id,
        bindparam("a_value", type_=_ANNOTATIONS.c.value.type),
        bindparam("a_lead_seconds", type_=Float()),
        bindparam("a_idempotency_key", type_=String()),
        bindparam("a_status", type_=String()),
    ).select_from(finished)
    created = insert(_ANNOTATIONS).from_select(columns, row).returning(*ANNOTATION_VIEW).cte("created")
    # the consensus refresh is queued in the same statement, unless one is queued already
    refresh = select(PID, literal("consensus"), literal("queued"), literal(0)).where(
        ~exists(queued_job("consensus", PID)), exists(select(finished.c.id))
    )
    job_columns = ["project_id", "kind", "status", "progress_done"]
    enqueued = insert(_JOBS).from_select(job_columns, refresh).cte("enqueued")
    return select(created).add_cte(counted).add_cte(enqueued)


PG_SUBMIT = _pg_submit_statement()


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# --------------------------------------------------------------------------- slots


def shift_slots(session: Session | Connection, project: Project, item_id: int, by: int) -> None:
    """Take (``by=1``) or give back (``by=-1``) one of the item's slots, keeping ``is_open`` true
    to ``assigned < labels needed`` in the same statement."""
    session.execute(_SHIFT_SLOTS, {"iid": item_id, "by": by, "overlap": _overlap(project)})


def _reclaim_expired(conn: Connection, project_id: int, overlap: int, now: datetime) -> int:
    """Expire leases past their time and give their slots back (at most RECLAIM_BATCH)."""
    rows = conn.execute(
        _EXPIRED_SKIP_LOCKED if _is_pg(conn) else _EXPIRED, {"pid": project_id, "now": now}
    ).all()
    if not rows:
        return 0
    conn.execute(_EXPIRE_TASKS, {"ids": [r.id for r in rows], "now": now})
    returned = [{"iid": r.item_id, "by": -1, "overlap": overlap} for r in rows if not r.is_gold]
    if returned:
        conn.execute(_SHIFT_SLOTS, returned)
    return len(rows)


def next_item_query(project_id: int, user_id: int) -> Select[Any]:
    """The next-task pick for one annotator (the hot path binds the same statement)."""
    return _PICK.params(pid=project_id, uid=user_id)


def _pg_lease_regular(
    conn: Connection,
    project_id: int,
    user_id: int,
    overlap: int,
    now: datetime,
    expires_at: datetime,
    *,
    may_wait: bool,
) -> Lease | None:
    """PostgreSQL: lock, take and lease the next open item in one statement. SKIP LOCKED passes
    over items other annotators are taking this instant; when it finds nothing, those items may
    still have a free slot after their holders commit, so (when this transaction holds no other
    item lock, and so cannot deadlock) wait for them: PostgreSQL re-checks each one once its lock
    is released and moves on to the next if it has closed. Without this an annotator could be
    told the queue is empty while an item still needs them."""
    params = {
        "pid": project_id,
        "uid": user_id,
        "overlap": overlap,
        "by": 1,
        "now": now,
        "lease_until": expires_at,
    }
    row = conn.execute(PG_LEASE_SKIP_LOCKED, params).first()
    if row is None and may_wait:
        row = conn.execute(_PG_LEASE_WAIT, params).first()
    if row is None:
        return None
    return pg_lease_from_row(row, project_id, now, expires_at)


def pg_lease_from_row(row: Any, project_id: int, now: datetime, expires_at: datetime) -> Lease:
    """The lease a PostgreSQL lease statement returned (columns task_id, item_id, data, meta and
    predictions, the JSON array of :func:`pg_lease_parts`)."""
    return Lease(
        task=LeasedTask(row.task_id, project_id, row.item_id, "leased", False, now, expires_at),
        item=LeasedItem(row.item_id, row.data, row.meta),
        predictions=[
            ShownPrediction(p["value"], p["score"], p["model_version"]) for p in row.predictions or []
        ],
    )


def _pick_gold(conn: Connection, project_id: int, user_id: int) -> int | None:
    """A gold item this annotator has not seen, chosen at random so honeypots don't come in order."""
    mine = exists().where(_TASKS.c.item_id == _ITEMS.c.id, _TASKS.c.annotator_id == user_id)
    base = select(_ITEMS.c.id).where(_ITEMS.c.project_id == project_id, _ITEMS.c.is_gold, ~mine)
    count = conn.scalar(select(func.count()).select_from(base.subquery())) or 0
    if count == 0:
        return None
    return conn.scalar(base.order_by(_ITEMS.c.id).offset(_rng.randrange(count)).limit(1))


# --------------------------------------------------------------------------- next task


class _LookAgain:
    """``_next_task``'s answer when it reclaimed leases but found no item: commit, then retry."""


_LOOK_AGAIN = _LookAgain()


class _NeedsTransaction(Exception):
    """Raised before any write by a path that needs several writes in one transaction, when the
    call runs statement by statement: the call is then run again in a transaction."""


@contextmanager
def _connection(db: Database, atomic: bool) -> Iterator[Connection]:
    if atomic:
        with db.connect(immediate=True) as conn:
            yield conn
    else:
        with db.autocommit() as conn:
            yield conn


def _first_atomic(db: Database) -> bool:
    """SQLite runs each call in one transaction (its write lock serialises the queue). On
    PostgreSQL the common paths write with one statement, atomic by itself, so they run
    without BEGIN and COMMIT, two round trips fewer; the rare paths that write several times
    (reclaiming expired leases, a late submit) raise _NeedsTransaction and run in one."""
    return db.dialect != "postgresql"


def gold_draw() -> float:
    """The chance draw, in [0, 1), that mixes a gold item into a stream at ``gold_rate``."""
    return _rng.random()


def draws_gold(settings: dict[str, Any], draw: float) -> bool:
    """Whether this next-task serves a gold item, for a :func:`gold_draw` of ``draw``."""
    return float(settings.get("gold_rate", 0.0)) > draw


def needs_qualification(settings: dict[str, Any], qualification: str | None) -> bool:
    """Whether a member must still qualify on gold items before getting real ones."""
    return qualification != "qualified" and int(settings.get("qualification_size", 0)) > 0


def lease_until(settings: dict[str, Any], now: datetime) -> datetime:
    """When a lease taken ``now`` expires (``lease_seconds``)."""
    return now + timedelta(seconds=int(settings.get("lease_seconds", 600)))


def next_task(db: Database, project_id: int, user: User, *, draw: float | None = None) -> Lease | None:
    """The caller's next task, or None when nothing is left for them. ``draw`` (in [0, 1)) is
    the chance draw that mixes in gold at the project's ``gold_rate``, when it was drawn
    already; by default it is drawn here."""
    draw = gold_draw() if draw is None else draw
    attempt = 0
    atomic = _first_atomic(db)
    while True:
        try:
            with _connection(db, atomic) as conn:
                lease = _next_task(conn, project_id, user, atomic=atomic, draw=draw)
        except _NeedsTransaction:
            atomic = True
            continue
        except IntegrityError:
            # Two requests of the same annotator raced for the same item: the unique
            # (item, annotator) constraint refused the second. Try again.
            attempt += 1
            if attempt == 3:
                raise
            continue
        if not isinstance(lease, _LookAgain):
            return lease


def _next_task(
    conn: Connection, project_id: int, user: User, *, atomic: bool, draw: float
) -> Lease | _LookAgain | None:
    now = _now()
    ctx = conn.execute(NEXT_CONTEXT, {"pid": project_id, "uid": user.id, "now": now}).first()
    if ctx is None:
        raise NotFound(f"no project {project_id}", field="project_id")
    qualification = ctx.qualification
    if ctx.member_id is None:
        if user.role != "admin":
            raise NotFound(f"no project {project_id}", field="project_id")
        # admins may label any project; they get a membership on first use
        qualification = "qualified"
        conn.execute(
            _ADD_MEMBER,
            {"pid": project_id, "uid": user.id, "role": "manager", "qualification": qualification},
        )
    elif ctx.paused:
        raise Forbidden(f"you are paused in this project: {ctx.pause_reason or 'ask a manager'}")
    if ctx.live_task_id is not None:
        return _lease_view(conn, ctx.live_task_id)
    settings: dict[str, Any] = ctx.settings or {}
    overlap = int(settings.get("overlap", 1))
    if ctx.has_expired and not atomic:
        raise _NeedsTransaction
    reclaimed = _reclaim_expired(conn, project_id, overlap, now) if ctx.has_expired else 0
    expires_at = lease_until(settings, now)
    item_id: int | None = None
    is_gold = False
    if needs_qualification(settings, qualification):
        item_id, is_gold = _pick_gold(conn, project_id, user.id), True
        if item_id is None:
            return None  # nothing left to qualify on: a manager must add gold items
    else:
        if draws_gold(settings, draw):
            item_id, is_gold = _pick_gold(conn, project_id, user.id), True
        if item_id is None and _is_pg(conn):
            lease = _pg_lease_regular(
                conn, project_id, user.id, overlap, now, expires_at, may_wait=not reclaimed
            )
            # Reclaiming locked item rows, so the pick could not wait for busy ones: commit
            # the reclaim and look again.
            return lease or (_LOOK_AGAIN if reclaimed else None)
    if item_id is not None:
        data, meta = conn.execute(_ITEM_VIEW, {"iid": item_id}).one()
    else:
        params = {"pid": project_id, "uid": user.id, "by": 1, "overlap": overlap}
        taken = conn.execute(TAKE_NEXT, params).first()
        if taken is None:
            return None
        (item_id, data, meta), is_gold = taken, False
    task_id = conn.execute(
        _INSERT_TASK,
        {
            "project_id": project_id,
            "item_id": item_id,
            "annotator_id": user.id,
            "state": "leased",
            "is_gold": is_gold,
            "leased_at": now,
            "expires_at": expires_at,
        },
    ).scalar_one()
    return Lease(
        task=LeasedTask(task_id, project_id, item_id, "leased", is_gold, now, expires_at),
        item=LeasedItem(item_id, data, meta),
        predictions=_shown_predictions(conn, project_id, item_id) if ctx.has_predictions else [],
    )


def _shown_predictions(conn: Connection, project_id: int, item_id: int) -> list[ShownPrediction]:
    rows = conn.execute(SHOWN_PREDICTIONS, {"pid": project_id, "iid": item_id})
    return [ShownPrediction(r.value, r.score, r.model_version) for r in rows]


def _lease_view(conn: Connection, task_id: int) -> Lease:
    task = LeasedTask(*conn.execute(_TASK_VIEW, {"tid": task_id}).one())
    data, meta = conn.execute(_ITEM_VIEW, {"iid": task.item_id}).one()
    return Lease(
        task, LeasedItem(task.item_id, data, meta), _shown_predictions(conn, task.project_id, task.item_id)
    )


# --------------------------------------------------------------------------- submit


def _own_task(session: Session, task_id: int, user: User) -> Task:
    task = session.get(Task, task_id)
    if task is None or task.annotator_id != user.id:
        raise NotFound(f"no task {task_id}", field="task_id")  # other people's tasks are invisible
    return task


def check_annotation(schema: LabelSchema, data: Any, meta: dict[str, Any] | None, value: Any) -> None:
    """Validate an annotation value against the project's schema and the item it labels."""
    try:
        check_value(schema, value, data=data, media=(meta or {}).get("media") or {})
    except AnnotationValueError as exc:
        issue = exc.issues[0]
        raise Invalid(f"value.{issue.path}: {issue.message}", field=f"value.{issue.path}") from None


def validate_annotation(project: Project, item: Item, value: Any) -> None:
    check_annotation(load_schema(project.label_schema), item.data, item.meta, value)


class _Raced(Exception):
    """The task changed state between this submit's read and its write (a concurrent submit of
    the same task, or a reclaim of its lease): the whole submit is tried again."""


def submit(
    db: Database, task_id: int, user: User, value: Any, *, idempotency_key: str | None = None
) -> tuple[SubmittedAnnotation, bool]:
    """Store the annotation of a task; returns (annotation, created). A retry with the same
    ``Idempotency-Key`` returns the first annotation and ``created=False``."""
    key = idempotency_key
    if key is not None and not 1 <= len(key) <= 200:
        raise Invalid("Idempotency-Key must have 1-200 characters", field="Idempotency-Key")
    atomic = _first_atomic(db)
    for _attempt in range(3):
        try:
            with _connection(db, atomic) as conn:
                return _submit(conn, task_id, user, value, key, atomic=atomic)
        except _NeedsTransaction:
            atomic = True
            continue
        except _Raced:
            continue  # read again: the task is now submitted (replay or conflict) or expired
        except IntegrityError:
            # The Idempotency-Key is taken: a concurrent retry won the race, or it was used
            # for another task.
            if key is None:
                raise
            with db.connect() as conn:
                found = _by_key(conn, user, key)
            if found is None:
                raise
            if found.task_id != task_id:
                raise Conflict(
                    "this Idempotency-Key was used for another task", field="Idempotency-Key"
                ) from None
            return found, False
    raise Conflict("the task kept changing while it was submitted; try again")


def _by_key(conn: Connection, user: User, key: str) -> SubmittedAnnotation | None:
    row = conn.execute(_BY_KEY, {"uid": user.id, "key": key}).first()
    return row


def annotation_values(
    settings: dict[str, Any], leased_at: datetime, value: Any, key: str | None, now: datetime
) -> dict[str, Any]:
    """The new annotation's columns: lead time since the lease, and whether it is drawn for
    review (``review_rate``)."""
    review_rate = float(settings.get("review_rate", 0.0))
    return {
        "value": value,
        "lead_seconds": max(0.0, (now - leased_at).total_seconds()),
        "idempotency_key": key,
        "status": "pending_review" if review_rate > 0 and _rng.random() < review_rate else "submitted",
    }


def needs_scoring(settings: dict[str, Any], is_gold: bool) -> bool:
    """Whether a submit takes one of the rare branches: scoring a gold answer (qualification,
    pausing), or adaptive overlap deciding whether the item needs another label."""
    max_overlap = int(settings.get("max_overlap") or settings.get("overlap", 1))
    return is_gold or max_overlap > int(settings.get("overlap", 1))


def _submit(
    conn: Connection, task_id: int, user: User, value: Any, key: str | None, *, atomic: bool
) -> tuple[SubmittedAnnotation, bool]:
    row = conn.execute(SUBMIT_CONTEXT, {"tid": task_id}).first()
    if row is None or row.annotator_id != user.id:
        raise NotFound(f"no task {task_id}", field="task_id")  # other people's tasks are invisible
    if key is not None and row.state == "submitted":
        replay = _by_key(conn, user, key)
        if replay is not None:
            if replay.task_id != task_id:
                raise Conflict("this Idempotency-Key was used for another task", field="Idempotency-Key")
            return replay, False
    if row.state == "submitted":
        raise Conflict("task already submitted; change the annotation with PATCH /annotations/{id}")
    if row.state == "skipped":
        raise Conflict("task was skipped")
    check_annotation(load_schema_json(row.label_schema), row.data, row.meta, value)
    settings: dict[str, Any] = row.settings or {}
    now = _now()
    # Bind names must not be column names of a table an UPDATE here writes: SQLAlchemy would
    # take them as extra SET values.
    finish = {"tid": task_id, "was": row.state, "now": now}
    annotation = annotation_values(settings, row.leased_at, value, key, now)
    late = row.state == "expired" and not row.is_gold
    if late and not atomic:
        raise _NeedsTransaction
    merged = _is_pg(conn) and not late
    if merged:
        submitted = {f"a_{k}": v for k, v in annotation.items()}
        ids = {"pid": row.project_id, "uid": user.id}
        created = conn.execute(PG_SUBMIT, {**finish, **submitted, **ids}).first()
        if created is None:
            raise _Raced
    else:
        if conn.execute(FINISH_TASK, finish).rowcount != 1:
            raise _Raced
        if late:
            # The lease was reclaimed and its slot went back to the pool (a lease past its
            # time but not yet reclaimed still holds its slot): take one again only if the
            # item needs it. The item row is locked for it on PostgreSQL so two late submits
            # cannot both see the same free slot (SQLite's write lock already serialises them).
            overlap = int(settings.get("overlap", 1))
            slots = _SLOTS_FOR_LATE_SUBMIT.with_for_update() if _is_pg(conn) else _SLOTS_FOR_LATE_SUBMIT
            needed, assigned = conn.execute(slots, {"iid": row.item_id}).one()
            if assigned >= (needed or overlap):
                raise Conflict("lease expired and the item already has the labels it needs")
            conn.execute(_SHIFT_SLOTS, {"iid": row.item_id, "by": 1, "overlap": overlap})
        ids = {"project_id": row.project_id, "item_id": row.item_id, "annotator_id": user.id}
        created = conn.execute(_INSERT_ANNOTATION, {**ids, **annotation, "task_id": task_id}).one()
        conn.execute(COUNT_ANNOTATION, {"iid": row.item_id})
    if needs_scoring(settings, row.is_gold):
        # The rare branches (gold scoring, adaptive overlap) use the ORM, in this transaction.
        with Session(bind=conn) as session:
            project = session.get(Project, row.project_id)
            assert project is not None
            if row.is_gold:
                _check_gold(session, project, user)
            else:
                item = session.get(Item, row.item_id)
                assert item is not None
                _adapt_overlap(session, project, item)
            session.flush()
    # Queue a consensus refresh unless one is queued (the PostgreSQL statement did it itself).
    # On SQLite the context read already said; a worker cannot claim that job before this
    # transaction ends (claiming is a write), so the refresh will see this annotation. On
    # PostgreSQL look right before committing.
    if not merged and (row.queued_consensus is None or _is_pg(conn)):
        enqueue(conn, "consensus", row.project_id)
    return created, True


def _check_gold(session: Session, project: Project, user: User) -> None:
    """Qualification and running gold accuracy: pause an annotator who falls below the bar
    (a manager's decision to keep them working sticks; see :mod:`labelmill.services.pausing`)."""
    member = _member(session, project, user)
    settings = project_settings(project)
    accuracy, n = gold_accuracy(session, project, user.id)
    threshold = settings.qualification_threshold
    size = settings.qualification_size
    if member.qualification != "qualified" and size == 0:
        member.qualification = "qualified"  # the project asks for no qualification
    if member.qualification != "qualified":
        if n >= size:
            if accuracy is not None and accuracy >= threshold:
                member.qualification = "qualified"
            elif member.paused_by != pausing.MANAGER:
                # Failing qualification is a gate, not a judgement: it holds with auto_pause off.
                member.paused = True
                member.paused_by = pausing.AUTO
                member.pause_reason = f"failed qualification: gold accuracy {accuracy:.2f} < {threshold:.2f}"
        return
    if n >= MIN_GOLD_FOR_PAUSE and accuracy is not None and accuracy < threshold:
        pausing.auto_pause(
            member, settings, f"gold accuracy fell to {accuracy:.2f} (< {threshold:.2f}) over {n} gold items"
        )


def gold_accuracy(session: Session, project: Project, user_id: int) -> tuple[float | None, int]:
    """Share of the annotator's gold answers that are right (per-control scores near 1)."""
    schema = load_schema(project.label_schema)
    controls = {c.name: c.type for c in schema.controls}
    rows = session.execute(
        select(Annotation.value, Item.gold)
        .join(Item, Item.id == Annotation.item_id)
        .where(
            Annotation.project_id == project.id,
            Annotation.annotator_id == user_id,
            Item.is_gold,
            Annotation.status != "correction",
        )
    ).all()
    scores = [gold_score(controls, value, gold or {}) for value, gold in rows]
    scored = [s for s in scores if s is not None]
    if not scored:
        return None, 0
    return sum(is_correct(s) for s in scored) / len(scored), len(scored)


def _adapt_overlap(session: Session, project: Project, item: Item) -> None:
    """Ask for one more label while the item's consensus is not confident enough (up to max_overlap).

    Uses the stored per-annotator skills (one-coin model) so the decision is incremental; the
    debounced refit later refreshes those skills.
    """
    overlap = _overlap(project)
    max_overlap = int(project.settings.get("max_overlap") or overlap)
    needed = item.needed or overlap
    if max_overlap <= needed:
        return  # the default (max_overlap = overlap): nothing to decide, no query to run
    session.refresh(item, ["annotation_count", "assigned"])
    if item.annotation_count < needed:
        return
    target = float(project.settings.get("target_confidence", 0.95))
    if item_confidence(session, project, item.id) >= target:
        return
    item.needed = needed + 1
    item.is_open = item.assigned < item.needed


def item_confidence(session: Session, project: Project, item_id: int) -> float:
    """Posterior confidence of the item's least certain categorical control (1.0 if it has none)."""
    schema = load_schema(project.label_schema)
    categorical = [
        (c.name, schema.categories_of(c.name), c.type)
        for c in schema.controls
        if c.type in ("choices", "pairwise", "rating")
    ]
    if not categorical:
        return 1.0
    rows = session.execute(
        select(Annotation.annotator_id, Annotation.value).where(
            Annotation.item_id == item_id, Annotation.status.notin_(("rejected", "correction"))
        )
    ).all()
    confidence = 1.0
    for name, classes, ctype in categorical:
        labels: list[int] = []
        skills: list[float] = []
        index: dict[Any, int] = {c: k for k, c in enumerate(classes)}
        for annotator_id, value in rows:
            answer = value.get(name)
            answer = answer.get("choice") if ctype == "pairwise" and isinstance(answer, dict) else answer
            if answer in index:
                labels.append(index[answer])
                skills.append(_skill(session, project.id, annotator_id, name))
        if labels:
            k = len(classes)
            posterior = item_posterior(labels, [1.0 / k] * k, skills=skills)
            confidence = min(confidence, float(max(posterior)))
    return confidence


def _skill(session: Session, project_id: int, annotator_id: int | None, control: str) -> float:
    skill = session.scalar(
        select(AnnotatorSkill.skill).where(
            AnnotatorSkill.project_id == project_id,
            AnnotatorSkill.annotator_id == annotator_id,
            AnnotatorSkill.control == control,
        )
    )
    # Clip away from 0 and 1: one perfect streak must not make a single vote certain.
    return min(0.99, max(0.01, float(skill))) if skill is not None else DEFAULT_SKILL


def skip(db: Database, task_id: int, user: User) -> Task:
    with db.session(immediate=True) as session:
        task = _own_task(session, task_id, user)
        if task.state != "leased":
            raise Conflict(f"only a leased task can be skipped (this one is {task.state})")
        project = session.get(Project, task.project_id)
        assert project is not None
        task.state, task.finished_at = "skipped", _now()
        if not task.is_gold:
            shift_slots(session, project, task.item_id, -1)
        session.flush()
        return task


def edit(db: Database, annotation_id: int, user: User, value: Any) -> Annotation:
    """An annotator may change their own annotation until a reviewer has looked at it."""
    with db.session(immediate=True) as session:
        annotation = session.get(Annotation, annotation_id)
        if annotation is None or annotation.annotator_id != user.id:
            raise NotFound(f"no annotation {annotation_id}", field="annotation_id")
        if annotation.status not in ("submitted", "pending_review"):
            raise Conflict(f"annotation was already reviewed ({annotation.status}); it can no longer change")
        project = session.get(Project, annotation.project_id)
        item = session.get(Item, annotation.item_id)
        assert project is not None and item is not None
        validate_annotation(project, item, value)
        annotation.value = value
        annotation.updated_at = _now()
        enqueue(session, "consensus", project.id)
        session.flush()
        return annotation


def my_tasks(
    session: Session,
    project_id: int | None,
    user: User,
    *,
    state: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> list[Task]:
    stmt = select(Task).where(Task.annotator_id == user.id)
    if project_id is not None:
        stmt = stmt.where(Task.project_id == project_id)
    if state is not None:
        stmt = stmt.where(Task.state == state)
    if before is not None:
        stmt = stmt.where(Task.id < before)
    return list(session.scalars(stmt.order_by(Task.id.desc()).limit(limit)))
