"""Engine, sessions and migrations.

SQLite runs in WAL mode with a busy timeout so that several API threads and CLI commands can
share one file; PostgreSQL is used as is. Every entry point calls :func:`open_database`, which
brings the schema to the newest Alembic revision before anything else touches it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: SQLite's busy timeout, in milliseconds, for every connection.
BUSY_TIMEOUT_MS = 30000


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
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
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
    # No pool_pre_ping: it costs a round trip on every checkout, more than the queries of a
    # typical request. After a server restart the first request on a stale connection fails
    # once, and SQLAlchemy then discards every pooled connection older than the failure.
    # The annotator loop, most of a busy server's traffic, has a pool of its own on the event
    # loop (store.pg_async); this one serves the worker threads, the event loop's token checks
    # and the job worker (at most 40 threads at once, plus those two).
    return create_engine(url, pool_size=30, max_overflow=20, **kwargs)


def _disable_pysqlite_begin(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn: Any) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "")
    if mode is None:
        return  # a single read (Database.read): SQLite runs it as a transaction of its own
    conn.exec_driver_sql(f"BEGIN {mode}".strip())


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def migrate(engine: Engine) -> None:
    """Upgrade the database to the newest revision (idempotent; serialised on PostgreSQL)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine.dialect.name == "sqlite":
        _migrate_sqlite(engine, cfg)
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Several API processes may start at once: one migrates, the others wait.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7240513)")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def _migrate_sqlite(engine: Engine, cfg: Any) -> None:
    """SQLite migrations run with foreign-key enforcement off, as SQLite's own procedure for
    changing a table asks: a batch migration rebuilds a table (copy, drop, rename), and dropping
    a referenced table with enforcement on would cascade-delete the rows that reference it. The
    pragma is a no-op inside a transaction, so it is set on the connection before BEGIN; every
    reference is checked before the migration commits, and enforcement is back on afterwards."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    with engine.connect() as conn:
        if set(MigrationContext.configure(conn).get_current_heads()) == heads:
            conn.rollback()
            return  # up to date: no pragma juggling, no reference check on every start
        conn.rollback()
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    table, rowid, parent, _ = broken[0]
                    raise RuntimeError(
                        f"migration left {len(broken)} broken reference(s), e.g. {table} row {rowid} "
                        f"-> {parent}; nothing was changed"
                    )
        finally:
            raw.execute("PRAGMA foreign_keys=ON")


#: Set by :meth:`Database.nowait`: write transactions started in this context must not wait.
_NOWAIT: ContextVar[bool] = ContextVar("labelmill_nowait", default=False)


class WriterBusy(Exception):
    """A write transaction asked not to wait (:meth:`Database.nowait`) found the write lock taken."""


class Database:
    """An engine plus its session factory; what services receive instead of globals."""

    def __init__(self, url: str, *, run_migrations: bool = True, **engine_kwargs: Any) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, **engine_kwargs)
        if run_migrations:
            migrate(self.engine)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        self._immediate = self.engine.execution_options(sqlite_begin="IMMEDIATE")
        self._autocommit = (
            self.engine.execution_options(isolation_level="AUTOCOMMIT")
            if self.dialect == "postgresql"
            else self.engine.execution_options(sqlite_begin=None)
        )
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
        queued = self._queue_writer(immediate and queue_writers)
        try:
            if immediate and self.dialect == "sqlite":
                session = Session(bind=self._immediate, expire_on_commit=False)
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

    @contextmanager
    def connect(self, *, immediate: bool = False) -> Iterator[Connection]:
        """A Core connection in a transaction that commits on success and rolls back on any
        error: the queue's hot path, which needs no ORM unit of work. ``immediate`` as for
        :meth:`session` (writers queue on the in-process lock). Inside :meth:`nowait`, a
        writer that would have to wait raises :class:`WriterBusy` before doing anything."""
        nowait = immediate and _NOWAIT.get() and self.dialect == "sqlite"
        queued = self._queue_writer(immediate)
        try:
            conn = (self._immediate if immediate and self.dialect == "sqlite" else self.engine).connect()
            try:
                if nowait:  # fail at BEGIN IMMEDIATE instead of waiting for another process
                    conn.connection.driver_connection.execute("PRAGMA busy_timeout=0")  # type: ignore[union-attr]
                try:
                    transaction = conn.begin()
                except OperationalError as exc:
                    if nowait and "locked" in str(exc):
                        raise WriterBusy from None
                    raise
                with transaction:
                    yield conn
            finally:
                if nowait:
                    conn.connection.driver_connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # type: ignore[union-attr]
                conn.close()
        finally:
            if queued:
                self._writer.release()

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection outside any transaction: each statement commits by itself. For single
        reads (token checks) and for the queue's PostgreSQL paths whose every write is one
        statement; BEGIN and COMMIT would cost two more round trips."""
        with self._autocommit.connect() as conn:
            yield conn

    def _queue_writer(self, immediate: bool) -> bool:
        """Take the in-process writer lock for a SQLite write transaction; True if taken."""
        if not (immediate and self.dialect == "sqlite"):
            return False
        if _NOWAIT.get():
            if not self._writer.acquire(blocking=False):
                raise WriterBusy
            return True
        return self._writer.acquire(timeout=60)  # on timeout, fall back on SQLite's busy timeout

    @contextmanager
    def writer_turn(self) -> Iterator[None]:
        """This process's turn to write to SQLite, taken only if free at once (else
        :class:`WriterBusy`): for a writer on the event loop (:mod:`labelmill.store.sqlite_hot`)
        that must never wait."""
        if not self._writer.acquire(blocking=False):
            raise WriterBusy
        try:
            yield
        finally:
            self._writer.release()

    @contextmanager
    def nowait(self) -> Iterator[None]:
        """Within this block, a SQLite write transaction that cannot start at once raises
        :class:`WriterBusy` instead of waiting. The API runs the annotator loop's short
        transactions on its event loop this way, and hands them to a thread only when busy:
        a thread per request would make each transaction wait on the GIL at every statement
        while holding SQLite's single write lock."""
        token = _NOWAIT.set(True)
        try:
            yield
        finally:
            _NOWAIT.reset(token)

    def dispose(self) -> None:
        self.engine.dispose()


def open_database(url: str | None = None) -> Database:
    from labelmill.config import get_settings

    return Database(url or get_settings().resolved_database_url())
