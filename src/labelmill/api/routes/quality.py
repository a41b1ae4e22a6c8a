from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from labelmill.api.deps import DbDep, SessionDep, UserDep
from labelmill.api.models import Id, JobOut
from labelmill.api.routes.jobs import ExecutorDep, job_out
from labelmill.jobs.executor import submit_and_wait
from labelmill.services import jobs as job_service
from labelmill.services import projects as project_service
from labelmill.services.stats import project_stats

router = APIRouter(tags=["quality"])


@router.get(
    "/projects/{project_id}/stats", summary="Progress, consensus quality and per-annotator statistics"
)
def stats(project_id: Id, user: UserDep, session: SessionDep) -> dict[str, Any]:
    project = project_service.project_for(session, user, project_id, project_service.READ)
    return project_stats(session, project)


@router.post(
    "/projects/{project_id}/consensus/refresh",
    response_model=JobOut,
    status_code=201,
    summary="Recompute consensus, confidence and annotator skill now (normally automatic)",
)
async def refresh(
    project_id: Id, user: UserDep, session: SessionDep, db: DbDep, executor: ExecutorDep
) -> Any:
    project_service.project_for(session, user, project_id, project_service.MANAGE)
    session.commit()
    # (a write transaction: in a worker thread, never waiting for a lock on the event loop)
    job_id = await run_in_threadpool(job_service.schedule_job, db, "consensus", project_id)
    await run_in_threadpool(submit_and_wait, db, executor, job_id, 600.0)  # the app's executor runs it
    return job_out(db, job_id)
