"""The built-in job kinds: consensus refresh, export, import. Each handler gets its claimed job
and returns its result; the executor records it (or the failure)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from labelmill.jobs.registry import JobKind, register
from labelmill.services import jobs as job_service
from labelmill.store.engine import Database
from labelmill.store.models import Job


def run_consensus(db: Database, job: Job) -> dict[str, Any]:
    from labelmill.services.consensus import refresh_consensus

    if job.project_id is None:
        raise ValueError("consensus job without a project")
    result = refresh_consensus(db, job.project_id)
    return {
        "items": result.items,
        "controls": result.controls,
        "annotators": result.annotators,
        "flagged_annotators": result.flagged,
    }


def run_export(db: Database, job: Job) -> dict[str, Any]:
    from labelmill.jobs.executor import InlineExecutor
    from labelmill.jobs.freshness import ensure_consensus_fresh
    from labelmill.services.export import run_export_job
    from labelmill.store.media import open_media_store

    if job.project_id is None or not job.params:
        raise ValueError("export job without a project or parameters")
    # Labels stored before the export started are in it: refresh their consensus first, here.
    ensure_consensus_fresh(db, job.project_id, InlineExecutor(db))
    # "media" is the store's URL; "media_root" (a folder) is what jobs queued by older versions hold.
    location = job.params.get("media") or job.params.get("media_root")
    media = open_media_store(location) if location else None
    return run_export_job(
        db,
        job.params,
        job.project_id,
        media,
        progress=lambda done: job_service.report_progress(db, job.id, done),
    )


def run_import(db: Database, job: Job) -> dict[str, Any]:
    """Import an upload kept under ``params['upload']`` (``<data dir>/uploads/<job id>``), all or
    nothing, as :func:`labelmill.services.ingest.import_records` does."""
    from labelmill.formats import scan_media_folder
    from labelmill.formats.columns import parse_column_options
    from labelmill.services import projects as project_service
    from labelmill.services.ingest import import_records, iter_all, open_reader
    from labelmill.store.media import open_media_store

    params = job.params or {}
    if job.project_id is None or "upload" not in params:
        raise ValueError("import job without a project or an upload")
    folder = Path(params["upload"])
    if not folder.is_dir():
        raise ValueError(f"the upload of import job {job.id} is gone ({folder})")
    if params.get("media_files"):
        records = scan_media_folder(folder)
    else:
        fmt = params.get("format")
        # the import route's options, as parse_column_options' keywords
        columns = parse_column_options(**(params.get("columns") or {}))
        with db.session() as session:
            schema = project_service.load_schema(
                project_service.get_project(session, job.project_id).label_schema
            )
        records = iter_all(
            open_reader(schema, folder / name, fmt, source_name=name, columns=columns)
            for name in params["files"]
        )
    media = open_media_store(params["media"]) if params.get("media") else None
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        job_service.report_progress(db, job.id, done)

    return import_records(
        db,
        job.project_id,
        records,
        on_duplicate=params.get("on_duplicate", "reject"),
        media=media,
        progress=progress,
    ).as_dict()


def remove_upload(params: dict[str, Any] | None) -> None:
    if params and params.get("upload"):
        shutil.rmtree(params["upload"], ignore_errors=True)


# While labels keep arriving, a refresh that refits the whole project waits three times as long
# as its last run took (at most a quarter of a worker): without the rest, refreshes ran back
# to back and took the CPU the annotators' requests needed (bench/queue.py --worker).
register(JobKind("consensus", run_consensus, exclusive=True, rest=3.0))
register(JobKind("export", run_export))
# An import that lost its worker is tried once more: it stores all or nothing, so a second run
# never doubles it, but a file that kills its worker should not take down a second one as well.
register(JobKind("import", run_import, max_attempts=2, cleanup=remove_upload))
