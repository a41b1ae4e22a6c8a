"""Users, passwords (argon2) and bearer secrets (API tokens and web sessions).

A token is 32 random bytes shown once; only its SHA-256 is stored. Tokens are high-entropy,
so a fast hash is the right one here (argon2 is for low-entropy passwords).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, String, Table, bindparam, select
from sqlalchemy.orm import Session

from labelmill.services.errors import Conflict, Invalid, NotFound, Unauthorized
from labelmill.store.models import USER_ROLES, ApiToken, Member, User

_hasher = PasswordHasher()
_NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,150}$")
TOKEN_PREFIX = "lm_"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


#: Global roles that may create projects (a project's creator becomes its manager).
PROJECT_CREATORS = ("admin", "creator")


def can_create_projects(user: User) -> bool:
    return user.role in PROJECT_CREATORS


def _check_role(role: str) -> None:
    if role not in USER_ROLES:
        raise Invalid(f"role {role!r} is not one of {', '.join(USER_ROLES)}", field="role")


def create_user(session: Session, name: str, *, role: str = "member", password: str | None = None) -> User:
    if not _NAME_RE.match(name):
        raise Invalid(
            f"user name {name!r} is not valid: use 1-150 letters, digits or _ . @ + -", field="name"
        )
    if name.isdigit():
        raise Invalid(f"user name {name!r} cannot be only digits (they are read as a user id)", field="name")
    _check_role(role)
    if password is not None and len(password) < 8:
        raise Invalid("password must have at least 8 characters", field="password")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists", field="name")
    user = User(name=name, role=role, password_hash=hash_password(password) if password else None)
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, ref: str | int) -> User:
    """Find a user by id or name (CLI arguments accept either)."""
    user: User | None = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        user = session.get(User, int(ref)) if 0 < int(ref) < 2**63 else None
    if user is None:
        user = session.scalar(select(User).where(User.name == str(ref)))
    if user is None:
        raise NotFound(f"no user {ref!r}", field="user")
    return user


def visible_user(session: Session, viewer: User, ref: str | int) -> User:
    """A user as ``viewer`` may name them when adding members: an admin any user; anyone
    else only users who already share a project with them. Any other name answers exactly
    as an unknown one does, so that adding members cannot list who has an account."""
    try:
        user: User | None = get_user(session, ref)
    except NotFound:
        user = None
    if user is not None and (
        viewer.role == "admin" or user.id == viewer.id or _share_a_project(session, viewer, user)
    ):
        return user
    raise NotFound(f"no user {ref!r}", field="user")


def _share_a_project(session: Session, a: User, b: User) -> bool:
    mine = select(Member.project_id).where(Member.user_id == a.id)
    found = session.scalar(
        select(Member.id).where(Member.user_id == b.id, Member.project_id.in_(mine)).limit(1)
    )
    return found is not None


def set_role(session: Session, user: User, role: str) -> User:
    """Change a user's global role (``creator`` lets a member create projects)."""
    _check_role(role)
    user.role = role
    session.flush()
    return user


def get_or_create_annotator(session: Session, name: str) -> User:
    """The user an imported annotation names; created inactive (no login) when unknown."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name, role="member", is_active=False)
        session.add(user)
        session.flush()
    return user


def create_token(
    session: Session, user: User, *, name: str = "", kind: str = "api", lifetime: timedelta | None = None
) -> tuple[str, ApiToken]:
    """Make a new secret for ``user``; the plaintext is returned once and never stored."""
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    expires = datetime.now(UTC) + lifetime if lifetime else None
    row = ApiToken(
        user_id=user.id,
        name=name,
        kind=kind,
        token_hash=hash_token(secret),
        prefix=secret[:10],
        expires_at=expires,
    )
    session.add(row)
    session.flush()
    return secret, row


def authenticate_token(conn: Session | Connection, secret: str, *, kind: str | None = None) -> User:
    """The user a secret belongs to (a detached ``User``; every request runs this, so it is
    one prepared Core statement rather than an ORM load)."""
    found = conn.execute(TOKEN_USER, {"token_hash": hash_token(secret)}).first()
    return token_user(found, kind)


def token_user(found: Any, kind: str | None) -> User:
    """The user of a row of :data:`TOKEN_USER` (columns kind, expires_at and the user's), or
    :class:`Unauthorized` when there is no row or the token may not be used (``kind``: the
    token kind required, None for any)."""
    check_token(found, kind)
    return User(
        id=found.id, name=found.name, role=found.role, is_active=found.is_active, created_at=found.created_at
    )


def check_token(found: Any, kind: str | None) -> None:
    """:func:`token_user`'s checks, without building the user."""
    if found is None or (kind is not None and found.kind != kind):
        raise Unauthorized("invalid or revoked token")
    if found.expires_at is not None and found.expires_at < datetime.now(UTC):
        raise Unauthorized("token expired; log in again")
    if not found.is_active:
        raise Unauthorized("user is deactivated")


_TOKENS = cast(Table, ApiToken.__table__)
_USERS = cast(Table, User.__table__)
#: A token's kind and expiry, and its user (what :func:`token_user` checks).
TOKEN_USER = (
    select(
        _TOKENS.c.kind,
        _TOKENS.c.expires_at,
        _USERS.c.id,
        _USERS.c.name,
        _USERS.c.role,
        _USERS.c.is_active,
        _USERS.c.created_at,
    )
    .join_from(_TOKENS, _USERS, _USERS.c.id == _TOKENS.c.user_id)
    .where(_TOKENS.c.token_hash == bindparam("token_hash", type_=String()))
)


def login(session: Session, name: str, password: str, *, lifetime: timedelta) -> tuple[str, User]:
    """Check a password and open a web session (a short-lived ``session`` token)."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None or not user.is_active or not verify_password(user.password_hash, password):
        raise Unauthorized("wrong user name or password")
    secret, _ = create_token(session, user, name="web session", kind="session", lifetime=lifetime)
    return secret, user


def revoke_token(session: Session, user: User, token_id: int) -> None:
    row = session.get(ApiToken, token_id)
    if row is None or (row.user_id != user.id and user.role != "admin"):
        raise NotFound(f"no token {token_id}", field="token_id")
    session.delete(row)


def revoke_secret(session: Session, secret: str) -> None:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(secret)))
    if row is not None:
        session.delete(row)
