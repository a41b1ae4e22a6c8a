"""Imports: the upload is kept under ``<data dir>/uploads/<job id>`` and imported by an import
job, all or nothing. The route only stores the files and queues the job; by default it waits
for the job and answers like the import itself (201, or its 422 naming file, line and field)."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from starlette.concurrency import run_in_threadpool

from labelmill.api.deps import DbDep, MediaDep, SessionDep, UserDep
from labelmill.api.models import Id, JobOut
from labelmill.api.routes.jobs import ExecutorDep, job_out
from labelmill.formats.columns import parse_column_options
from labelmill.formats.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from labelmill.jobs.errors import raise_job_error
from labelmill.jobs.executor import FINISHED, await_job
from labelmill.services import jobs as job_service
from labelmill.services import projects as project_service
from labelmill.services.errors import Invalid
from labelmill.services.types import Database, User, safe_media_name

router = APIRouter(tags=["imports"])

#: How long a waiting import request waits for its job before answering 202 with the job.
IMPORT_WAIT_SECONDS = 900.0


def _save_uploads(files: list[UploadFile], folder: Path) -> tuple[list[str], bool]:
    """Write uploads under ``folder``; names are untrusted, so each must be a safe relative name."""
    saved: list[str] = []
    media = 0
    for upload in files:
        raw_name = upload.filename or "upload"
        try:
            name = safe_media_name(raw_name)
        except ValueError as exc:
            raise Invalid(f"file name {raw_name!r} is not allowed: {exc}", field="files") from None
        if name in saved:
            raise Invalid(f"file name {name!r} is uploaded twice", field="files")
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1024 * 1024)
        saved.append(name)
        media += target.suffix.lower() in IMAGE_EXTENSIONS | AUDIO_EXTENSIONS
    if media and media != len(saved):
        raise Invalid("upload either data files (JSONL, CSV, ...) or media files, not both", field="files")
    return saved, bool(media)


def _queue_import(
    db: Database,
    user: User,
    project_id: int,
    files: list[UploadFile],
    uploads: Path,
    params: dict[str, Any],
) -> int:
    """Store the upload and queue its job: the files go to a staging folder, which becomes
    ``uploads/<job id>`` inside the job's transaction, so a worker never sees one without the other."""
    staging = uploads / f".staging-{uuid.uuid4().hex}"
    try:
        names, is_media = _save_uploads(files, staging)

        def move_into_place(job_id: int) -> dict[str, Any]:
            target = uploads / str(job_id)
            shutil.rmtree(target, ignore_errors=True)  # a leftover of a database whose ids restarted
            staging.rename(target)
            return {"upload": str(target), "files": names, "media_files": is_media}

        return job_service.submit_job(
            db, "import", project_id=project_id, params=params, user=user, before_commit=move_into_place
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@router.post(
    "/projects/{project_id}/imports",
    response_model=JobOut,
    status_code=201,
    summary="Upload files and import them as items, all or nothing (an import job)",
    responses={202: {"model": JobOut, "description": "The import job, queued or running (wait=false)"}},
)
async def create_import(
    project_id: Id,
    request: Request,
    response: Response,
    user: UserDep,
    session: SessionDep,
    db: DbDep,
    media: MediaDep,
    executor: ExecutorDep,
    files: list[UploadFile] = File(..., description="JSONL, CSV, Parquet, Label Studio JSON, or media files"),
    format: Literal["jsonl", "csv", "tsv", "parquet", "labelstudio"] | None = Form(
        None, description="Format of the data files; default: by extension"
    ),
    on_duplicate: Literal["reject", "update", "skip"] = Form("reject"),
    wait: bool = Form(
        True,
        description="Wait for the import job and answer 201 with it (or the import's error); "
        "false: answer 202 with the queued job at once, and poll GET /jobs/{id}.",
    ),
    gold_column: list[str] = Form([], description="CONTROL=COLUMN: a column of gold answers (repeatable)"),
    annotation_column: list[str] = Form(
        [], description="ANNOTATOR.CONTROL=COLUMN: a column of one annotator's answers (repeatable)"
    ),
    meta_column: list[str] = Form([], description="KEY=COLUMN: a column that goes to the item's meta"),
    drop_column: list[str] = Form([], description="COLUMN: a column to leave out"),
    id_column: str | None = Form(
        None, description="The column of external ids (default external_id, else id)"
    ),
) -> Any:
    project = project_service.project_for(session, user, project_id, project_service.MANAGE)
    schema = project_service.load_schema(project.label_schema)
    # parse_column_options' own keywords: the import job parses the same options again
    column_options: dict[str, Any] = {
        "gold": gold_column,
        "annotations": annotation_column,
        "meta": meta_column,
        "drop": drop_column,
        "id_column": id_column,
    }
    try:  # refused here, before anything is uploaded or queued
        parse_column_options(**column_options).with_schema({c.name: c.type for c in schema.controls})
    except ValueError as exc:
        raise Invalid(str(exc), field="columns") from None
    session.commit()
    uploads = Path(request.app.state.settings.data_dir) / "uploads"
    params: dict[str, Any] = {
        "format": format,
        "on_duplicate": on_duplicate,
        "media": media.url,
        "columns": column_options,
    }
    job_id = await run_in_threadpool(_queue_import, db, user, project_id, files, uploads, params)
    await run_in_threadpool(executor.submit, job_id)
    if wait:
        job = await await_job(db, job_id, IMPORT_WAIT_SECONDS)
        raise_job_error(job, field="files")
        if job.status in FINISHED:
            return job_out(db, job_id)
    response.status_code = 202
    return job_out(db, job_id)
