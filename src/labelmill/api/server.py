"""Entry point for ``uvicorn --factory``: each worker process builds its own app and engine."""

from __future__ import annotations

import os

from fastapi import FastAPI

from labelmill.api.app import create_app
from labelmill.config import get_settings
from labelmill.store.engine import Database


def build() -> FastAPI:
    settings = get_settings()
    run_worker = os.environ.get("LABELMILL_SERVE_WORKER", "1") == "1"
    return create_app(Database(settings.resolved_database_url()), settings=settings, run_worker=run_worker)
