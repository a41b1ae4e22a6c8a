"""The annotation queue: hand out tasks, take submissions, skips and edits.

Every rule holds inside one database transaction, so it holds under any number of API
processes and threads:

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
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Select, exists, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from labelmill.quality.decision import item_posterior
from labelmill.quality.gold import gold_score, is_correct
from labelmill.schema import AnnotationValueError, check_value
from labelmill.services.errors import Conflict, Forbidden, Invalid, NotFound
from labelmill.services.jobs import enqueue
from labelmill.services.projects import load_schema
from labelmill.store.engine import Database
from labelmill.store.models import (
    Annotation,
    AnnotatorSkill,
    Item,
    Member,
    Prediction,
    Project,
    Task,
    User,
    labels_needed,
)

#: Expired leases reclaimed per next-task call (bounded so one call never does unbounded work).
RECLAIM_BATCH = 200
#: Gold labels an annotator needs before a falling gold accuracy can pause them.
MIN_GOLD_FOR_PAUSE = 5
#: Skill assumed for an annotator the quality engine has not measured yet.
DEFAULT_SKILL = 0.7

_rng = random.Random()


@dataclass
class Lease:
    task: Task
    item: Item
    predictions: list[Prediction]


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


def shift_slots(session: Session, project: Project, item_id: int, by: int) -> None:
    """Take (``by=1``) or give back (``by=-1``) one of the item's slots, keeping ``is_open`` true
    to ``assigned < labels needed`` in the same statement."""
    assigned = Item.assigned + by
    session.execute(
        update(Item)
        .where(Item.id == item_id)
        .values(assigned=assigned, is_open=assigned < labels_needed(_overlap(project)))
    )


def reclaim_expired(session: Session, project: Project) -> int:
    """Expire leases past their time and give their slots back (at most RECLAIM_BATCH)."""
    stmt = (
        select(Task.id, Task.item_id, Task.is_gold)
        .where(Task.project_id == project.id, Task.state == "leased", Task.expires_at <= _now())
        .order_by(Task.expires_at)
        .limit(RECLAIM_BATCH)
    )
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = session.execute(stmt).all()
    for task_id, item_id, is_gold in rows:
        session.execute(update(Task).where(Task.id == task_id).values(state="expired", finished_at=_now()))
        if not is_gold:
            shift_slots(session, project, item_id, -1)
    return len(rows)


def _lock(stmt: Select[Any], session: Session) -> Select[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return stmt.with_for_update(skip_locked=True, of=Item)
    return stmt


def _not_mine(user: User) -> Any:
    return ~exists().where(Task.item_id == Item.id, Task.annotator_id == user.id)


#: The partial index's own predicate, written as the index writes it: SQLite uses a partial
#: index only when the query contains its WHERE terms literally, and SQLAlchemy would render
#: ``is_open = 1 AND is_gold = 0``, which SQLite does not match (a full scan and a sort).
OPEN_ITEMS = text("items.is_open AND NOT items.is_gold")


def next_item_query(project_id: int, user_id: int) -> Select[Any]:
    """The next-task pick: open items this annotator has not had, best priority, then oldest."""
    not_mine = ~exists().where(Task.item_id == Item.id, Task.annotator_id == user_id)
    return (
        select(Item.id)
        .where(Item.project_id == project_id, OPEN_ITEMS, not_mine)
        .order_by(Item.priority.desc(), Item.id)
        .limit(1)
    )


def _pick_regular(session: Session, project: Project, user: User, *, may_wait: bool) -> int | None:
    """Lock and return the next open item. On PostgreSQL, SKIP LOCKED passes over items other
    annotators are taking this instant; when it finds nothing, those items may still have a free
    slot after their holders commit, so (when this transaction holds no other item lock, and so
    cannot deadlock) wait for them: PostgreSQL re-checks each one once its lock is released and
    moves on to the next if it has closed. Without this an annotator could be told the queue is
    empty while an item still needs them."""
    query = next_item_query(project.id, user.id)
    item_id = session.scalar(_lock(query, session))
    if item_id is None and may_wait and session.get_bind().dialect.name == "postgresql":
        item_id = session.scalar(query.with_for_update(of=Item))
    return item_id


def _pick_gold(session: Session, project: Project, user: User) -> int | None:
    """A gold item this annotator has not seen, chosen at random so honeypots don't come in order."""
    base = select(Item.id).where(Item.project_id == project.id, Item.is_gold, _not_mine(user))
    count = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    if count == 0:
        return None
    return session.scalar(base.order_by(Item.id).offset(_rng.randrange(count)).limit(1))


def _gold_done(session: Session, project: Project, user: User) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Task)
            .where(
                Task.project_id == project.id,
                Task.annotator_id == user.id,
                Task.is_gold,
                Task.state == "submitted",
            )
        )
        or 0
    )


def _live_lease(session: Session, project: Project, user: User) -> Task | None:
    return session.scalar(
        select(Task)
        .where(
            Task.project_id == project.id,
            Task.annotator_id == user.id,
            Task.state == "leased",
            Task.expires_at > _now(),
        )
        .order_by(Task.id)
        .limit(1)
    )


def _lease_view(session: Session, task: Task) -> Lease:
    item = session.get(Item, task.item_id)
    assert item is not None
    predictions = list(
        session.scalars(select(Prediction).where(Prediction.item_id == item.id).order_by(Prediction.id))
    )
    return Lease(task=task, item=item, predictions=predictions)


class _LookAgain:
    """``_next_task``'s answer when it reclaimed leases but found no item: commit, then retry."""


_LOOK_AGAIN = _LookAgain()


def next_task(db: Database, project_id: int, user: User) -> Lease | None:
    """The caller's next task, or None when nothing is left for them."""
    attempt = 0
    while True:
        try:
            with db.session(immediate=True) as session:
                lease = _next_task(session, project_id, user)
        except IntegrityError:
            # Two requests of the same annotator raced for the same item: the unique
            # (item, annotator) constraint refused the second. Try again.
            attempt += 1
            if attempt == 3:
                raise
            continue
        if not isinstance(lease, _LookAgain):
            return lease


def _next_task(session: Session, project_id: int, user: User) -> Lease | _LookAgain | None:
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"no project {project_id}", field="project_id")
    member = _member(session, project, user)
    if member.paused:
        raise Forbidden(f"you are paused in this project: {member.pause_reason or 'ask a manager'}")
    live = _live_lease(session, project, user)
    if live is not None:
        return _lease_view(session, live)
    reclaimed = reclaim_expired(session, project)
    settings = project.settings
    item_id: int | None = None
    is_gold = False
    if member.qualification != "qualified" and int(settings.get("qualification_size", 0)) > 0:
        item_id, is_gold = _pick_gold(session, project, user), True
        if item_id is None:
            return None  # nothing left to qualify on: a manager must add gold items
    else:
        if float(settings.get("gold_rate", 0.0)) > _rng.random():
            item_id, is_gold = _pick_gold(session, project, user), True
        if item_id is None:
            item_id, is_gold = _pick_regular(session, project, user, may_wait=not reclaimed), False
    if item_id is None:
        # Reclaiming locked item rows, so the pick could not wait for busy ones: commit the
        # reclaim and look again.
        return _LOOK_AGAIN if reclaimed else None
    if not is_gold:
        shift_slots(session, project, item_id, 1)
    lease_seconds = int(settings.get("lease_seconds", 600))
    now = _now()
    task = Task(
        project_id=project.id,
        item_id=item_id,
        annotator_id=user.id,
        state="leased",
        is_gold=is_gold,
        leased_at=now,
        expires_at=now + timedelta(seconds=lease_seconds),
    )
    session.add(task)
    session.flush()
    return _lease_view(session, task)


def _own_task(session: Session, task_id: int, user: User) -> Task:
    task = session.get(Task, task_id)
    if task is None or task.annotator_id != user.id:
        raise NotFound(f"no task {task_id}", field="task_id")  # other people's tasks are invisible
    return task


def validate_annotation(project: Project, item: Item, value: Any) -> None:
    try:
        check_value(
            load_schema(project.label_schema),
            value,
            data=item.data,
            media=(item.meta or {}).get("media") or {},
        )
    except AnnotationValueError as exc:
        issue = exc.issues[0]
        raise Invalid(f"value.{issue.path}: {issue.message}", field=f"value.{issue.path}") from None


def submit(
    db: Database, task_id: int, user: User, value: Any, *, idempotency_key: str | None = None
) -> tuple[Annotation, bool]:
    """Store the annotation of a task; returns (annotation, created). A retry with the same
    ``Idempotency-Key`` returns the first annotation and ``created=False``."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 200:
        raise Invalid("Idempotency-Key must have 1-200 characters", field="Idempotency-Key")
    try:
        with db.session(immediate=True) as session:
            return _submit(session, task_id, user, value, idempotency_key)
    except IntegrityError:
        # A concurrent retry with the same key won the race; hand back its annotation.
        if idempotency_key is None:
            raise
        with db.session() as session:
            found = _by_key(session, user, idempotency_key)
            if found is None:
                raise
            return found, False


def _by_key(session: Session, user: User, key: str) -> Annotation | None:
    return session.scalar(
        select(Annotation).where(Annotation.annotator_id == user.id, Annotation.idempotency_key == key)
    )


def _submit(
    session: Session, task_id: int, user: User, value: Any, key: str | None
) -> tuple[Annotation, bool]:
    if key is not None:
        replay = _by_key(session, user, key)
        if replay is not None:
            if replay.task_id != task_id:
                raise Conflict("this Idempotency-Key was used for another task", field="Idempotency-Key")
            return replay, False
    task = _own_task(session, task_id, user)
    project = session.get(Project, task.project_id)
    # A reclaimed lease re-takes a slot below: lock the item row so two late submits on
    # PostgreSQL cannot both see the same free slot (SQLite's write lock already serialises).
    item = session.get(Item, task.item_id, with_for_update=task.state == "expired")
    assert project is not None and item is not None
    if task.state == "submitted":
        raise Conflict("task already submitted; change the annotation with PATCH /annotations/{id}")
    if task.state == "skipped":
        raise Conflict("task was skipped")
    validate_annotation(project, item, value)
    now = _now()
    if task.state == "expired" and not task.is_gold:
        # The lease was reclaimed and its slot went back to the pool (a lease past its time
        # but not yet reclaimed still holds its slot): take one again only if the item needs it.
        needed = item.needed or _overlap(project)
        if item.assigned >= needed:
            raise Conflict("lease expired and the item already has the labels it needs")
        shift_slots(session, project, item.id, 1)
    review_rate = float(project.settings.get("review_rate", 0.0))
    annotation = Annotation(
        project_id=project.id,
        item_id=item.id,
        annotator_id=user.id,
        task_id=task.id,
        value=value,
        lead_seconds=max(0.0, (now - task.leased_at).total_seconds()),
        idempotency_key=key,
        status="pending_review" if review_rate > 0 and _rng.random() < review_rate else "submitted",
    )
    session.add(annotation)
    task.state, task.finished_at = "submitted", now
    session.execute(update(Item).where(Item.id == item.id).values(annotation_count=Item.annotation_count + 1))
    session.flush()
    if task.is_gold:
        _check_gold(session, project, user)
    else:
        _adapt_overlap(session, project, item)
    session.flush()
    enqueue(session, "consensus", project.id)
    return annotation, True


def _check_gold(session: Session, project: Project, user: User) -> None:
    """Qualification and running gold accuracy: pause an annotator who falls below the bar."""
    member = _member(session, project, user)
    accuracy, n = gold_accuracy(session, project, user.id)
    threshold = float(project.settings.get("qualification_threshold", 0.8))
    size = int(project.settings.get("qualification_size", 0))
    if member.qualification != "qualified" and size == 0:
        member.qualification = "qualified"  # the project asks for no qualification
    if member.qualification != "qualified":
        if n >= size:
            if accuracy is not None and accuracy >= threshold:
                member.qualification = "qualified"
            else:
                member.paused = True
                member.pause_reason = f"failed qualification: gold accuracy {accuracy:.2f} < {threshold:.2f}"
        return
    if n >= MIN_GOLD_FOR_PAUSE and accuracy is not None and accuracy < threshold:
        member.paused = True
        member.pause_reason = f"gold accuracy fell to {accuracy:.2f} (< {threshold:.2f}) over {n} gold items"


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
