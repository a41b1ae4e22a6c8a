from __future__ import annotations

from fastapi import APIRouter, Query

from labelmill.api.deps import SessionDep, UserDep
from labelmill.api.models import Id, IdQuery, JobOut, Page
from labelmill.services import jobs as job_service
from labelmill.store.engine import Database
from labelmill.store.models import Job

router = APIRouter(tags=["jobs"])


def job_out(db: Database, job_id: int) -> JobOut:
    """A job as it stands now, read in a fresh transaction (routes that start or run a job
    answer with it after their own request transaction has ended)."""
    with db.session() as session:
        return JobOut.model_validate(session.get(Job, job_id), from_attributes=True)


@router.get("/jobs", response_model=Page[JobOut], summary="Jobs the caller started or manages, newest first")
def list_jobs(
    user: UserDep,
    session: SessionDep,
    limit: int = Query(50, ge=1, le=500),
    cursor: str | None = None,
    project_id: IdQuery = None,
) -> Page[JobOut]:
    before = int(cursor) if cursor and cursor.isdigit() else None
    rows = job_service.visible_jobs(session, user, limit=limit, cursor=before, project_id=project_id)
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return Page[JobOut](
        results=[JobOut.model_validate(j, from_attributes=True) for j in rows], next_cursor=next_cursor
    )


@router.get("/jobs/{job_id}", response_model=JobOut, summary="One job with its progress and result")
def get_job(job_id: Id, user: UserDep, session: SessionDep) -> JobOut:
    return JobOut.model_validate(job_service.get_visible_job(session, user, job_id), from_attributes=True)
