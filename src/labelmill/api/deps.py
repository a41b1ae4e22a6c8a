"""Request-scoped dependencies: the database session and the calling user."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from labelmill.api.limits import USER_STATE_KEY
from labelmill.services import users as user_service
from labelmill.services.errors import Forbidden, LabelmillError, Unauthorized
from labelmill.store.engine import BUSY_TIMEOUT_MS, Database
from labelmill.store.media import MediaStore
from labelmill.store.models import User
from labelmill.store.pg_async import HotPath
from labelmill.store.sqlite_hot import SqliteHotPath

T = TypeVar("T")

SESSION_COOKIE = "labelmill_session"
CSRF_HEADER = "x-requested-with"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


# Trivial dependencies are ``async def``: FastAPI runs a plain ``def`` dependency in a worker
# thread, a hop that costs more than the dependency itself.


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_media(request: Request) -> MediaStore:
    media: MediaStore = request.app.state.media
    return media


#: How long a request waits for a database lock before it answers 503 (with Retry-After).
LOCK_WAIT_SECONDS = 5.0
#: What a 503 for a lock tells the client to wait before trying again.
RETRY_AFTER_SECONDS = 1


class Busy(LabelmillError):
    """The database stayed locked by other writers for longer than a request may wait."""

    status = 503
    code = "busy"


def is_lock_error(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "busy", or PostgreSQL's lock_timeout (SQLSTATE 55P03)."""
    if not isinstance(exc, OperationalError):
        return False
    if getattr(exc.orig, "sqlstate", None) == "55P03":
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message or "lock timeout" in message


def lock_wait_ms() -> int:
    return int(LOCK_WAIT_SECONDS * 1000)


def busy_error() -> Busy:
    return Busy(
        f"the database is busy (locked by other writers for over {LOCK_WAIT_SECONDS:g} s); "
        f"try again in {RETRY_AFTER_SECONDS} s"
    )


def get_session(request: Request, db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    """The request's transaction: committed before the response is sent (``scope="function"``
    below), so a client's next request always sees it. Unsafe methods take SQLite's write lock
    at BEGIN: a deferred transaction that reads, then writes, fails at once with "database is
    locked" when another writer committed in between, whatever the busy timeout.

    FastAPI runs this generator, entry and exit, in a worker thread, and the transaction
    begins here, never lazily at the route's first statement: an ``async`` route touching a
    session not begun yet would wait for SQLite's write lock on the event loop, while the
    holder of that lock needs the event loop to reach its COMMIT (the whole server froze for
    the 30 s busy timeout). The wait is bounded by :data:`LOCK_WAIT_SECONDS` (SQLite's busy
    timeout, PostgreSQL's ``lock_timeout``) and then answers 503 with Retry-After. Once begun,
    a SQLite request connection never waits again (busy timeout 0): it holds what it needs,
    and a statement run on the event loop must never sleep in SQLite's busy handler."""
    try:
        if db.dialect == "sqlite":
            yield from _sqlite_session(db, immediate=request.method not in SAFE_METHODS)
        else:
            with db.session() as session:
                session.execute(text(f"SET LOCAL lock_timeout = '{lock_wait_ms()}ms'"))
                yield session
    except OperationalError as exc:
        if is_lock_error(exc):
            raise busy_error() from None
        raise


def _sqlite_session(db: Database, *, immediate: bool) -> Iterator[Session]:
    with db.engine.connect() as conn:
        # conn.connection checks a connection out without beginning a transaction.
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute(f"PRAGMA busy_timeout={lock_wait_ms()}")
        try:
            if immediate:
                conn.execution_options(sqlite_begin="IMMEDIATE")
            session = Session(bind=conn, expire_on_commit=False)
            try:
                with session.begin():
                    session.connection()  # BEGIN [IMMEDIATE] now, in this worker thread
                    raw.execute("PRAGMA busy_timeout=0")
                    yield session
            finally:
                session.close()
        finally:
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _secret_from(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, secret = header.partition(" ")
        if scheme.lower() not in ("token", "bearer") or not secret.strip():
            raise Unauthorized("Authorization header must be 'Token <token>'")
        return secret.strip(), "api"
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        # A cookie rides along on cross-site requests; a custom header cannot be sent
        # cross-origin without CORS, which this server never grants. That blocks CSRF.
        if request.method not in SAFE_METHODS and not request.headers.get(CSRF_HEADER):
            raise Forbidden(f"cookie-authenticated {request.method} needs the X-Requested-With header")
        return cookie, "session"
    return None


@dataclass(frozen=True)
class Credentials:
    """The request's token, not checked yet: ``kind`` is the token kind it must have
    (``session`` for a cookie) or None for any (an ``Authorization`` header)."""

    secret: str
    kind: str | None
    #: The user, where the token was already checked (by the request guard).
    user: User | None = None

    @property
    def token_hash(self) -> str:
        return user_service.hash_token(self.secret)


def credentials_of(request: Request) -> Credentials:
    found = _secret_from(request)
    if found is None:
        raise Unauthorized("authentication required: send 'Authorization: Token <token>'")
    secret, kind = found
    return Credentials(secret, None if kind == "api" else "session")


async def credentials(request: Request) -> Credentials:
    creds = credentials_of(request)
    # The request guard (labelmill.api.limits) already checked the token of a route that
    # takes a large body, before reading it: that user is reused.
    checked = getattr(request.state, USER_STATE_KEY, None)
    if checked is not None and checked[0] == creds.secret:
        return Credentials(creds.secret, creds.kind, checked[1])
    return creds


async def current_user(
    db: Annotated[Database, Depends(get_db)], creds: Annotated[Credentials, Depends(credentials)]
) -> User:
    if creds.user is not None:
        return creds.user
    return await authenticate(db, creds)


async def authenticate(db: Database, creds: Credentials) -> User:
    """Checks the token in a short read-only transaction of its own, so that endpoints running
    their own transactions (the queue) never wait on a lock held by the request itself. It runs
    on the event loop: one indexed read, cheaper than a hop to a worker thread. On SQLite it
    runs there with a busy timeout of 0 (WAL readers almost never wait, but the event loop must
    not sleep in SQLite's busy handler when they do); if the database is busy it goes to a
    worker thread, which may wait (a bounded time)."""

    def check(conn: Connection) -> User:
        return user_service.authenticate_token(conn, creds.secret, kind=creds.kind)

    if db.dialect != "sqlite":
        with db.autocommit() as conn:
            return check(conn)
    try:
        return read_nowait(db, check)
    except OperationalError as exc:
        if not is_lock_error(exc):
            raise
    return await run_in_threadpool(read_waiting, db, check)


def _read(db: Database, read: Callable[[Connection], T], busy_ms: int) -> T:
    with db.autocommit() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        raw.execute(f"PRAGMA busy_timeout={busy_ms}")
        try:
            return read(conn)
        finally:
            raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def read_nowait(db: Database, read: Callable[[Connection], T]) -> T:
    """Run ``read`` on a SQLite connection that never waits for a lock (OperationalError
    "database is locked" instead): for reads on the event loop."""
    return _read(db, read, 0)


def read_waiting(db: Database, read: Callable[[Connection], T]) -> T:
    """Run ``read`` in a worker thread, waiting for a lock at most :data:`LOCK_WAIT_SECONDS`
    (then :class:`Busy`)."""
    try:
        return _read(db, read, lock_wait_ms())
    except OperationalError as exc:
        if is_lock_error(exc):
            raise busy_error() from None
        raise


async def get_hot_path(request: Request) -> HotPath | SqliteHotPath | None:
    """The annotator loop's event-loop database access: PostgreSQL's asyncpg pool or SQLite's
    event-loop connection (None in an app served without its lifespan)."""
    hot: HotPath | SqliteHotPath | None = request.app.state.hot_path
    return hot


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if user.role != "admin":
        raise Forbidden("this needs the admin role")
    return user


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
UserDep = Annotated[User, Depends(current_user)]
CredentialsDep = Annotated[Credentials, Depends(credentials)]
HotPathDep = Annotated[HotPath | SqliteHotPath | None, Depends(get_hot_path)]
AdminDep = Annotated[User, Depends(admin_user)]
DbDep = Annotated[Database, Depends(get_db)]
MediaDep = Annotated[MediaStore, Depends(get_media)]
