"""The full implementation of the queue, through SQLAlchemy: every case of next-task and
submit, plus skip, edit and the caller's task list.

Every rule holds inside one database transaction (on PostgreSQL the common paths write with a
single statement, its own transaction), so it holds under any number of API processes and
threads. The gates are :mod:`.rules`, the SQL is :mod:`.statements`; the rare branches (gold
scoring, adaptive overlap) use an ORM session on the same connection.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labelmill.quality.decision import item_needs_another_label, least_confidence
from labelmill.quality.gold import gold_score, is_correct
from labelmill.schema import AnnotationValueError, LabelSchema, check_value
from labelmill.services import pausing
from labelmill.services.errors import Conflict, Forbidden, Invalid, NotFound
from labelmill.services.jobs import enqueue
from labelmill.services.projects import (
    ProjectSettings,
    load_schema,
    load_schema_json,
    settings_from_json,
    settings_of,
)
from labelmill.services.queue import rules
from labelmill.services.queue import statements as sql
from labelmill.services.queue.types import (
    Lease,
    LeasedItem,
    LeasedTask,
    ShownPrediction,
    SubmittedAnnotation,
)
from labelmill.store.engine import Database
from labelmill.store.models import Annotation, AnnotatorSkill, Item, Member, Project, Task, User

#: Gold labels an annotator needs before a falling gold accuracy can pause them.
MIN_GOLD_FOR_PAUSE = 5
#: Skill assumed for an annotator the quality engine has not measured yet.
DEFAULT_SKILL = 0.7

_rng = random.Random()


def _now() -> datetime:
    return datetime.now(UTC)


def gold_draw() -> float:
    """The chance draw, in [0, 1), that mixes a gold item into a stream at ``gold_rate``."""
    return _rng.random()


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


def _is_pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


# --------------------------------------------------------------------------- slots


def shift_slots(session: Session | Connection, project: Project, item_id: int, by: int) -> None:
    """Take (``by=1``) or give back (``by=-1``) one of the item's slots, keeping ``is_open`` true
    to ``assigned < labels needed`` in the same statement."""
    session.execute(sql.SHIFT_SLOTS, {"iid": item_id, "by": by, "overlap": settings_of(project).overlap})


def _reclaim_expired(conn: Connection, project_id: int, overlap: int, now: datetime) -> int:
    """Expire leases past their time and give their slots back (at most RECLAIM_BATCH)."""
    expired = sql.EXPIRED_SKIP_LOCKED if _is_pg(conn) else sql.EXPIRED
    rows = conn.execute(expired, {"pid": project_id, "now": now}).all()
    if not rows:
        return 0
    conn.execute(sql.EXPIRE_TASKS, {"ids": [r.id for r in rows], "now": now})
    returned = [{"iid": r.item_id, "by": -1, "overlap": overlap} for r in rows if not r.is_gold]
    if returned:
        conn.execute(sql.SHIFT_SLOTS, returned)
    return len(rows)


def next_item_query(project_id: int, user_id: int) -> Any:
    """The next-task pick for one annotator (the hot paths bind the same statement)."""
    return sql.PICK.params(pid=project_id, uid=user_id)


def pg_lease_from_row(
    row: Any, project_id: int, now: datetime, expires_at: datetime, schema: LabelSchema
) -> Lease:
    """The lease a PostgreSQL lease statement returned (columns task_id, item_id, data, meta and
    predictions, the JSON array of :func:`statements.pg_lease_parts`)."""
    return Lease(
        task=LeasedTask(row.task_id, project_id, row.item_id, "leased", False, now, expires_at),
        item=LeasedItem(row.item_id, row.data, rules.shown_meta(schema, row.meta)),
        predictions=[
            ShownPrediction(p["value"], p["score"], p["model_version"]) for p in row.predictions or []
        ],
    )


def _pg_lease_regular(
    conn: Connection,
    project_id: int,
    user_id: int,
    overlap: int,
    now: datetime,
    expires_at: datetime,
    schema: LabelSchema,
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
    row = conn.execute(sql.PG_LEASE_SKIP_LOCKED, params).first()
    if row is None and may_wait:
        row = conn.execute(sql.PG_LEASE_WAIT, params).first()
    if row is None:
        return None
    return pg_lease_from_row(row, project_id, now, expires_at, schema)


def _pick_gold(conn: Connection, project_id: int, user_id: int) -> int | None:
    """A gold item this annotator has not seen, chosen at random so honeypots don't come in order."""
    base = sql.gold_candidates(project_id, user_id)
    count = conn.scalar(select(func.count()).select_from(base.subquery())) or 0
    if count == 0:
        return None
    return conn.scalar(base.order_by(sql.ITEMS.c.id).offset(_rng.randrange(count)).limit(1))


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
    ctx = conn.execute(sql.NEXT_CONTEXT, {"pid": project_id, "uid": user.id, "now": now}).first()
    if ctx is None:
        raise NotFound(f"no project {project_id}", field="project_id")
    settings = settings_from_json(ctx.settings)
    route = rules.next_route(
        settings,
        member=ctx.member_id is not None,
        is_admin=user.role == "admin",
        paused=bool(ctx.paused),
        live_lease=ctx.live_task_id is not None,
        qualification=ctx.qualification,
        draw=draw,
    )
    if route is rules.NextRoute.NOT_FOUND:
        raise NotFound(f"no project {project_id}", field="project_id")
    if route is rules.NextRoute.PAUSED:
        raise Forbidden(f"you are paused in this project: {ctx.pause_reason or 'ask a manager'}")
    schema = load_schema_json(ctx.label_schema)
    if ctx.member_id is None:  # an admin's first visit: a membership, as a qualified manager
        params = {"pid": project_id, "uid": user.id, "role": "manager", "qualification": "qualified"}
        conn.execute(sql.ADD_MEMBER, params)
    if route is rules.NextRoute.LIVE:
        return _lease_view(conn, ctx.live_task_id, schema)
    overlap = settings.overlap
    if ctx.has_expired and not atomic:
        raise _NeedsTransaction
    reclaimed = _reclaim_expired(conn, project_id, overlap, now) if ctx.has_expired else 0
    expires_at = rules.lease_until(settings, now)
    item_id: int | None = None
    is_gold = False
    if route is rules.NextRoute.QUALIFY:
        item_id, is_gold = _pick_gold(conn, project_id, user.id), True
        if item_id is None:
            return None  # nothing left to qualify on: a manager must add gold items
    else:
        if route is rules.NextRoute.GOLD:
            item_id, is_gold = _pick_gold(conn, project_id, user.id), True
        if item_id is None and _is_pg(conn):
            lease = _pg_lease_regular(
                conn, project_id, user.id, overlap, now, expires_at, schema, may_wait=not reclaimed
            )
            # Reclaiming locked item rows, so the pick could not wait for busy ones: commit
            # the reclaim and look again.
            return lease or (_LOOK_AGAIN if reclaimed else None)
    if item_id is not None:
        data, meta = conn.execute(sql.ITEM_VIEW, {"iid": item_id}).one()
    else:
        params = {"pid": project_id, "uid": user.id, "by": 1, "overlap": overlap}
        taken = conn.execute(sql.TAKE_NEXT, params).first()
        if taken is None:
            return None
        (item_id, data, meta), is_gold = taken, False
    task_id = conn.execute(
        sql.INSERT_TASK,
        {
            "pid": project_id,
            "iid": item_id,
            "uid": user.id,
            "gold": is_gold,
            "now": now,
            "lease_until": expires_at,
        },
    ).scalar_one()
    return Lease(
        task=LeasedTask(task_id, project_id, item_id, "leased", is_gold, now, expires_at),
        item=LeasedItem(item_id, data, rules.shown_meta(schema, meta)),
        predictions=_shown_predictions(conn, project_id, item_id) if ctx.has_predictions else [],
    )


def _shown_predictions(conn: Connection, project_id: int, item_id: int) -> list[ShownPrediction]:
    rows = conn.execute(sql.SHOWN_PREDICTIONS, {"pid": project_id, "iid": item_id})
    return [ShownPrediction(r.value, r.score, r.model_version) for r in rows]


def _lease_view(conn: Connection, task_id: int, schema: LabelSchema) -> Lease:
    task = LeasedTask(*conn.execute(sql.TASK_VIEW, {"tid": task_id}).one())
    data, meta = conn.execute(sql.ITEM_VIEW, {"iid": task.item_id}).one()
    return Lease(
        task,
        LeasedItem(task.item_id, data, rules.shown_meta(schema, meta)),
        _shown_predictions(conn, task.project_id, task.item_id),
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


def annotation_values(
    settings: ProjectSettings, leased_at: datetime, value: Any, key: str | None, now: datetime
) -> dict[str, Any]:
    """The new annotation's own columns, as the bind parameters of
    :data:`statements.INSERT_ANNOTATION`: lead time since the lease, and whether it is drawn for
    review (``review_rate``)."""
    return {
        "a_value": value,
        "a_lead_seconds": max(0.0, (now - leased_at).total_seconds()),
        "a_idempotency_key": key,
        "a_status": "pending_review" if rules.draws_review(settings, _rng.random()) else "submitted",
    }


class _Raced(Exception):
    """The task changed state between this submit's read and its write (a concurrent submit of
    the same task, or a reclaim of its lease): the whole submit is tried again."""


def submit(
    db: Database, task_id: int, user: User, value: Any, *, idempotency_key: str | None = None
) -> tuple[SubmittedAnnotation, bool]:
    """Store the annotation of a task; returns (annotation, created). A retry with the same
    ``Idempotency-Key`` returns the first annotation and ``created=False``."""
    key = idempotency_key
    rules.check_idempotency_key(key)
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
    return conn.execute(sql.BY_KEY, {"uid": user.id, "key": key}).first()


def _submit(
    conn: Connection, task_id: int, user: User, value: Any, key: str | None, *, atomic: bool
) -> tuple[SubmittedAnnotation, bool]:
    row = conn.execute(sql.SUBMIT_CONTEXT, {"tid": task_id}).first()
    if row is None or row.annotator_id != user.id:
        raise NotFound(f"no task {task_id}", field="task_id")  # other people's tasks are invisible
    route = rules.submit_route(row.state, row.is_gold, key)
    if route is rules.SubmitRoute.REPLAY:
        assert key is not None
        replay = _by_key(conn, user, key)
        if replay is not None:
            if replay.task_id != task_id:
                raise Conflict("this Idempotency-Key was used for another task", field="Idempotency-Key")
            return replay, False
        route = rules.SubmitRoute.SUBMITTED
    if route is rules.SubmitRoute.SUBMITTED:
        raise Conflict("task already submitted; change the annotation with PATCH /annotations/{id}")
    if route is rules.SubmitRoute.SKIPPED:
        raise Conflict("task was skipped")
    check_annotation(load_schema_json(row.label_schema), row.data, row.meta, value)
    settings = settings_from_json(row.settings)
    now = _now()
    finish = {"tid": task_id, "was": row.state, "now": now}
    annotation = annotation_values(settings, row.leased_at, value, key, now)
    late = route is rules.SubmitRoute.LATE
    if late and not atomic:
        raise _NeedsTransaction
    merged = _is_pg(conn) and not late
    ids = {"pid": row.project_id, "iid": row.item_id, "uid": user.id, "tid": task_id}
    if merged:
        created = conn.execute(sql.PG_SUBMIT, {**finish, **annotation, **ids}).first()
        if created is None:
            raise _Raced
    else:
        if conn.execute(sql.FINISH_TASK, finish).rowcount != 1:
            raise _Raced
        if late:
            # The lease was reclaimed and its slot went back to the pool (a lease past its
            # time but not yet reclaimed still holds its slot): take one again only if the
            # item needs it. The item row is locked for it on PostgreSQL so two late submits
            # cannot both see the same free slot (SQLite's write lock already serialises them).
            slots = sql.SLOTS.with_for_update() if _is_pg(conn) else sql.SLOTS
            needed, assigned = conn.execute(slots, {"iid": row.item_id}).one()
            if not rules.late_submit_allowed(needed, assigned, settings):
                raise Conflict("lease expired and the item already has the labels it needs")
            conn.execute(sql.SHIFT_SLOTS, {"iid": row.item_id, "by": 1, "overlap": settings.overlap})
        created = conn.execute(sql.INSERT_ANNOTATION, {**ids, **annotation}).one()
        conn.execute(sql.COUNT_ANNOTATION, {"iid": row.item_id})
    if rules.needs_scoring(settings, row.is_gold):
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
    settings = settings_of(project)
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
    """Ask for one more label while the item's consensus is not confident enough (up to
    ``max_overlap``): the decision is :func:`labelmill.quality.decision.item_needs_another_label`,
    on the posterior from the stored per-annotator skills (one-coin model), so it is
    incremental; the debounced refit later refreshes those skills."""
    settings = settings_of(project)
    needed = item.needed or settings.overlap
    max_overlap = settings.max_overlap or settings.overlap
    if max_overlap <= needed:
        return  # nothing left to decide, no query to run
    session.refresh(item, ["annotation_count", "assigned"])
    if item.annotation_count < needed:
        return  # the labels it was promised are still coming
    if item_needs_another_label(
        [item_confidence(session, project, item.id)],
        item.annotation_count,
        target_confidence=settings.target_confidence,
        overlap=needed,
        max_overlap=max_overlap,
    ):
        item.needed = needed + 1
        item.is_open = item.assigned < item.needed


def item_confidence(session: Session, project: Project, item_id: int) -> float:
    """Posterior confidence of the item's least certain categorical control (1.0 if it has
    none), from its labels and its annotators' stored skills (one query for all of them)."""
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
    annotators = {annotator_id for annotator_id, _ in rows if annotator_id is not None}
    known = session.execute(
        select(AnnotatorSkill.annotator_id, AnnotatorSkill.control, AnnotatorSkill.skill).where(
            AnnotatorSkill.project_id == project.id,
            AnnotatorSkill.annotator_id.in_(annotators),
            AnnotatorSkill.control.in_([name for name, _, _ in categorical]),
        )
    ).all()
    stored = {(annotator_id, control): skill for annotator_id, control, skill in known}
    votes = []
    for name, classes, ctype in categorical:
        labels: list[int] = []
        skills: list[float] = []
        index: dict[Any, int] = {c: k for k, c in enumerate(classes)}
        for annotator_id, value in rows:
            answer = value.get(name)
            answer = answer.get("choice") if ctype == "pairwise" and isinstance(answer, dict) else answer
            if answer in index:
                labels.append(index[answer])
                skill = stored.get((annotator_id, name))
                # Clip away from 0 and 1: one perfect streak must not make a single vote certain.
                skills.append(min(0.99, max(0.01, float(skill))) if skill is not None else DEFAULT_SKILL)
        votes.append((labels, skills, len(classes)))
    return least_confidence(votes)


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
