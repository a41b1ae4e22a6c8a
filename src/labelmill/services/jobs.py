"""Jobs: background work whose state and progress live in the database, so any API process
(or ``labelmill`` command) can report on work another process is doing."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Integer,
    Select,
    String,
    Table,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from labelmill.services.errors import Invalid, NotFound
from labelmill.store.engine import Database
from labelmill.store.models import Job, Member, User


def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc``), None when there is
    no such process or no ``/proc``: with its pid it names one process, never a later one that
    reuses the pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def machine_name() -> str:
    """This machine as workers name it: the host name, and on Linux the pid namespace, so two
    containers that share a host name (host networking) never take each other's pids for theirs."""
    host = socket.gethostname()
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return host
    return f"{host}/{''.join(c for c in namespace if c.isdigit())}"


def _own_token() -> str:
    return process_start(os.getpid()) or secrets.token_hex(4)


_TOKEN = _own_token()


def _new_token() -> None:  # a forked child is another worker
    global _TOKEN
    _TOKEN = _own_token()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_token)


def worker_name() -> str:
    """``machine:pid:token``: who claims a job; the token is the process's start time where the
    system tells it (else random), so a reused pid is never taken for the original worker."""
    return f"{machine_name()}:{os.getpid()}:{_TOKEN}"


def process_token() -> str:
    return _TOKEN


def submit_job(
    db: Database,
    kind: str,
    *,
    project_id: int | None,
    params: dict[str, Any] | None,
    user: User | None,
    before_commit: Callable[[int], dict[str, Any]] | None = None,
) -> int:
    """Queue a job of its own (never debounced: each request wants its own import or file).
    ``before_commit(job_id)`` runs inside the transaction (moving the job's upload into place)
    and returns more params, so no worker can claim the job before what it needs is there, and
    a failure queues nothing."""
    with db.session() as session:
        job = Job(
            kind=kind,
            project_id=project_id,
            params=params,
            status="queued",
            created_by=user.id if user else None,
        )
        session.add(job)
        session.flush()
        if before_commit is not None:
            job.params = {**(params or {}), **before_commit(job.id)}
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
    db: Database,
    job_id: int,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
    worker: str | None = None,
) -> bool:
    """Record a running job's end (``done``, or ``failed`` with ``error``). With ``worker``, only
    while that worker still holds the claim: a job reaped from a worker taken for dead and claimed
    again is not overwritten by the first worker finishing late. False when nothing was recorded."""
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
    stmt = update(Job).where(Job.id == job_id, Job.status.in_(("queued", "running")))
    if worker is not None:
        stmt = stmt.where(Job.claimed_by == worker)
    with db.connect() as conn:
        return bool(conn.execute(stmt.values(**values)).rowcount)


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


def _running_exclusive(kind: Any, project_id: Any) -> Any:
    """A job of ``kind`` runs for ``project_id`` (from the partial index of running jobs); an
    alias, so that ``kind`` and ``project_id`` may be the outer query's columns."""
    running = _JOBS.alias("running")
    return exists(
        select(running.c.id).where(
            running.c.project_id == project_id, running.c.kind == kind, running.c.status == "running"
        )
    )


def _claim(session: Session, db: Database, job: Job, worker: str, exclusive: frozenset[str]) -> bool:
    """Mark ``job`` (selected as queued, locked on PostgreSQL) claimed by ``worker``; False when
    its kind is exclusive and one of that kind already runs for the project."""
    if job.kind in exclusive and job.project_id is not None:
        if db.dialect == "postgresql":
            # Two workers claiming two queued refreshes of one project at once would both see
            # none running; the advisory lock makes the second wait for the first's commit.
            session.execute(select(func.pg_advisory_xact_lock(_ADVISORY_NAMESPACE, job.project_id)))
        if session.scalar(select(_running_exclusive(job.kind, job.project_id))):
            return False
    now = datetime.now(UTC)
    job.status = "running"
    job.claimed_by = worker
    job.heartbeat_at = now
    job.started_at = now
    job.attempts = (job.attempts or 0) + 1
    session.flush()
    session.expunge(job)
    return True


#: First key of the PostgreSQL advisory locks that serialise claims of exclusive jobs per project.
_ADVISORY_NAMESPACE = 0x1AB3


def _any_queued(db: Database, kinds: tuple[str, ...], project_id: int | None) -> bool:
    stmt = select(Job.id).where(Job.status == "queued", Job.kind.in_(kinds))
    if project_id is not None:
        stmt = stmt.where(Job.project_id == project_id)
    with db.session() as session:
        return session.scalar(stmt.limit(1)) is not None


def claim_job(
    db: Database,
    kinds: tuple[str, ...],
    project_id: int | None = None,
    *,
    worker: str | None = None,
    exclusive: frozenset[str] = frozenset(),
    rest: Mapping[str, float] | None = None,
) -> Job | None:
    """Claim the oldest queued job of ``kinds`` for ``worker``; several workers never take the
    same one (PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: one writer at a time). A job of an
    ``exclusive`` kind waits while one of its kind runs for its project (one consensus refresh
    per project at a time). A kind in ``rest`` (kind -> ratio) waits, per project, until ratio
    times its last run's duration has passed since that run finished."""
    if not _any_queued(db, kinds, project_id):
        return None  # the common idle case costs a read, not SQLite's write lock
    resting = resting_projects(db, {k: r for k, r in (rest or {}).items() if k in kinds}, project_id)
    with db.session(immediate=True) as session:
        stmt = select(Job).where(Job.status == "queued", Job.kind.in_(kinds)).order_by(Job.id).limit(1)
        for kind, projects in resting.items():
            stmt = stmt.where(~and_(Job.kind == kind, Job.project_id.in_(projects)))
        if exclusive:
            stmt = stmt.where(
                or_(Job.kind.not_in(tuple(exclusive)), ~_running_exclusive(Job.kind, Job.project_id))
            )
        if project_id is not None:
            stmt = stmt.where(Job.project_id == project_id)
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=Job)
        job = session.scalar(stmt)
        if job is None or not _claim(session, db, job, worker or worker_name(), exclusive):
            return None
        return job


def resting_projects(
    db: Database, rest: Mapping[str, float], project_id: int | None = None, *, now: datetime | None = None
) -> dict[str, list[int]]:
    """Per kind in ``rest``, the projects with a queued job of that kind whose last finished
    run of it ended less than ``ratio x`` its duration ago (read only when such jobs are queued:
    a handful of projects, one indexed lookup each)."""
    if not rest:
        return {}
    now = now or datetime.now(UTC)
    found: dict[str, list[int]] = {}
    with db.session() as session:
        for kind, ratio in rest.items():
            waiting = select(Job.project_id).where(Job.status == "queued", Job.kind == kind)
            if project_id is not None:
                waiting = waiting.where(Job.project_id == project_id)
            for pid in session.scalars(waiting.distinct()):
                if pid is None:
                    continue
                last = session.execute(
                    select(Job.started_at, Job.finished_at)
                    .where(
                        Job.project_id == pid,
                        Job.kind == kind,
                        Job.status.in_(("done", "failed")),
                        Job.started_at.is_not(None),
                        Job.finished_at.is_not(None),
                    )
                    .order_by(Job.id.desc())
                    .limit(1)
                ).first()
                if last is not None and now < last.finished_at + ratio * (last.finished_at - last.started_at):
                    found.setdefault(kind, []).append(int(pid))
    return found


def claim_job_by_id(
    db: Database, job_id: int, *, worker: str | None = None, exclusive: frozenset[str] = frozenset()
) -> Job | None:
    """Claim one specific queued job (of several claimants exactly one wins); None when it is
    not queued any more, or its kind is exclusive and one of that kind runs for its project."""
    with db.session(immediate=True) as session:
        stmt = select(Job).where(Job.id == job_id, Job.status == "queued")
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        job = session.scalar(stmt)
        if job is None or not _claim(session, db, job, worker or worker_name(), exclusive):
            return None
        return job


def running_like(db: Database, job: Job) -> int | None:
    """A running job of ``job``'s kind for its project (what an exclusive job waits for)."""
    if job.project_id is None:
        return None
    with db.session() as session:
        found = session.scalar(
            select(Job.id).where(
                Job.project_id == job.project_id, Job.kind == job.kind, Job.status == "running"
            )
        )
        return None if found is None else int(found)


def heartbeat(db: Database, job_ids: list[int], worker: str) -> int:
    """Say that ``worker`` still runs ``job_ids``; returns how many claims it still holds. On
    SQLite it gives up at once when another writer holds the lock (the next beat tries again)."""
    if not job_ids:
        return 0
    stmt = (
        update(_JOBS)
        .where(_JOBS.c.id.in_(job_ids), _JOBS.c.status == "running", _JOBS.c.claimed_by == worker)
        .values(heartbeat_at=datetime.now(UTC))
    )
    with db.nowait(), db.connect(immediate=True) as conn:
        return int(conn.execute(stmt).rowcount)


@dataclass(frozen=True)
class Reaped:
    """A running job whose worker stopped answering: ``status`` is what it became."""

    id: int
    kind: str
    status: str
    params: dict[str, Any] | None


def reap_stale_jobs(
    db: Database,
    *,
    stale_after: float,
    max_attempts: Callable[[str], int],
    liveness: Callable[[int, str | None], bool | None],
    now: datetime | None = None,
) -> list[Reaped]:
    """Queue again (or fail, once ``max_attempts(kind)`` claims were used) every running job
    whose worker is gone: ``liveness(job id, claimed_by)`` says so (False), or cannot tell (None)
    and the heartbeat is older than ``stale_after`` seconds. A job claimed before heartbeats
    existed (no claimant) is taken for lost."""
    now = now or datetime.now(UTC)
    limit = now - timedelta(seconds=stale_after)
    reaped: list[Reaped] = []

    def lost(job: Job) -> bool:
        alive = liveness(job.id, job.claimed_by)
        beat = job.heartbeat_at
        return not (alive or (alive is None and beat is not None and beat >= limit))

    with db.session() as session:  # a read first: usually every claim is alive
        if not any(lost(job) for job in session.scalars(select(Job).where(Job.status == "running"))):
            return reaped
    with db.session(immediate=True) as session:
        stmt = select(Job).where(Job.status == "running")
        if db.dialect == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)
        for job in session.scalars(stmt.order_by(Job.id)):
            if not lost(job):
                continue
            alive = liveness(job.id, job.claimed_by)
            claimant = job.claimed_by or "an older version's worker"
            why = "is gone" if alive is False else f"sent no heartbeat for {stale_after:.0f} s"
            if (job.attempts or 0) >= max_attempts(job.kind):
                job.status = "failed"
                job.finished_at = now
                job.error = (
                    f"worker {claimant} {why} on attempt {job.attempts} of {max_attempts(job.kind)}; "
                    "not tried again"
                )
            else:
                job.status = "queued"
                job.started_at = None
            job.claimed_by = None
            job.heartbeat_at = None
            reaped.append(Reaped(job.id, job.kind, job.status, job.params))
    return reaped


def get_job(db: Database, job_id: int) -> Job:
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}", field="job_id")
        session.expunge(job)
        return with_live_progress(job)


def schedule_export(db: Database, project_id: int, params: dict[str, Any], user: User) -> int:
    """Queue an export job (never debounced: each request wants its own file)."""
    return submit_job(db, "export", project_id=project_id, params=params, user=user)
