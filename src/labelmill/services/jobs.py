"""Jobs: background work whose state and progress live in the database, so any API process
(or ``labelmill`` command) can report on work another process is doing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Connection, Integer, Select, String, Table, bindparam, insert, or_, select, update
from sqlalchemy.orm import Session

from labelmill.services.errors import Invalid, NotFound
from labelmill.store.engine import Database
from labelmill.store.models import Job, Member, User


def create_job(
    db: Database, kind: str, *, project_id: int | None, params: dict[str, Any] | None, user: User | None
) -> int:
    with db.session() as session:
        job = Job(
            kind=kind,
            project_id=project_id,
            params=params,
            status="running",
            created_by=user.id if user else None,
            started_at=datetime.now(UTC),
        )
        session.add(job)
        session.flush()
        return job.id


#: Progress of jobs running in this process, for SQLite: its single writer is busy with the
#: job's own transaction, so progress cannot be written until the job commits. (The embedded
#: SQLite server is one process, so this is what every reader of the job sees.)
_LIVE: dict[int, tuple[int, int | None]] = {}


def report_progress(db: Database, job_id: int, done: int, total: int | None = None) -> None:
    if db.dialect == "sqlite":
        _LIVE[job_id] = (done, total)
        return
    values: dict[str, Any] = {"progress_done": done}
    if total is not None:
        values["progress_total"] = total
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def finish_job(
    db: Database, job_id: int, *, result: dict[str, Any] | None = None, error: str | None = None
) -> None:
    values: dict[str, Any] = {
        "status": "failed" if error else "done",
        "result": result,
        "error": error,
        "finished_at": datetime.now(UTC),
    }
    live = _LIVE.pop(job_id, None)
    if live is not None:
        values["progress_done"] = live[0]
        if live[1] is not None:
            values["progress_total"] = live[1]
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(**values))


def with_live_progress(job: Job) -> Job:
    """Overlay in-process progress (SQLite) on a job read from the database."""
    live = _LIVE.get(job.id)
    if live is not None and job.status == "running":
        job.progress_done, job.progress_total = (
            live[0],
            live[1] if live[1] is not None else job.progress_total,
        )
    return job


def visible_jobs(
    session: Session, user: User, *, limit: int = 50, cursor: int | None = None, project_id: int | None = None
) -> list[Job]:
    if not 1 <= limit <= 500:
        raise Invalid("limit must be between 1 and 500", field="limit")
    stmt = select(Job)
    if user.role != "admin":
        managed = select(Member.project_id).where(Member.user_id == user.id, Member.role == "manager")
        stmt = stmt.where(or_(Job.created_by == user.id, Job.project_id.in_(managed)))
    if project_id is not None:
        stmt = stmt.where(Job.project_id == project_id)
    if cursor is not None:
        stmt = stmt.where(Job.id < cursor)
    return [with_live_progress(j) for j in session.scalars(stmt.order_by(Job.id.desc()).limit(limit))]


def get_visible_job(session: Session, user: User, job_id: int) -> Job:
    for job in session.scalars(select(Job).where(Job.id == job_id)):
        if user.role == "admin" or job.created_by == user.id:
            return with_live_progress(job)
        if job.project_id is not None and session.scalar(
            select(Member.id).where(
                Member.project_id == job.project_id, Member.user_id == user.id, Member.role == "manager"
            )
        ):
            return with_live_progress(job)
    raise NotFound(f"no job {job_id}", field="job_id")


# -- queued jobs -----------------------------------------------------------------------------------


def schedule_job(db: Database, kind: str, project_id: int, *, params: dict[str, Any] | None = None) -> int:
    """Queue a job unless the same kind is already queued for the project (the debounce):
    a burst of arrivals then costs one run, not one per arrival."""
    with db.session() as session:
        return enqueue(session, kind, project_id, params=params)


def enqueue(
    session: Session | Connection,
    kind: str,
    project_id: int,
    *,
    params: dict[str, Any] | None = None,
) -> int:
    """:func:`schedule_job` inside the caller's transaction (an ORM session or a Core
    connection), so the job commits with the change that called for it (a submitted label and
    its consensus refresh, together)."""
    queued = session.scalar(_QUEUED_JOB, {"kind": kind, "project_id": project_id})
    if queued is not None:
        return int(queued)
    values = {"kind": kind, "project_id": project_id, "params": params, "status": "queued"}
    return int(session.execute(insert(_JOBS).returning(_JOBS.c.id), values).scalar_one())


_JOBS = cast(Table, Job.__table__)


def queued_job(kind: Any, project_id: Any) -> Select[int]:
    """The id of a queued job of ``kind`` for ``project_id`` (values, bind parameters or a
    correlated column), from the partial index of queued jobs."""
    return (
        select(_JOBS.c.id)
        .where(_JOBS.c.project_id == project_id, _JOBS.c.kind == kind, _JOBS.c.status == "queued")
        .limit(1)
    )


_QUEUED_JOB = queued_job(bindparam("kind", type_=String()), bindparam("project_id", type_=Integer()))


def claim_job(db: Database, kinds: tuple[str, ...], project_id: int | None = None) -> Job | None:
    """Take the oldest queued job of ``kinds``; several workers never take the same one
    (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one writer at a time)."""
    with db.session(immediate=True) as session:
        stmt = select(Job).where(Job.status == "queued", Job.kind.in_(kinds)).order_by(Job.id).limit(1)
        if project_id is not None:
            stmt = stmt.where(Job.project_id == project_id)
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        job = session.scalar(stmt)
        if job is None:
            return None
        job.status = "running"
        job.started_at = datetime.now(UTC)
        session.flush()
        session.expunge(job)
        return job


def claim_job_by_id(db: Database, job_id: int) -> Job | None:
    """Claim one specific queued job (atomic: of several claimants exactly one wins)."""
    with db.session(immediate=True) as session:
        claimed = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == "queued")
            .values(status="running", started_at=datetime.now(UTC))
            .returning(Job.id)
        ).first()
        if claimed is None:
            return None
        job = session.get(Job, job_id)
        assert job is not None
        session.expunge(job)
        return job


def schedule_export(db: Database, project_id: int, params: dict[str, Any], user: User) -> int:
    """Queue an export job (never debounced: each request wants its own file)."""
    with db.session() as session:
        job = Job(kind="export", project_id=project_id, params=params, status="queued", created_by=user.id)
        session.add(job)
        session.flush()
        return job.id
