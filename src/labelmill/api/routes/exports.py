from __future__ import annotations

import json
from collections.abc import Iterator

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from labelmill.api.deps import DbDep, SessionDep, UserDep
from labelmill.api.models import Id
from labelmill.services import projects as project_service
from labelmill.services.export import iter_export_rows

router = APIRouter(tags=["exports"])

EXPORT_FORMATS = ("jsonl",)


@router.get(
    "/projects/{project_id}/export",
    summary="Download the project as JSONL (streamed)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "one item per line"}},
)
def export(
    project_id: Id,
    user: UserDep,
    session: SessionDep,
    db: DbDep,
    format: str = Query("jsonl", description="Export format: " + ", ".join(EXPORT_FORMATS)),
) -> StreamingResponse:
    project = project_service.project_for(session, user, project_id, project_service.MANAGE)
    if format not in EXPORT_FORMATS:
        from labelmill.services.errors import Invalid

        raise Invalid(
            f"unknown export format {format!r} (known: {', '.join(EXPORT_FORMATS)})", field="format"
        )

    def lines() -> Iterator[bytes]:
        for row in iter_export_rows(db, project_id):
            yield (json.dumps(row, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode()

    filename = f"{project.name}.jsonl".replace('"', "")
    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
