"""Shared fixtures. Database fixtures run every test on SQLite and, when reachable, PostgreSQL."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# No per-example deadline: a test's speed is for bench/, and on a busy 2-core machine a
# deadline fails correct code at random (timed assertions do not belong in tests).
settings.register_profile("labelmill", deadline=None, print_blob=True)
settings.load_profile("labelmill")

REPO_ROOT = Path(__file__).resolve().parent.parent
#: ../shared/datasets beside the clone (or LABELMILL_SHARED_DATASETS); tests skip when absent.
SHARED_DATASETS = Path(os.environ.get("LABELMILL_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))
#: Server the PostgreSQL variants use; each pytest worker gets its own database on it.
PG_URL = os.environ.get("LABELMILL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
#: One id per test run (shared by its xdist workers), so two runs on one server (two clones, a
#: developer and CI) never drop each other's databases.
_RUN_ID = (os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"p{os.getpid()}")[:12]


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets not present at {SHARED_DATASETS}")
    return SHARED_DATASETS


def _pg_database_url(worker: str) -> str | None:
    """Create (once) a database of our own on the test server; None when no server answers."""
    try:
        import psycopg
    except ImportError:
        return None
    base = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    name = f"labelmill_test_{_RUN_ID}_{worker}"
    try:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        return None
    return PG_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def pg_url(worker_id: str) -> Iterator[str]:
    url = _pg_database_url(worker_id)
    if url is None:
        pytest.skip("PostgreSQL is not reachable at " + PG_URL)
    yield url
    _drop_pg_database(url)


def _drop_pg_database(url: str) -> None:
    import psycopg

    db = _PG_DB.pop(url, None)
    if db is not None:
        db.dispose()
    base = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(base, autocommit=True, connect_timeout=3) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    return str(getattr(request.config, "workerinput", {}).get("workerid", "main"))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied per test: cheaper than migrating each time."""
    from labelmill.store.engine import Database

    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    with db.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    db.dispose()
    return path


_PG_DB: dict[str, Any] = {}


def _pg_db(url: str) -> Any:
    from labelmill.store.engine import Database

    if url not in _PG_DB:
        _PG_DB[url] = Database(url)
    return _PG_DB[url]


def _truncate(db: Any) -> None:
    from labelmill.store.models import Base

    names = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
def db(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[Any]:
    """A fresh, migrated database: a SQLite file, or the PostgreSQL test database emptied."""
    from labelmill.store.engine import Database

    if request.param == "sqlite":
        path = tmp_path / "labelmill.db"
        shutil.copy(sqlite_template, path)
        database = Database(f"sqlite:///{path}", run_migrations=False)
        yield database
        database.dispose()
    else:
        database = _pg_db(request.getfixturevalue("pg_url"))
        _truncate(database)
        yield database


@pytest.fixture
def media_store(tmp_path: Path) -> Any:
    from labelmill.store.media import LocalMediaStore

    return LocalMediaStore(tmp_path / "media")


@pytest.fixture
def app_settings(tmp_path: Path) -> Any:
    from labelmill.config import Settings

    return Settings(data_dir=tmp_path, max_upload_bytes=2 * 1024 * 1024)


@pytest.fixture
def client(db: Any, media_store: Any, app_settings: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from labelmill.api.app import create_app

    with TestClient(create_app(db, media=media_store, settings=app_settings)) as c:
        yield c


def make_user(db: Any, name: str, *, role: str = "member", password: str | None = None) -> tuple[int, str]:
    """Create a user and an API token; returns (user id, token)."""
    from labelmill.services.users import create_token, create_user

    with db.session() as session:
        user = create_user(session, name, role=role, password=password)
        secret, _ = create_token(session, user, name="test")
        return user.id, secret


def queued_refreshes(db: Any, pid: int) -> int:
    """Consensus refresh jobs queued for the project."""
    from sqlalchemy import func, select

    from labelmill.store.models import Job

    with db.session() as s:
        return int(
            s.scalar(
                select(func.count())
                .select_from(Job)
                .where(Job.project_id == pid, Job.kind == "consensus", Job.status == "queued")
            )
            or 0
        )


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Token {token}"}


@pytest.fixture
def admin_token(db: Any) -> str:
    return make_user(db, "admin", role="admin")[1]
