"""Exports never miss labels stored before they started.

Consensus is refreshed by a debounced job after labels arrive, so between a submit and that job
the stored consensus lags. An export (CLI, API download, export job, SDK) first brings it up to
date: the consensus is fresh when no refresh is queued or running for the project and the last
one did not fail. Otherwise a refresh is queued and run (by the given executor) and the export
waits for it; if it fails, or does not finish in time, the export is refused with
:class:`StaleConsensus` (409) rather than written without those labels.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select

from labelmill.jobs.executor import Executor, reap, submit_and_wait, wait_for_job
from labelmill.services import jobs as job_service
from labelmill.services.errors import Conflict
from labelmill.store.engine import Database
from labelmill.store.models import Job

#: How long an export waits for the consensus to be brought up to date before it refuses.
FRESHNESS_TIMEOUT = 600.0


class StaleConsensus(Conflict):
    """The consensus could not be brought up to date, so an export would miss labels."""


def pending_refresh(db: Database, project_id: int, *, queued_through: int | None = None) -> Job | None:
    """The project's queued or running consensus refresh, if any (running first); with
    ``queued_through``, only one whose id is at most that (queued before an export started)."""
    with db.session() as session:
        stmt = select(Job).where(
            Job.project_id == project_id,
            Job.kind == "consensus",
            Job.status.in_(("queued", "running")),
        )
        if queued_through is not None:
            stmt = stmt.where(Job.id <= queued_through)
        # 'running' sorts after 'queued': descending puts a running refresh first
        job = session.scalar(stmt.order_by(Job.status.desc(), Job.id).limit(1))
        if job is not None:
            session.expunge(job)
        return job


def last_refresh(db: Database, project_id: int) -> Job | None:
    """The project's newest consensus refresh that finished (done or failed)."""
    with db.session() as session:
        job = session.scalar(
            select(Job)
            .where(Job.project_id == project_id, Job.kind == "consensus", Job.status.in_(("done", "failed")))
            .order_by(Job.id.desc())
            .limit(1)
        )
        if job is not None:
            session.expunge(job)
        return job


def is_fresh(db: Database, project_id: int, queued_through: int | None = None) -> bool:
    """Whether the stored consensus counts every label stored so far (or before the job with id
    ``queued_through`` was queued): every change that calls for a refresh queues one in its own
    transaction, so the consensus lags exactly while a refresh is queued or running, or when the
    newest refresh failed."""
    if pending_refresh(db, project_id, queued_through=queued_through) is not None:
        return False
    last = last_refresh(db, project_id)
    return last is None or last.status == "done"


def _latest_job(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.max(Job.id))) or 0)


def ensure_consensus_fresh(
    db: Database, project_id: int, executor: Executor, *, timeout: float = FRESHNESS_TIMEOUT
) -> None:
    """Bring the project's consensus up to date (running a refresh through ``executor`` when it
    lags), or raise :class:`StaleConsensus` naming why."""
    deadline = time.monotonic() + timeout
    # Labels arriving while the export runs do not hold it up: only refreshes queued before it
    # began must have run. A refresh left running by a worker that died is queued again first.
    since = _latest_job(db)
    reap(db)
    while not is_fresh(db, project_id, since):
        job = pending_refresh(db, project_id)
        left = max(deadline - time.monotonic(), 0.0)
        if job is not None and job.status == "running":
            done = wait_for_job(db, job.id, left)  # running elsewhere: wait for it, look again
        else:  # queued (or the last refresh failed: try once more)
            job_id = job.id if job is not None else job_service.schedule_job(db, "consensus", project_id)
            done = submit_and_wait(db, executor, job_id, left)
        if done.status == "failed":
            raise StaleConsensus(
                f"the consensus of project {project_id} could not be brought up to date "
                f"(refresh job {done.id} failed: {done.error}); export refused, so that it "
                "cannot miss stored labels",
                field="project_id",
            )
        if done.status != "done" and time.monotonic() >= deadline:
            raise StaleConsensus(
                f"the consensus of project {project_id} is being refreshed (job {done.id}, "
                f"{done.status}) and was not up to date within {timeout:.0f} s; export refused, "
                "try again (is a worker running?)",
                field="project_id",
            )
