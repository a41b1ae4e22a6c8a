"""SQLAlchemy 2 models: the one place the database shape is declared.

Alembic migrations (``store/migrations``) must match this module; ``tests/test_store.py``
checks that they do. Columns the annotation queue reads on its hot path are denormalised on
``items`` (``annotation_count``, ``is_gold``, ``priority``) so next-task is an index range scan.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: JSON on SQLite, JSONB on PostgreSQL.
JSONType = JSON().with_variant(JSONB(), "postgresql")
#: 64-bit ids on PostgreSQL; SQLite only auto-increments a plain INTEGER primary key.
BigId = BigInteger().with_variant(Integer(), "sqlite")

#: Global roles: admin (everything), creator (may also create projects), member.
USER_ROLES = ("admin", "creator", "member")
MEMBER_ROLES = ("manager", "reviewer", "annotator")
TASK_STATES = ("leased", "submitted", "skipped", "expired")
JOB_STATES = ("queued", "running", "done", "failed", "cancelled")


class UTCDateTime(TypeDecorator[datetime]):
    """Times are stored in UTC; SQLite hands them back naive, so mark them UTC on the way out."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


def _now() -> Any:
    return func.now()


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="member")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())


class ApiToken(Base):
    """A bearer secret. Only its SHA-256 is stored; ``kind`` is ``api`` or ``session`` (web cookie)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(150), default="")
    kind: Mapped[str] = mapped_column(String(16), default="api")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Project(Base):
    __tablename__ = "projects"
    #: SQLite: never reuse a deleted project's id (files keyed by it must not reach a newcomer).
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    instructions: Mapped[str] = mapped_column(Text, default="")
    label_schema: Mapped[dict[str, Any]] = mapped_column(JSONType)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now(), onupdate=_now())


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (UniqueConstraint("project_id", "user_id", name="uq_members_project_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(16))
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    pause_reason: Mapped[str | None] = mapped_column(Text)
    #: Who set ``paused`` last: ``manager`` (a decision automatic pausing never overrides),
    #: ``auto`` (spammer detection or gold accuracy), or None (never decided).
    paused_by: Mapped[str | None] = mapped_column(String(16))
    #: ``pending`` until the annotator has passed the project's gold qualification, then ``qualified``.
    qualification: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id", name="uq_items_project_external_id"),
        Index("ix_items_project_id_id", "project_id", "id"),
        # Next-task reads the open, non-gold items of a project best-first; done items are not
        # in this index at all, so the query costs the same at 0% and at 99% done.
        Index(
            "ix_items_open",
            "project_id",
            text("priority DESC"),
            "id",
            sqlite_where=text("is_open AND NOT is_gold"),
            postgresql_where=text("is_open AND NOT is_gold"),
        ),
        Index(
            "ix_items_gold",
            "project_id",
            "id",
            sqlite_where=text("is_gold"),
            postgresql_where=text("is_gold"),
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSONType)
    meta: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    #: The true answer of a gold (honeypot) item. Managers only: never serialised for annotators.
    gold: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    priority: Mapped[float] = mapped_column(Float, default=0.0)
    annotation_count: Mapped[int] = mapped_column(Integer, default=0)
    #: Slots taken: submitted annotations plus live leases (gold items excepted from overlap).
    assigned: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: Labels this item should get, when adaptive overlap asked for more than the project's overlap.
    needed: Mapped[int | None] = mapped_column(Integer)
    #: assigned < needed (or the project's overlap): the item can be handed out.
    is_open: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())


def labels_needed(overlap: Any) -> Any:
    """How many labels an item should get: its own ``needed`` (raised by adaptive overlap) or
    the project's ``overlap`` (a number or a bind parameter). An item is open while
    ``assigned`` is below this."""
    return func.coalesce(Item.needed, overlap)


class Task(Base):
    """One annotator's lease on one item; ``(item_id, annotator_id)`` is unique: never the same item twice."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id", name="uq_tasks_item_annotator"),
        Index("ix_tasks_project_annotator_state", "project_id", "annotator_id", "state"),
        Index("ix_tasks_project_state_expires", "project_id", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16), default="leased")
    #: Served as a gold (honeypot) item; never shown to the annotator.
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    leased_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Annotation(Base):
    __tablename__ = "annotations"
    __table_args__ = (
        Index("ix_annotations_project_item", "project_id", "item_id"),
        Index("ix_annotations_project_annotator", "project_id", "annotator_id"),
        Index("ix_annotations_project_status", "project_id", "status"),
        UniqueConstraint("annotator_id", "idempotency_key", name="uq_annotations_idempotency"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    task_id: Mapped[int | None] = mapped_column(
        BigId, ForeignKey("tasks.id", ondelete="SET NULL"), unique=True
    )
    value: Mapped[dict[str, Any]] = mapped_column(JSONType)
    #: Seconds from lease to submit, when the annotation came through the queue.
    lead_seconds: Mapped[float | None] = mapped_column(Float)
    #: ``submitted``; ``pending_review`` when drawn for review, then ``accepted``, ``rejected``
    #: or ``corrected``; a reviewer's correction itself is ``correction``.
    status: Mapped[str] = mapped_column(String(16), default="submitted")
    #: The client's ``Idempotency-Key``: a retried submit returns this annotation again.
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now(), onupdate=_now())


class Review(Base):
    """A reviewer's verdict on one annotation: accept, reject (item goes back to the queue) or correct."""

    __tablename__ = "reviews"
    __table_args__ = (Index("ix_reviews_project_annotation", "project_id", "annotation_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    annotation_id: Mapped[int] = mapped_column(BigId, ForeignKey("annotations.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())


class Prediction(Base):
    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_project_item", "project_id", "item_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("items.id", ondelete="CASCADE"))
    value: Mapped[dict[str, Any]] = mapped_column(JSONType)
    score: Mapped[float | None] = mapped_column(Float)
    model_version: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())


class Consensus(Base):
    """The aggregated label of an item; one row per item, rewritten by the quality refresh."""

    __tablename__ = "consensus"
    __table_args__ = (Index("ix_consensus_project", "project_id"),)

    item_id: Mapped[int] = mapped_column(BigId, ForeignKey("items.id", ondelete="CASCADE"), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    value: Mapped[dict[str, Any]] = mapped_column(JSONType)
    confidence: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(64))
    auto: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now(), onupdate=_now())


class AnnotatorSkill(Base):
    """Per-annotator skill estimated by the quality engine (one row per project, annotator, control)."""

    __tablename__ = "annotator_skills"
    __table_args__ = (
        UniqueConstraint("project_id", "annotator_id", "control", name="uq_skills_project_annotator_control"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    control: Mapped[str] = mapped_column(String(200))
    skill: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(64))
    spam_score: Mapped[float | None] = mapped_column(Float)
    spam_reason: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now(), onupdate=_now())


class Job(Base):
    """Background work with persisted progress (pre-label, train, aggregate, export, report)."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_status_created", "status", "created_at"),
        # Every submit asks whether its project already has a consensus refresh queued (the
        # debounce); finished jobs pile up, queued ones are a handful, so only those are indexed.
        Index(
            "ix_jobs_queued",
            "project_id",
            "kind",
            sqlite_where=text("status = 'queued'"),
            postgresql_where=text("status = 'queued'"),
        ),
        # A claim checks that no job of an exclusive kind (consensus) runs for the project, and the
        # reaper scans the running jobs' heartbeats: both read only the few running ones.
        Index(
            "ix_jobs_running",
            "project_id",
            "kind",
            sqlite_where=text("status = 'running'"),
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    params: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(Text)
    progress_done: Mapped[int] = mapped_column(BigInteger, default=0)
    progress_total: Mapped[int | None] = mapped_column(BigInteger)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), server_default=_now())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: The worker running the job (``host:pid:token``), its last sign of life, and how many
    #: times the job was claimed: a claim whose heartbeat stops is reaped (queued again, or
    #: failed once its kind's attempts are used up).
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
