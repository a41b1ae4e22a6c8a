"""The queue's rules, each written once: plain functions every path calls, and the SQL forms of
the few that PostgreSQL's one-statement lease evaluates inside the database, built right here
from the same settings and defaults (:class:`~labelmill.services.projects.ProjectSettings`).

Next task (:func:`next_route`), in this order:

1. the token must be usable (:func:`check_token`): unknown, expired, of the wrong kind or of a
   deactivated user is 401;
2. a stranger to the project gets 404 (an admin becomes a manager on first use);
3. a paused member gets 403 with the reason;
4. a member holding a live lease gets it back;
5. leases past their time are reclaimed (their slots go back to the pool);
6. a member who still has to qualify gets a gold item (none left: nothing to do);
7. otherwise a draw below ``gold_rate`` mixes in a gold item (none left: a regular one);
8. otherwise the next open regular item; the lease lasts ``lease_seconds``.

Submit (:func:`submit_route`): the key must have 1-200 characters; someone else's task is 404;
a retry with the same ``Idempotency-Key`` returns the first annotation (the key on another task
is 409); a submitted or skipped task is 409; a late submit (the lease was reclaimed) is taken
only while the item still needs labels; a gold answer is scored (qualification, pausing), and
adaptive overlap may ask for one more label (:func:`needs_scoring`).

The common case of each call, the only one the event-loop hot paths serve themselves, is
:attr:`NextRoute.REGULAR` without leases to reclaim, and :attr:`SubmitRoute.STORE` without
scoring.
"""

from __future__ import annotations

import enum
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, not_, or_

from labelmill.schema import LabelSchema
from labelmill.services.errors import Invalid
from labelmill.services.projects import ProjectSettings
from labelmill.services.users import check_token

__all__ = [
    "MAX_IDEMPOTENCY_KEY",
    "NextRoute",
    "SubmitRoute",
    "adaptive",
    "check_idempotency_key",
    "check_token",
    "draws_gold",
    "draws_review",
    "idempotency_key_ok",
    "late_submit_allowed",
    "lease_until",
    "needs_qualification",
    "needs_scoring",
    "next_route",
    "pg_common_lease",
    "pg_lease_until",
    "pg_overlap",
    "pg_token_usable",
    "shown_meta",
    "submit_route",
]

#: Longest ``Idempotency-Key`` (characters); the shortest is 1.
MAX_IDEMPOTENCY_KEY = 200
_DEFAULTS = ProjectSettings()


# --------------------------------------------------------------------------- settings rules


def lease_until(settings: ProjectSettings, now: datetime) -> datetime:
    """When a lease taken ``now`` expires (``lease_seconds``)."""
    return now + timedelta(seconds=settings.lease_seconds)


def draws_gold(settings: ProjectSettings, draw: float) -> bool:
    """Whether this next-task serves a gold item, for a chance draw in [0, 1)."""
    return settings.gold_rate > draw


def needs_qualification(settings: ProjectSettings, qualification: str | None) -> bool:
    """Whether a member must still qualify on gold items before getting real ones."""
    return qualification != "qualified" and settings.qualification_size > 0


def draws_review(settings: ProjectSettings, draw: float) -> bool:
    """Whether a new annotation is drawn for review (``review_rate``), for a draw in [0, 1)."""
    return settings.review_rate > 0 and draw < settings.review_rate


def adaptive(settings: ProjectSettings) -> bool:
    """Whether adaptive overlap may ask for more labels than ``overlap``."""
    return (settings.max_overlap or settings.overlap) > settings.overlap


def needs_scoring(settings: ProjectSettings, is_gold: bool) -> bool:
    """Whether a submit takes one of the rare branches: scoring a gold answer (qualification,
    pausing), or adaptive overlap deciding whether the item needs another label."""
    return is_gold or adaptive(settings)


def late_submit_allowed(needed: int | None, assigned: int, settings: ProjectSettings) -> bool:
    """A submit whose lease was reclaimed (its slot returned to the pool) is taken only while the
    item still has a free slot: fewer than its labels needed are submitted or leased."""
    return assigned < (needed or settings.overlap)


def check_idempotency_key(key: str | None) -> None:
    """An ``Idempotency-Key`` has 1-200 characters (or is absent)."""
    if key is not None and not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
        raise Invalid(
            f"Idempotency-Key must have 1-{MAX_IDEMPOTENCY_KEY} characters", field="Idempotency-Key"
        )


def idempotency_key_ok(key: str | None) -> bool:
    """:func:`check_idempotency_key` as a test (the hot paths leave a bad key to the full path)."""
    return key is None or 1 <= len(key) <= MAX_IDEMPOTENCY_KEY


# --------------------------------------------------------------------------- the gates


class NextRoute(enum.Enum):
    """What a next-task call does, decided by :func:`next_route`."""

    NOT_FOUND = "not_found"  # not a member (and not an admin): the project is invisible
    PAUSED = "paused"  # 403 with the pause reason
    LIVE = "live"  # the caller's live lease, handed back
    QUALIFY = "qualify"  # a gold item, for qualification (or nothing when none is left)
    GOLD = "gold"  # a gold item mixed in at gold_rate (or a regular one when none is left)
    REGULAR = "regular"  # the next open regular item


def next_route(
    settings: ProjectSettings,
    *,
    member: bool,
    is_admin: bool,
    paused: bool,
    live_lease: bool,
    qualification: str | None,
    draw: float,
) -> NextRoute:
    """The next-task gate, after the token check (see the module's docstring). An admin without
    a membership is treated as a qualified manager (they get one on first use)."""
    if not member:
        if not is_admin:
            return NextRoute.NOT_FOUND
        qualification = "qualified"
    elif paused:
        return NextRoute.PAUSED
    if live_lease:
        return NextRoute.LIVE
    if needs_qualification(settings, qualification):
        return NextRoute.QUALIFY
    if draws_gold(settings, draw):
        return NextRoute.GOLD
    return NextRoute.REGULAR


class SubmitRoute(enum.Enum):
    """What a submit does with a task the caller owns, decided by :func:`submit_route`."""

    REPLAY = "replay"  # the task was submitted and the key may be its own: look it up
    SUBMITTED = "submitted"  # 409: already submitted (change it with PATCH)
    SKIPPED = "skipped"  # 409: skipped
    LATE = "late"  # the lease was reclaimed: store only if the item still needs a label
    STORE = "store"  # the common case: store the annotation


def submit_route(state: str, is_gold: bool, key: str | None) -> SubmitRoute:
    """The submit gate for a task of the caller's in ``state`` (after the key and owner checks)."""
    if state == "submitted":
        return SubmitRoute.REPLAY if key is not None else SubmitRoute.SUBMITTED
    if state == "skipped":
        return SubmitRoute.SKIPPED
    if state == "expired" and not is_gold:
        return SubmitRoute.LATE
    return SubmitRoute.STORE


# --------------------------------------------------------------------------- the SQL forms


def _setting_int(settings: Any, name: str) -> ColumnElement[Any]:
    return func.coalesce(settings[name].as_integer(), getattr(_DEFAULTS, name))


def _setting_float(settings: Any, name: str) -> ColumnElement[Any]:
    return func.coalesce(settings[name].as_float(), getattr(_DEFAULTS, name))


def pg_token_usable(expires_at: Any, is_active: Any, kind: Any, required_kind: Any, now: Any) -> Any:
    """:func:`check_token` in SQL: the token is usable (its row exists and this holds)."""
    return and_(
        is_active,
        or_(expires_at.is_(None), expires_at >= now),
        or_(required_kind.is_(None), kind == required_kind),
    )


def pg_common_lease(
    settings: Any, *, paused: Any, live_task_id: Any, has_expired: Any, qualification: Any, draw: Any
) -> Any:
    """:func:`next_route` is :attr:`NextRoute.REGULAR` for a member, and no lease needs
    reclaiming, in SQL over the project's JSON ``settings`` (missing names take the defaults of
    :class:`ProjectSettings`)."""
    return and_(
        not_(paused),
        live_task_id.is_(None),
        not_(has_expired),
        # not needs_qualification
        or_(qualification == "qualified", _setting_int(settings, "qualification_size") <= 0),
        # not draws_gold
        _setting_float(settings, "gold_rate") <= draw,
    )


def pg_overlap(settings: Any) -> Any:
    """The project's ``overlap`` in SQL."""
    return _setting_int(settings, "overlap")


def pg_lease_until(settings: Any, now: Any) -> Any:
    """:func:`lease_until` in SQL."""
    seconds = _setting_int(settings, "lease_seconds")
    return now + func.make_interval(0, 0, 0, 0, 0, 0, seconds)


# --------------------------------------------------------------------------- what annotators see


def shown_meta(schema: LabelSchema, meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """The part of an item's ``meta`` an annotator may see: only what the schema shows, the meta
    fields a control names as its ``source`` and the media measurements (``meta.media``) of
    those fields; never anything else (a table's answer column, notes, provenance). None when
    nothing is left."""
    if not meta:
        return None
    sources = {control.source for control in schema.controls}
    shown = {key: meta[key] for key in sources if key in meta and key != "media"}
    media = meta.get("media")
    if isinstance(media, dict):
        measured = {key: media[key] for key in sources if key in media}
        if measured:
            shown["media"] = measured
    return shown or None
