from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from labelmill.api.deps import SessionDep, UserDep
from labelmill.api.models import MAX_ID, Id, IdQuery, JobOut, Page
from labelmill.jobs.executor import Executor
from labelmill.services import jobs as job_service
from labelmill.services.errors import Invalid
from labelmill.services.types import Database

router = APIRouter(tags=["jobs"])


async def get_executor(request: Request) -> Executor:
    """Where this app's jobs run (``app.state.executor``): routes queue a job and submit it."""
    executor: Executor = request.app.state.executor
    return executor


ExecutorDep = Annotated[Executor, Depends(get_executor)]


def job_out(db: Database, job_id: int) -> JobOut:
    """A job as it stands now, read in a fresh transaction (routes that queue a job answer with
    it after their own request transaction has ended)."""
    return JobOut.model_validate(job_service.get_job(db, job_id), from_attributes=True)


def parse_cursor(cursor: str | None) -> int | None:
    """A jobs cursor is the decimal id this server handed out as ``next_cursor``; anything else
    (other digits than ASCII ones, a number no id can reach) is refused, never looked up."""
    if cursor is None or cursor == "":
        return None
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > len(str(MAX_ID)) or int(cursor) > MAX_ID:
        raise Invalid(f"cursor {cursor[:40]!r} is not a cursor this server handed out", field="cursor")
    return int(cursor)


@router.get("/jobs", response_model=Page[JobOut], summary="Jobs the caller started or manages, newest first")
def list_jobs(
    user: UserDep,
    session: SessionDep,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = Query(None, description="`next_cursor` of the previous page", max_length=32),
    project_id: IdQuery = None,
) -> Page[JobOut]:
    before = parse_cursor(cursor)
    rows = job_service.visible_jobs(session, user, limit=limit, cursor=before, project_id=project_id)
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return Page[JobOut](
        results=[JobOut.model_validate(j, from_attributes=True) for j in rows], next_cursor=next_cursor
    )


@router.get("/jobs/{job_id}", response_model=JobOut, summary="One job with its progress and result")
def get_job(job_id: Id, user: UserDep, session: SessionDep) -> JobOut:
    return JobOut.model_validate(job_service.get_visible_job(session, user, job_id), from_attributes=True)
