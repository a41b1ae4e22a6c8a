"""Entry point for ``uvicorn --factory``: each worker process builds its own app and engine."""

from __future__ import annotations

from fastapi import FastAPI

from labelmill.api.app import create_app
from labelmill.config import get_settings
from labelmill.store.engine import Database


def build() -> FastAPI:
    settings = get_settings()
    return create_app(Database(settings.resolved_database_url()), settings=settings)
