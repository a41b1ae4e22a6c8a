"""The annotator loop: next task, submit, skip, edit. Annotators only ever see their own tasks
and annotations, and never learn which items are gold."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from labelmill.api.deps import (
    CredentialsDep,
    DbDep,
    SessionDep,
    UserDep,
    current_user,
    get_db,
    get_hot_path,
)
from labelmill.api.models import (
    Id,
    IdQuery,
    MyAnnotationOut,
    MyTaskOut,
    NextTaskOut,
    Page,
    PredictionOut,
    SubmitIn,
    TaskItemOut,
    TaskOut,
)
from labelmill.api.threads import run_writer
from labelmill.services import queue
from labelmill.services.errors import NotFound
from labelmill.services.queue import pg as queue_pg
from labelmill.services.queue import sqlite as queue_sqlite
from labelmill.services.queue.rules import MAX_IDEMPOTENCY_KEY
from labelmill.services.types import Annotation, Database, HotPath, SqliteHotPath

router = APIRouter(tags=["tasks"])


async def _loop_context(request: Request) -> tuple[Database, HotPath | SqliteHotPath | None]:
    """The annotator loop's database and hot path, read directly: two more FastAPI
    dependencies would cost more than what they do here. (The credentials stay a dependency,
    so a request without any gets 401 before its body is looked at.)"""
    return await get_db(request), await get_hot_path(request)


def json_response(
    model: BaseModel, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """The annotator loop's answers, serialised by pydantic in one step: an already valid model
    needs none of FastAPI's re-validation and re-encoding (the routes still declare their
    ``response_model`` for the OpenAPI)."""
    return Response(
        model.model_dump_json(), status_code=status_code, headers=headers, media_type="application/json"
    )


def task_out(lease: queue.Lease) -> TaskOut:
    task, item = lease.task, lease.item
    return TaskOut(
        id=task.id,
        project_id=task.project_id,
        state=task.state,
        item=TaskItemOut(id=item.id, data=item.data, meta=item.meta),
        predictions=[
            PredictionOut(value=p.value, score=p.score, model_version=p.model_version)
            for p in lease.predictions
        ],
        leased_at=task.leased_at,
        expires_at=task.expires_at,
    )


def annotation_out(annotation: Annotation | queue.SubmittedAnnotation) -> MyAnnotationOut:
    return MyAnnotationOut.model_validate(annotation, from_attributes=True)


@router.post(
    "/projects/{project_id}/tasks/next",
    response_model=NextTaskOut,
    responses={204: {"description": "Nothing is left for this annotator"}},
    summary="Lease the caller's next task (or get their live lease back)",
)
async def next_task(project_id: Id, creds: CredentialsDep, request: Request) -> Any:
    db, hot = await _loop_context(request)
    answer: queue.Lease | queue.FullPath | None
    if isinstance(hot, HotPath):
        answer = await queue_pg.next_task(hot, project_id, creds.token_hash, creds.kind)
    elif hot is not None:
        answer = queue_sqlite.next_task(hot, project_id, creds.token_hash, creds.kind)
    else:  # an app served without its lifespan (no hot path opened)
        answer = queue.FullPath(await current_user(db, creds), queue.gold_draw())
    if isinstance(answer, queue.FullPath):  # not the common case: the full implementation
        slow = answer
        lease = await run_writer(db, lambda: queue.next_task(db, project_id, slow.user, draw=slow.draw))
    else:
        lease = answer
    if lease is None:
        return Response(status_code=204)
    return json_response(NextTaskOut(task=task_out(lease)))


@router.post(
    "/tasks/{task_id}/submit",
    response_model=MyAnnotationOut,
    status_code=201,
    summary="Submit the task's annotation (idempotent under an Idempotency-Key header)",
)
async def submit(
    task_id: Id,
    body: SubmitIn,
    creds: CredentialsDep,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=MAX_IDEMPOTENCY_KEY,
            description="Any 1-200 characters; a retry with the same key returns the first annotation",
        ),
    ] = None,
) -> Any:
    db, hot = await _loop_context(request)
    key = idempotency_key
    answer: tuple[queue.SubmittedAnnotation, bool] | queue.FullPath
    if isinstance(hot, HotPath):
        answer = await queue_pg.submit(
            hot, task_id, creds.token_hash, creds.kind, body.value, idempotency_key=key
        )
    elif hot is not None:
        answer = queue_sqlite.submit(
            hot, task_id, creds.token_hash, creds.kind, body.value, idempotency_key=key
        )
    else:
        answer = queue.FullPath(await current_user(db, creds))
    if isinstance(answer, queue.FullPath):  # not the common case: the full implementation
        user = answer.user
        answer = await run_writer(
            db, lambda: queue.submit(db, task_id, user, body.value, idempotency_key=key)
        )
    annotation, created = answer
    replayed = {} if created else {"Idempotent-Replayed": "true"}
    return json_response(annotation_out(annotation), status_code=201, headers=replayed)


@router.post(
    "/tasks/{task_id}/skip", response_model=MyTaskOut, summary="Skip the task; the item goes to someone else"
)
async def skip(task_id: Id, user: UserDep, db: DbDep) -> Any:
    task = await run_in_threadpool(queue.skip, db, task_id, user)
    return MyTaskOut.model_validate(task, from_attributes=True)


@router.get("/tasks", response_model=Page[MyTaskOut], summary="The caller's own tasks, newest first")
def my_tasks(
    user: UserDep,
    session: SessionDep,
    project_id: IdQuery = None,
    state: str | None = Query(None, pattern="^(leased|submitted|skipped|expired)$"),
    limit: int = Query(100, ge=1, le=500),
    cursor: str | None = Query(None, pattern=r"^\d{1,18}$"),
) -> Page[MyTaskOut]:
    rows = queue.my_tasks(
        session, project_id, user, state=state, limit=limit, before=int(cursor) if cursor else None
    )
    next_cursor = str(rows[-1].id) if len(rows) == limit else None
    return Page[MyTaskOut](
        results=[MyTaskOut.model_validate(t, from_attributes=True) for t in rows], next_cursor=next_cursor
    )


@router.get(
    "/annotations/{annotation_id}", response_model=MyAnnotationOut, summary="One of the caller's annotations"
)
def get_annotation(annotation_id: Id, user: UserDep, session: SessionDep) -> MyAnnotationOut:
    annotation = session.get(Annotation, annotation_id)
    if annotation is None or annotation.annotator_id != user.id:
        raise NotFound(f"no annotation {annotation_id}", field="annotation_id")
    return annotation_out(annotation)


@router.patch(
    "/annotations/{annotation_id}",
    response_model=MyAnnotationOut,
    summary="Change the caller's own annotation until it is reviewed",
)
async def edit_annotation(annotation_id: Id, body: SubmitIn, user: UserDep, db: DbDep) -> Any:
    annotation = await run_in_threadpool(queue.edit, db, annotation_id, user, body.value)
    return annotation_out(annotation)
