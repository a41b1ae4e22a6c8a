from __future__ import annotations

import mimetypes

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse, StreamingResponse

from labelmill.api.deps import MediaDep, SessionDep, UserDep
from labelmill.api.models import AnnotationOut, CreatedOut, Id, ItemDetailOut, ItemOut, Page, PredictionsIn
from labelmill.services import items as item_service
from labelmill.services import predictions as prediction_service
from labelmill.services import projects as project_service
from labelmill.services.errors import NotFound

router = APIRouter(tags=["items"])


@router.get(
    "/projects/{project_id}/items",
    response_model=Page[ItemOut],
    summary="Items, oldest first, one page at a time (keyset: pass next_cursor back as cursor)",
)
def list_items(
    project_id: Id,
    user: UserDep,
    session: SessionDep,
    limit: int = Query(100, ge=1, le=1000),
    cursor: str | None = None,
    is_gold: bool | None = Query(None, description="Managers only."),
    has_consensus: bool | None = None,
    min_annotations: int | None = Query(None, ge=0, le=1_000_000),
    max_annotations: int | None = Query(None, ge=0, le=1_000_000),
    external_id: str | None = None,
) -> Page[ItemOut]:
    project_service.project_for(session, user, project_id, project_service.READ)
    managers = project_service.role_in(session, user, project_id) == "manager"
    filt = item_service.ItemFilter(
        is_gold=is_gold if managers else None,
        has_consensus=has_consensus,
        min_annotations=min_annotations,
        max_annotations=max_annotations,
        external_id=external_id,
    )
    rows, next_cursor = item_service.list_items(session, project_id, limit=limit, cursor=cursor, filt=filt)
    return Page[ItemOut](
        results=[ItemOut(**item_service.item_summary(i, with_gold=managers)) for i in rows],
        next_cursor=next_cursor,
    )


@router.get(
    "/projects/{project_id}/items/{item_id}",
    response_model=ItemDetailOut,
    summary="One item with its annotations",
)
def get_item(project_id: Id, item_id: Id, user: UserDep, session: SessionDep) -> ItemDetailOut:
    project_service.project_for(session, user, project_id, project_service.READ)
    managers = project_service.role_in(session, user, project_id) == "manager"
    item = item_service.get_item(session, project_id, item_id)
    anns = [
        AnnotationOut.model_validate(a, from_attributes=True)
        for a in item_service.item_annotations(session, item.id)
    ]
    return ItemDetailOut(**item_service.item_summary(item, with_gold=managers), annotations=anns)


@router.delete(
    "/projects/{project_id}/items/{item_id}", status_code=204, summary="Delete an item and its labels"
)
def delete_item(project_id: Id, item_id: Id, user: UserDep, session: SessionDep) -> Response:
    project_service.project_for(session, user, project_id, project_service.MANAGE)
    item_service.delete_item(session, project_id, item_id)
    return Response(status_code=204)


@router.get(
    "/media/{project_id}/{name:path}",
    summary="A media file of a project (members only)",
    response_class=FileResponse,
    response_model=None,
)
def get_media(project_id: Id, name: str, user: UserDep, session: SessionDep, media: MediaDep) -> Response:
    project_service.project_for(session, user, project_id)
    try:
        # resolve() keeps the name inside this project's media, whatever the name holds.
        key = media.resolve(name, project_id)
        found = media.exists(key)
    except ValueError:
        found = False
    if not found:
        raise NotFound(f"no media file {name!r}", field="name")
    local = media.local_path(key)
    if local is not None:
        return FileResponse(local)
    return StreamingResponse(
        media.open(key), media_type=mimetypes.guess_type(name)[0] or "application/octet-stream"
    )


@router.post(
    "/projects/{project_id}/predictions",
    response_model=CreatedOut,
    status_code=201,
    summary="Add model predictions to items by external_id (all or nothing)",
)
def add_predictions(project_id: Id, body: PredictionsIn, user: UserDep, session: SessionDep) -> CreatedOut:
    # In the request's own transaction, in a worker thread: its lock wait is bounded (503).
    project_service.project_for(session, user, project_id, project_service.MANAGE)
    rows = [p.model_dump() for p in body.predictions]
    return CreatedOut(created=prediction_service.add_predictions_in(session, project_id, rows))
