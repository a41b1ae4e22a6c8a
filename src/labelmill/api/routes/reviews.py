from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool

from labelmill.api.deps import DbDep, SessionDep, UserDep
from labelmill.api.models import (
    Id,
    Page,
    ReviewAnnotationOut,
    ReviewIn,
    ReviewOut,
    ReviewTaskOut,
    TaskItemOut,
)
from labelmill.services import projects as project_service
from labelmill.services import review as review_service

router = APIRouter(tags=["reviews"])


@router.post(
    "/projects/{project_id}/reviews/next",
    response_model=ReviewTaskOut,
    responses={204: {"description": "Nothing to review"}},
    summary="The next annotation to review (reviewers and managers)",
)
async def next_review(
    project_id: Id,
    user: UserDep,
    db: DbDep,
    mode: Literal["drawn", "low_agreement"] = Query(
        "drawn",
        description="drawn: those drawn at the project's review_rate; low_agreement: those that "
        "disagree with a consensus below the target confidence",
    ),
) -> Any:
    found = await run_in_threadpool(review_service.next_review, db, project_id, user, mode=mode)
    if found is None:
        return Response(status_code=204)
    a, item = found.annotation, found.item
    return ReviewTaskOut(
        annotation=ReviewAnnotationOut.model_validate(a, from_attributes=True),
        item=TaskItemOut(id=item.id, data=item.data, meta=item.meta),
    )


@router.post(
    "/annotations/{annotation_id}/review",
    response_model=ReviewOut,
    status_code=201,
    summary="Accept, reject (with a comment) or correct an annotation",
)
async def review(annotation_id: Id, body: ReviewIn, user: UserDep, db: DbDep) -> Any:
    row = await run_in_threadpool(
        lambda: review_service.review(
            db, annotation_id, user, body.action, comment=body.comment, value=body.value
        )
    )
    return ReviewOut.model_validate(row, from_attributes=True)


@router.get(
    "/projects/{project_id}/reviews", response_model=Page[ReviewOut], summary="Recent reviews (managers)"
)
def list_reviews(
    project_id: Id, user: UserDep, session: SessionDep, limit: int = Query(100, ge=1, le=500)
) -> Page[ReviewOut]:
    project_service.project_for(session, user, project_id, project_service.MANAGE)
    rows = review_service.list_reviews(session, project_id, limit=limit)
    return Page[ReviewOut](results=[ReviewOut.model_validate(r, from_attributes=True) for r in rows])
