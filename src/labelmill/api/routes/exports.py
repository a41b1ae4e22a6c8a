"""Exports: download now (``GET .../export``), or as a job for large projects
(``POST .../exports``, poll ``GET /jobs/{id}``, then ``GET /jobs/{id}/download``)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from labelmill.api.deps import DbDep, MediaDep, SessionDep, UserDep
from labelmill.api.models import ExportIn, Id, JobOut
from labelmill.api.routes.jobs import ExecutorDep, job_out
from labelmill.formats.exporting import EXPORTERS, ExportOptions
from labelmill.jobs.freshness import ensure_consensus_fresh
from labelmill.services import jobs as job_service
from labelmill.services import projects as project_service
from labelmill.services.errors import Forbidden, Invalid, NotFound
from labelmill.services.export import export_formats, export_project, iter_export_rows
from labelmill.services.items import ItemFilter

router = APIRouter(tags=["exports"])


def _check_format(fmt: str) -> None:
    if fmt not in EXPORTERS:
        raise Invalid(f"unknown export format {fmt!r} (known: {', '.join(EXPORTERS)})", field="format")


@router.get("/export-formats", summary="Export formats and what each writes")
def formats(_: UserDep) -> dict[str, str]:
    return export_formats()


@router.get(
    "/projects/{project_id}/export",
    summary="Download the project now (JSONL streams; other formats are written, then sent; folders zipped)",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "application/octet-stream": {}}}},
)
async def export(
    project_id: Id,
    user: UserDep,
    session: SessionDep,
    db: DbDep,
    media: MediaDep,
    executor: ExecutorDep,
    format: str = Query(
        "jsonl",
        min_length=1,
        description="Export format: " + ", ".join(EXPORTERS),
        json_schema_extra={"enum": list(EXPORTERS)},
    ),
    labels: Literal["consensus", "annotations"] | None = Query(
        None,
        description="consensus: one label per item; annotations: every label. Default: consensus "
        "(jsonl: both, the lossless line that imports back). In jsonl, consensus empties each "
        "line's annotations and annotations empties its consensus.",
    ),
    include_predictions: bool | None = Query(
        None, description="Also export predictions. Default: false (jsonl: true, lossless)."
    ),
    include_auto: bool = True,
    is_gold: bool | None = None,
    has_consensus: bool | None = None,
) -> Any:
    project = project_service.project_for(session, user, project_id, project_service.MANAGE)
    _check_format(format)
    session.commit()
    # Labels stored before this export began are in it: their consensus is refreshed first
    # (by the app's executor), or the export is refused (409).
    await run_in_threadpool(ensure_consensus_fresh, db, project_id, executor)
    filt = ItemFilter(is_gold=is_gold, has_consensus=has_consensus)
    if format == "jsonl":
        keep = _jsonl_line(labels, include_predictions, include_auto)

        def lines() -> Iterator[bytes]:
            for row in iter_export_rows(db, project_id, filt):
                yield (
                    json.dumps(keep(row), ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
                ).encode()

        return StreamingResponse(
            lines(),
            media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="{_safe(project.name)}.jsonl"'},
        )
    options = ExportOptions(
        labels=labels or "consensus",
        include_predictions=bool(include_predictions),
        include_auto=include_auto,
    )
    tmp = Path(tempfile.mkdtemp(prefix="labelmill-export-"))
    target = tmp / f"{_safe(project.name)}-{format}"
    try:
        await run_in_threadpool(
            export_project, db, project_id, format, target, options=options, filt=filt, media=media
        )
    except ValueError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise Invalid(str(exc), field="format") from None
    if target.is_dir():
        target = Path(shutil.make_archive(str(target), "zip", root_dir=target))
    return FileResponse(
        target, filename=target.name, background=BackgroundTask(shutil.rmtree, tmp, ignore_errors=True)
    )


@router.post(
    "/projects/{project_id}/exports",
    response_model=JobOut,
    status_code=202,
    summary="Start an export job (for large projects); poll the job, then download its file",
)
def start_export(
    project_id: Id,
    body: ExportIn,
    request: Request,
    user: UserDep,
    session: SessionDep,
    db: DbDep,
    executor: ExecutorDep,
) -> Any:
    project_service.project_for(session, user, project_id, project_service.MANAGE)
    _check_format(body.format)
    settings = request.app.state.settings
    params = {
        "format": body.format,
        "options": {
            "labels": body.labels,
            "include_predictions": body.include_predictions,
            "include_auto": body.include_auto,
        },
        "filter": {
            "is_gold": body.is_gold,
            "has_consensus": body.has_consensus,
            "min_annotations": body.min_annotations,
            "meta": sorted(body.slice.items()),
        },
        "out_dir": str(Path(settings.data_dir) / "exports"),
        "media": request.app.state.media.url,  # a URL, never a path: open_media_store reopens it
    }
    session.commit()
    job_id = job_service.submit_job(db, "export", project_id=project_id, params=params, user=user)
    executor.submit(job_id)  # the job refreshes the consensus first, then writes the file
    return job_out(db, job_id)


@router.get(
    "/jobs/{job_id}/download",
    response_class=FileResponse,
    response_model=None,
    summary="The file an export job wrote",
)
def download(job_id: Id, user: UserDep, session: SessionDep) -> FileResponse:
    job = job_service.get_visible_job(session, user, job_id)
    if job.kind != "export" or job.project_id is None:
        raise NotFound(f"job {job_id} has no file to download (it is a {job.kind} job)", field="job_id")
    # The file holds the project's data: only someone who may export it now gets it (a creator
    # who has lost the manager role since does not).
    try:
        project_service.project_for(session, user, job.project_id, project_service.MANAGE)
    except (Forbidden, NotFound):
        raise Forbidden(
            f"downloading export job {job_id} needs the manager role in project {job.project_id}",
            field="job_id",
        ) from None
    path = Path((job.result or {}).get("file", ""))
    if job.status != "done" or not path.is_file():
        raise NotFound(f"job {job_id} has no file to download (status {job.status})", field="job_id")
    return FileResponse(path, filename=path.name)


def _jsonl_line(
    labels: str | None, include_predictions: bool | None, include_auto: bool
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """What the download's options keep of each JSONL line. The line keeps its five keys (the
    shape users and importers rely on); an option left out keeps that part, so the default
    download stays lossless and imports back unchanged."""

    def keep(row: dict[str, Any]) -> dict[str, Any]:
        consensus = row.get("consensus")
        if labels == "consensus":
            row = {**row, "annotations": []}
        elif labels == "annotations":
            row = {**row, "consensus": None}
        if include_predictions is False:
            row = {**row, "predictions": []}
        if not include_auto and consensus and consensus.get("auto") and row.get("consensus"):
            row = {**row, "consensus": None}
        return row

    return keep


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "export"
