"""The ASGI application. ``create_app`` takes its database and media store as arguments, so
tests and several server processes build exactly the app they need (no module globals)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError
from starlette.concurrency import run_in_threadpool

from labelmill import __version__
from labelmill.api.deps import RETRY_AFTER_SECONDS, Busy, busy_error, is_lock_error, read_nowait
from labelmill.api.errors import install_error_handlers
from labelmill.api.limits import RequestGuardMiddleware
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
#: Swagger UI's and ReDoc's scripts and styles, from the fastapi-offline wheel (no CDN).
DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
DOCS_ASSETS_URL = "/docs-assets"


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
        docs_url=None,  # served from local assets by install_docs (they work offline)
        redoc_url=None,
        openapi_url=f"{API_PREFIX}/openapi.json",
    )
    app.state.db = db
    app.state.executor = executor
    app.state.hot_path = None
    app.state.media = media or open_media_store(settings.resolved_media_url())
    app.state.settings = settings
    install_error_handlers(app)
    install_busy_handlers(app)
    app.add_middleware(RequestGuardMiddleware, max_upload_bytes=settings.max_upload_bytes)
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
    async def health() -> dict[str, str]:
        # On the event loop, never in the worker threads: it answers while every thread is
        # busy (or waiting for a lock), and SELECT 1 takes no database lock.
        def select_one(conn: Connection) -> None:
            conn.exec_driver_sql("SELECT 1")

        if db.dialect == "sqlite":
            read_nowait(db, select_one)
        else:
            await run_in_threadpool(read_any, db, select_one)
        return {"status": "ok", "version": __version__, "database": db.dialect}

    install_docs(app)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    def home() -> str:
        return (
            "<!doctype html><title>labelmill</title><h1>labelmill</h1>"
            "<p>The labeling UI arrives in the next release. The REST API is at "
            '<a href="/docs">/docs</a>.</p>'
        )

    return app


def read_any(db: Database, read: Callable[[Connection], None]) -> None:
    with db.autocommit() as conn:
        read(conn)


def install_busy_handlers(app: FastAPI) -> None:
    """A request that waited its bounded time for a database lock answers 503 with
    Retry-After (the SDK retries it), wherever the lock error surfaced."""

    def busy_response(exc: Busy) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.message, "code": exc.code, "field": None},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Busy)
    async def _busy(_: Request, exc: Busy) -> JSONResponse:
        return busy_response(exc)

    @app.exception_handler(OperationalError)
    async def _operational(_: Request, exc: OperationalError) -> JSONResponse:
        if is_lock_error(exc):
            return busy_response(busy_error())
        raise exc


def install_docs(app: FastAPI) -> None:
    """/docs (Swagger UI) and /redoc from assets in the installed wheel, so they work on an
    air-gapped machine; the OpenAPI document answers at /openapi.json too."""
    openapi_url = app.openapi_url or f"{API_PREFIX}/openapi.json"
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
        )

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_at_root() -> JSONResponse:
        return JSONResponse(app.openapi())
