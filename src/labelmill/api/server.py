"""Entry point for ``uvicorn --factory``: each worker process builds its own app and engine."""

from __future__ import annotations

import os

from fastapi import FastAPI

from labelmill.api.app import create_app
from labelmill.config import get_settings
from labelmill.jobs.executor import LocalExecutor
from labelmill.store.engine import Database


def build() -> FastAPI:
    settings = get_settings()
    db = Database(settings.resolved_database_url())
    if os.environ.get("LABELMILL_SERVE_WORKER", "1") == "1":
        return create_app(db, settings=settings, run_worker=True)
    # --no-worker: this server runs only the jobs its own requests ask for (imports, exports),
    # in its worker threads; queued background work waits for `labelmill worker`.
    return create_app(db, settings=settings, executor=LocalExecutor(db, poll=False))
