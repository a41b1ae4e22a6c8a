"""The ASGI application. ``create_app`` takes its database and media store as arguments, so
tests and several server processes build exactly the app they need (no module globals)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from labelmill import __version__
from labelmill.api.errors import install_error_handlers
from labelmill.api.limits import BodyLimitMiddleware
from labelmill.api.models import ERROR_RESPONSES
from labelmill.api.routes import (
    auth,
    exports,
    imports,
    items,
    jobs,
    members,
    projects,
    quality,
    reviews,
    tasks,
    tokens,
    users,
)
from labelmill.config import Settings, get_settings
from labelmill.jobs.executor import Executor, InlineExecutor, LocalExecutor
from labelmill.store.engine import Database
from labelmill.store.media import MediaStore, open_media_store
from labelmill.store.pg_async import HotPath
from labelmill.store.sqlite_hot import SqliteHotPath, sqlite_path

API_PREFIX = "/api/v1"


def create_app(
    db: Database,
    *,
    media: MediaStore | None = None,
    settings: Settings | None = None,
    run_worker: bool = False,
    executor: Executor | None = None,
) -> FastAPI:
    """Routes queue jobs and hand them to ``executor`` (``app.state.executor``). ``run_worker``
    makes it worker threads that also run every queued job and reap lost ones, for the app's
    lifetime (``labelmill serve`` does); without either, submitted jobs run inline."""
    settings = settings or get_settings()
    if executor is None:
        executor = LocalExecutor(db) if run_worker else InlineExecutor(db)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = executor if isinstance(executor, LocalExecutor) else None
        if worker is not None:
            worker.start()
        # The annotator loop's statements run on the event loop: on PostgreSQL from an asyncpg
        # pool opened here, on the loop that serves the requests; on SQLite on a connection
        # of the loop's own.
        hot = HotPath(db.url) if db.dialect == "postgresql" else None
        sqlite_hot = SqliteHotPath(db) if db.dialect == "sqlite" and sqlite_path(db.url) else None
        try:
            if hot is not None:
                await hot.open()
            app.state.hot_path = hot or sqlite_hot
            yield
        finally:
            app.state.hot_path = None
            if hot is not None:
                await hot.close()
            if sqlite_hot is not None:
                sqlite_hot.close()
            if worker is not None:
                worker.close()

    app = FastAPI(
        lifespan=lifespan,
        title="labelmill",
        version=__version__,
        description="Self-hosted data labeling. Authenticate with `Authorization: Token <token>` "
        "(`labelmill token create NAME`). Lists answer `{results, next_cursor}`.",
        docs_url="/docs",
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.state.db = db
    app.state.executor = executor
    app.state.hot_path = None
    app.state.media = media or open_media_store(settings.resolved_media_url())
    app.state.settings = settings
    install_error_handlers(app)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=16 * 1024 * 1024, max_upload_bytes=settings.max_upload_bytes
    )
    # The annotator loop's routes first: the router tries routes in order, and they take
    # most of the traffic.
    for module in (
        tasks,
        auth,
        users,
        tokens,
        projects,
        members,
        items,
        imports,
        exports,
        jobs,
        quality,
        reviews,
    ):
        app.include_router(module.router, prefix=API_PREFIX, responses=ERROR_RESPONSES)

    @app.get("/api/v1/health", tags=["meta"], summary="Liveness and database check")
    def health() -> dict[str, str]:
        with db.session() as session:
            session.connection().exec_driver_sql("SELECT 1")
        return {"status": "ok", "version": __version__, "database": db.dialect}

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def home() -> str:
        return (
            "<!doctype html><title>labelmill</title><h1>labelmill</h1>"
            "<p>The labeling UI arrives in the next release. The REST API is at "
            '<a href="/docs">/docs</a>.</p>'
        )

    return app
