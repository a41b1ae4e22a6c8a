"""Request-scoped dependencies: the database session and the calling user."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from labelmill.services import users as user_service
from labelmill.services.errors import Forbidden, Unauthorized
from labelmill.store.engine import Database
from labelmill.store.media import MediaStore
from labelmill.store.models import User
from labelmill.store.pg_async import HotPath
from labelmill.store.sqlite_hot import SqliteHotPath

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


def get_session(request: Request, db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    """The request's transaction: committed before the response is sent (``scope="function"``
    below), so a client's next request always sees it. Unsafe methods take SQLite's write lock
    at BEGIN: a deferred transaction that reads, then writes, fails at once with "database is
    locked" when another writer committed in between, whatever the busy timeout."""
    with db.session(immediate=request.method not in SAFE_METHODS, queue_writers=False) as session:
        yield session


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

    @property
    def token_hash(self) -> str:
        return user_service.hash_token(self.secret)


async def credentials(request: Request) -> Credentials:
    found = _secret_from(request)
    if found is None:
        raise Unauthorized("authentication required: send 'Authorization: Token <token>'")
    secret, kind = found
    return Credentials(secret, None if kind == "api" else "session")


async def current_user(
    db: Annotated[Database, Depends(get_db)], creds: Annotated[Credentials, Depends(credentials)]
) -> User:
    """Checks the token in a short read-only transaction of its own, so that endpoints running
    their own transactions (the queue) never wait on a lock held by the request itself. It runs
    on the event loop: one indexed read that never waits on a lock (SQLite's WAL readers do not
    block), cheaper than a hop to a worker thread."""
    with db.autocommit() as conn:
        return user_service.authenticate_token(conn, creds.secret, kind=creds.kind)


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
