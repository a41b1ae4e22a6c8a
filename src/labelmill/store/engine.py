"""Engine, sessions and migrations.

SQLite runs in WAL mode with a busy timeout so that several API threads and CLI commands can
share one file; PostgreSQL is used as is. Every entry point calls :func:`open_database`, which
brings the schema to the newest Alembic revision before anything else touches it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (``postgres://``, ``postgresql://``) and use psycopg 3."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=40,
            max_overflow=20,
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; emit it ourselves so that a
        # write transaction can take the lock up front (BEGIN IMMEDIATE where asked).
        event.listen(engine, "connect", _disable_pysqlite_begin)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=30, max_overflow=30, pool_pre_ping=True, **kwargs)


def _disable_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "")
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest revision (idempotent; serialised on PostgreSQL)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Several API processes may start at once: one migrates, the others wait.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7240513)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """An engine plus its session factory; what services receive instead of globals."""

    def __init__(self, url: str, *, run_migrations: bool = True, **engine_kwargs: Any) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        if run_migrations:
            migrate(self.engine)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self, *, immediate: bool = False, queue_writers: bool = True) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any error.

        ``immediate=True`` takes SQLite's write lock at BEGIN, so read-then-write use cases
        (assignment, imports) cannot fail on lock upgrade; it is a no-op on PostgreSQL. Within
        one process such writers also queue on a lock (``queue_writers``): SQLite's own busy
        handler makes waiters poll with sleeps of up to 100 ms, which under fifty concurrent
        annotators costs far more than the work. A caller that may open another writer
        transaction while its own is open (a request's session) passes ``queue_writers=False``.
        """
        queued = immediate and queue_writers and self.dialect == "sqlite"
        if queued and not self._writer.acquire(timeout=60):
            queued = False  # fall back on SQLite's busy timeout rather than fail here
        try:
            if immediate and self.dialect == "sqlite":
                bind = self.engine.execution_options(sqlite_begin="IMMEDIATE")
                session = Session(bind=bind, expire_on_commit=False)
            else:
                session = self.sessionmaker()
            try:
                with session.begin():
                    yield session
            finally:
                session.close()
        finally:
            if queued:
                self._writer.release()

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str | None = None) -> Database:
    from labelmill.config import get_settings

    return Database(url or get_settings().resolved_database_url())
