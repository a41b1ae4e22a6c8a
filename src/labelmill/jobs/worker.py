"""The local worker: claims queued jobs and runs them. ``labelmill worker`` runs it as its own
process; ``labelmill serve`` runs one in a thread, so an embedded install needs nothing else."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from labelmill.services import jobs as job_service
from labelmill.services.consensus import refresh_consensus
from labelmill.store.engine import Database
from labelmill.store.models import Job

log = logging.getLogger("labelmill.worker")


def _consensus(db: Database, job: Job) -> dict[str, Any]:
    if job.project_id is None:
        raise ValueError("consensus job without a project")
    result = refresh_consensus(db, job.project_id)
    return {
        "items": result.items,
        "controls": result.controls,
        "annotators": result.annotators,
        "flagged_annotators": result.flagged,
    }


def _export(db: Database, job: Job) -> dict[str, Any]:
    from labelmill.services.export import run_export_job
    from labelmill.store.media import open_media_store

    if job.project_id is None or not job.params:
        raise ValueError("export job without a project or parameters")
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


HANDLERS: dict[str, Callable[[Database, Job], dict[str, Any]]] = {"consensus": _consensus, "export": _export}


def run_job(db: Database, job_id: int) -> bool:
    """Run one queued job now (if nobody has claimed it yet); False when someone else has."""
    job = job_service.claim_job_by_id(db, job_id)
    if job is None:
        return False
    _run(db, job)
    return True


def _run(db: Database, job: Job) -> None:
    try:
        result = HANDLERS[job.kind](db, job)
    except Exception as exc:  # a failed job is recorded, never kills the worker
        log.exception("job %s (%s) failed", job.id, job.kind)
        job_service.finish_job(db, job.id, error=f"{type(exc).__name__}: {exc}")
    else:
        job_service.finish_job(db, job.id, result=result)


def run_pending(db: Database, *, project_id: int | None = None, limit: int | None = None) -> int:
    """Run queued jobs until none is left (or ``limit`` ran); returns how many ran."""
    ran = 0
    while limit is None or ran < limit:
        job = job_service.claim_job(db, tuple(HANDLERS), project_id)
        if job is None:
            return ran
        _run(db, job)
        ran += 1
    return ran


def run_forever(db: Database, stop: threading.Event, *, poll_seconds: float = 1.0) -> None:
    while not stop.is_set():
        try:
            if run_pending(db) == 0:
                stop.wait(poll_seconds)
        except Exception:  # the database may be briefly unavailable; try again
            log.exception("worker loop error")
            stop.wait(poll_seconds * 5)


class BackgroundWorker:
    """A worker thread tied to an application's lifetime."""

    def __init__(self, db: Database, *, poll_seconds: float = 1.0) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=run_forever,
            args=(db, self.stop),
            kwargs={"poll_seconds": poll_seconds},
            name="labelmill-worker",
            daemon=True,
        )

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
