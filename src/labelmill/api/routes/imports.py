from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from starlette.concurrency import run_in_threadpool

from labelmill.api.deps import DbDep, MediaDep, SessionDep, UserDep
from labelmill.api.models import Id, JobOut
from labelmill.api.routes.jobs import job_out
from labelmill.formats import scan_media_folder
from labelmill.formats.columns import parse_column_options
from labelmill.formats.media import AUDIO_EXTENSIONS, IMAGE_EXTENSIONS
from labelmill.formats.records import FormatError
from labelmill.services import jobs as job_service
from labelmill.services import projects as project_service
from labelmill.services.errors import Invalid
from labelmill.services.ingest import import_records, iter_all, open_reader
from labelmill.store.media import safe_media_name

router = APIRouter(tags=["imports"])


def _save_uploads(files: list[UploadFile], folder: Path) -> tuple[list[tuple[Path, str]], bool]:
    """Write uploads under ``folder``; names are untrusted, so each must be a safe relative name."""
    saved: list[tuple[Path, str]] = []
    media = 0
    for upload in files:
        raw_name = upload.filename or "upload"
        try:
            name = safe_media_name(raw_name)
        except ValueError as exc:
            raise Invalid(f"file name {raw_name!r} is not allowed: {exc}", field="files") from None
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            shutil.copyfileobj(upload.file, out, 1024 * 1024)
        saved.append((target, name))
        media += target.suffix.lower() in IMAGE_EXTENSIONS | AUDIO_EXTENSIONS
    if media and media != len(saved):
        raise Invalid("upload either data files (JSONL, CSV, ...) or media files, not both", field="files")
    return saved, bool(media)


@router.post(
    "/projects/{project_id}/imports",
    response_model=JobOut,
    status_code=201,
    summary="Upload files and import them as items, all or nothing",
)
async def create_import(
    project_id: Id,
    user: UserDep,
    session: SessionDep,
    db: DbDep,
    media: MediaDep,
    files: list[UploadFile] = File(..., description="JSONL, CSV, Parquet, Label Studio JSON, or media files"),
    format: Literal["jsonl", "csv", "tsv", "parquet", "labelstudio"] | None = Form(
        None, description="Format of the data files; default: by extension"
    ),
    on_duplicate: Literal["reject", "update", "skip"] = Form("reject"),
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
    try:
        columns = parse_column_options(
            gold=gold_column,
            annotations=annotation_column,
            meta=meta_column,
            drop=drop_column,
            id_column=id_column,
        ).with_schema({c.name: c.type for c in schema.controls})
    except ValueError as exc:
        raise Invalid(str(exc), field="columns") from None
    session.commit()
    with tempfile.TemporaryDirectory(prefix="labelmill-upload-") as tmp:
        saved, is_media = _save_uploads(files, Path(tmp))
        params = {
            "files": [n for _, n in saved],
            "format": format,
            "on_duplicate": on_duplicate,
            "columns": {
                "gold": gold_column,
                "annotation": annotation_column,
                "meta": meta_column,
                "drop": drop_column,
                "id": id_column,
            },
        }
        job_id = job_service.create_job(db, "import", project_id=project_id, params=params, user=user)

        def run() -> dict[str, Any]:
            if is_media:
                records = scan_media_folder(Path(tmp))
            else:
                records = iter_all(
                    open_reader(schema, path, format, source_name=name, columns=columns)
                    for path, name in saved
                )
            done = 0

            def progress(n: int) -> None:
                nonlocal done
                done += n
                job_service.report_progress(db, job_id, done)

            return import_records(
                db, project_id, records, on_duplicate=on_duplicate, media=media, progress=progress
            ).as_dict()

        try:
            result = await run_in_threadpool(run)
        except FormatError as exc:
            job_service.finish_job(db, job_id, error=str(exc))
            raise
        except ValueError as exc:  # a reader refusing the file as a whole (unknown format, ...)
            job_service.finish_job(db, job_id, error=str(exc))
            raise Invalid(str(exc), field="files") from None
        except Exception as exc:
            job_service.finish_job(db, job_id, error=f"{type(exc).__name__}: {exc}")
            raise
        job_service.finish_job(db, job_id, result=result)
    return job_out(db, job_id)
