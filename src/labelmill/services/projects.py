"""Projects, their settings and members, and who may do what in them.

Visibility rule: a user who is not a member of a project (and not an admin) gets "not found"
for it, never "forbidden", so project names and ids do not leak across teams.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import event, func, select, update
from sqlalchemy.orm import Session

from labelmill.schema import LabelSchema, SchemaError, parse_schema, schema_to_json
from labelmill.services.errors import Conflict, Forbidden, Invalid, NotFound
from labelmill.store.media import MediaStore
from labelmill.store.models import MEMBER_ROLES, Item, Job, Member, Project, User, labels_needed

log = logging.getLogger("labelmill.projects")

#: Roles that may manage a project; reviewers additionally read items and annotations.
MANAGE = ("manager",)
READ = ("manager", "reviewer")


class AssistSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    learner: str = "logistic"
    strategy: str = "uncertainty"
    auto_label_accuracy: float | None = Field(default=None, gt=0, le=1)
    audit_rate: float = Field(default=0.05, ge=0, le=1)
    retrain_every: int = Field(default=50, ge=1)


class ProjectSettings(BaseModel):
    """DESIGN.md "Project settings": names and defaults are a contract. Strict: ``"3"`` or
    ``true`` for an integer is refused rather than guessed at."""

    model_config = ConfigDict(extra="forbid", strict=True)

    overlap: int = Field(default=1, ge=1, le=1000)
    max_overlap: int | None = Field(default=None, ge=1, le=1000)
    target_confidence: float = Field(default=0.95, gt=0, le=1)
    lease_seconds: int = Field(default=600, ge=10, le=7 * 24 * 3600)
    gold_rate: float = Field(default=0.0, ge=0, le=1)
    qualification_size: int = Field(default=0, ge=0)
    qualification_threshold: float = Field(default=0.8, ge=0, le=1)
    review_rate: float = Field(default=0.0, ge=0, le=1)
    #: Spammer detection: flag annotators (score and reasons in stats) on evidence only.
    spam_detection: bool = True
    #: Pause flagged annotators until a manager resumes them (a manager's resume sticks).
    auto_pause: bool = True
    #: Spammer score at which an annotator is flagged (0.5 = any rule at its own threshold).
    spam_threshold: float = Field(default=0.5, gt=0, le=1)
    assist: AssistSettings | None = None

    @model_validator(mode="after")
    def _overlap_bounds(self) -> ProjectSettings:
        if self.max_overlap is None:
            self.max_overlap = self.overlap
        if self.max_overlap < self.overlap:
            raise ValueError(f"max_overlap ({self.max_overlap}) must be >= overlap ({self.overlap})")
        return self


def validate_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """Settings as stored: every name filled in, or :class:`Invalid` naming the bad field."""
    try:
        return ProjectSettings.model_validate(raw).model_dump(mode="json")
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = f"unknown setting (known: {', '.join(ProjectSettings.model_fields)})"
        raise Invalid(f"settings.{field}: {msg}", field=f"settings.{field}") from None


def settings_of(project: Project) -> ProjectSettings:
    """The project's settings as the typed object (stored settings were validated on write;
    names added since are filled with their defaults). Read every setting through this (or
    :func:`settings_from_json`), never from the stored dict: the defaults live in
    :class:`ProjectSettings` alone."""
    return _settings_cached(json.dumps(project.settings or {}, sort_keys=True))


#: The former name of :func:`settings_of`.
project_settings = settings_of


def settings_from_json(text: str | None) -> ProjectSettings:
    """:func:`settings_of` for settings read as their stored JSON text (the queue's hot paths
    read them so): the text is the cache key, so a cached parse costs no JSON decoding."""
    return _settings_cached(text or "{}")


@functools.lru_cache(maxsize=256)
def _settings_cached(key: str) -> ProjectSettings:
    return ProjectSettings.model_validate(json.loads(key) or {})


def load_schema(raw: Any) -> LabelSchema:
    """The parsed schema; stored schemas are parsed once per process (every submit validates
    against one, and parsing costs more than the validation itself)."""
    try:
        key = json.dumps(raw, sort_keys=True)
    except (TypeError, ValueError):
        key = None
    try:
        return _parse_cached(key) if key is not None else parse_schema(raw)
    except SchemaError as exc:
        raise Invalid(f"schema: {exc}", field="schema") from None


def load_schema_json(text: str) -> LabelSchema:
    """:func:`load_schema` for a schema read as its stored JSON text (the queue's submit reads
    it so): the text is the cache key, so a cached schema costs no JSON decoding at all."""
    try:
        return _parse_cached(text)
    except SchemaError as exc:
        raise Invalid(f"schema: {exc}", field="schema") from None


@functools.lru_cache(maxsize=256)
def _parse_cached(key: str) -> LabelSchema:
    return parse_schema(json.loads(key))


def create_project(
    session: Session,
    name: str,
    schema: dict[str, Any],
    *,
    settings: dict[str, Any] | None = None,
    description: str = "",
    instructions: str = "",
    owner: User | None = None,
) -> Project:
    name = name.strip()
    if not name or len(name) > 200:
        raise Invalid("project name must have 1-200 characters", field="name")
    if name.isdigit():
        raise Invalid("project name cannot be only digits (they are read as a project id)", field="name")
    parsed = load_schema(schema)
    stored_settings = validate_settings(settings or {})
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise Conflict(f"project {name!r} already exists", field="name")
    project = Project(
        name=name,
        label_schema=schema_to_json(parsed),
        settings=stored_settings,
        description=description,
        instructions=instructions,
        created_by=owner.id if owner else None,
    )
    session.add(project)
    session.flush()
    if owner is not None:
        session.add(Member(project_id=project.id, user_id=owner.id, role="manager"))
        session.flush()
    return project


def get_project(session: Session, ref: str | int) -> Project:
    """By id or by name (CLI PROJECT arguments accept either)."""
    project: Project | None = None
    if isinstance(ref, int) or ref.isdigit():
        project = session.get(Project, int(ref)) if 0 < int(ref) < 2**63 else None
    if project is None:
        project = session.scalar(select(Project).where(Project.name == str(ref)))
    if project is None:
        raise NotFound(f"no project {ref!r}", field="project")
    return project


def role_in(session: Session, user: User, project_id: int) -> str | None:
    if user.role == "admin":
        return "manager"
    return session.scalar(
        select(Member.role).where(Member.project_id == project_id, Member.user_id == user.id)
    )


def project_for(
    session: Session, user: User, project_id: int, roles: tuple[str, ...] = MEMBER_ROLES
) -> Project:
    """The project if ``user`` holds one of ``roles`` in it; 404 for strangers, 403 for too-low roles."""
    project = session.get(Project, project_id)
    role = role_in(session, user, project_id) if project else None
    if project is None or role is None:
        raise NotFound(f"no project {project_id}", field="project_id")
    if role not in roles:
        raise Forbidden(f"this needs the {' or '.join(roles)} role in project {project.name!r}")
    return project


def list_projects(session: Session, user: User) -> list[tuple[Project, str]]:
    if user.role == "admin":
        rows = session.scalars(select(Project).order_by(Project.id)).all()
        return [(p, "manager") for p in rows]
    stmt = (
        select(Project, Member.role)
        .join(Member, Member.project_id == Project.id)
        .where(Member.user_id == user.id)
        .order_by(Project.id)
    )
    return [(p, r) for p, r in session.execute(stmt).all()]


def update_project(session: Session, project: Project, changes: dict[str, Any]) -> Project:
    """PATCH semantics: given keys change; ``settings`` merges into the current settings."""
    if "name" in changes and changes["name"] != project.name:
        name = str(changes["name"]).strip()
        if not name or name.isdigit():
            raise Invalid("project name must be non-empty and not only digits", field="name")
        if session.scalar(select(Project.id).where(Project.name == name)) is not None:
            raise Conflict(f"project {name!r} already exists", field="name")
        project.name = name
    for key in ("description", "instructions"):
        if key in changes:
            setattr(project, key, str(changes[key]))
    if "schema" in changes:
        new_schema = load_schema(changes["schema"])
        if project_item_count(session, project.id):
            _check_schema_change(load_schema(project.label_schema), new_schema)
        project.label_schema = schema_to_json(new_schema)
    if "settings" in changes:
        current = settings_of(project)
        merged = {**project.settings, **(changes["settings"] or {})}
        new_overlap = merged.get("overlap")
        if "max_overlap" not in (changes["settings"] or {}) and type(new_overlap) is int:
            # Raising overlap above the old ceiling raises the ceiling with it.
            merged["max_overlap"] = max(new_overlap, current.max_overlap or 1)
        before = (current.overlap, current.max_overlap)
        project.settings = validate_settings(merged)
        after = settings_of(project)
        if (after.overlap, after.max_overlap) != before:
            _recompute_open(session, project)
    session.flush()
    return project


def _recompute_open(session: Session, project: Project) -> None:
    """Re-derive every item's open flag after the project's overlap changed."""
    overlap = settings_of(project).overlap
    session.execute(
        update(Item)
        .where(Item.project_id == project.id, ~Item.is_gold)
        .values(is_open=Item.assigned < labels_needed(overlap))
    )


def _check_schema_change(old: LabelSchema, new: LabelSchema) -> None:
    """Labels already stored must stay valid: controls may be added, classes appended, not removed."""
    for control in old.controls:
        try:
            replacement = new.control(control.name)
        except KeyError:
            raise Conflict(
                f"schema: control {control.name!r} cannot be removed from a project that has items",
                field="schema",
            ) from None
        if replacement.type != control.type:
            raise Conflict(f"schema: control {control.name!r} cannot change type", field="schema")
        gone = set(old.classes_of(control.name)) - set(new.classes_of(control.name))
        if gone:
            raise Conflict(
                f"schema: classes {sorted(gone)} of control {control.name!r} cannot be removed",
                field="schema",
            )


def delete_project(session: Session, project: Project, *, media: MediaStore | None = None) -> None:
    """Delete a project with everything in it: its rows, its media files (from ``media``) and the
    files its export jobs wrote.

    The files go once the deletion is committed (a rolled-back delete keeps them), so nothing a later
    project could be served or downloaded is left behind (project ids are never reused either:
    migration 0006).
    """
    project_id = project.id
    exports = [
        Path(str(result["file"]))
        for result in session.scalars(
            select(Job.result).where(Job.project_id == project_id, Job.kind == "export")
        )
        if isinstance(result, dict) and result.get("file")
    ]
    session.delete(project)
    session.flush()

    def remove_files() -> None:
        if media is not None:
            media.delete_project(project_id)
        for path in exports:
            path.unlink(missing_ok=True)

    _after_commit(session, remove_files)


def _after_commit(session: Session, action: Callable[[], None]) -> None:
    """Run ``action`` once when the session's transaction commits; never if it rolls back first."""
    state = {"pending": True}

    def committed(_: Session) -> None:
        if state["pending"]:
            state["pending"] = False
            try:
                action()
            except OSError:  # the rows are gone; a file that cannot be removed is logged, not fatal
                log.exception("deleting a project's files failed")

    def rolled_back(_: Session) -> None:
        state["pending"] = False

    event.listen(session, "after_commit", committed)
    event.listen(session, "after_rollback", rolled_back)


def project_item_count(session: Session, project_id: int) -> int:
    return session.scalar(select(func.count()).select_from(Item).where(Item.project_id == project_id)) or 0


def project_item_counts(session: Session, project_ids: list[int]) -> dict[int, int]:
    """Item counts of several projects in one query (a project list must not count one by one)."""
    if not project_ids:
        return {}
    stmt = (
        select(Item.project_id, func.count())
        .where(Item.project_id.in_(project_ids))
        .group_by(Item.project_id)
    )
    counts = {pid: 0 for pid in project_ids}
    counts.update({pid: int(n) for pid, n in session.execute(stmt)})
    return counts


def add_member(session: Session, project: Project, user: User, role: str) -> Member:
    """Add ``user`` to ``project`` or change their role (idempotent)."""
    if role not in MEMBER_ROLES:
        raise Invalid(f"role {role!r} is not one of {', '.join(MEMBER_ROLES)}", field="role")
    member = session.scalar(select(Member).where(Member.project_id == project.id, Member.user_id == user.id))
    if member is None:
        member = Member(project_id=project.id, user_id=user.id, role=role)
        session.add(member)
    else:
        member.role = role
    session.flush()
    return member


def list_members(session: Session, project: Project) -> list[tuple[Member, User]]:
    stmt = (
        select(Member, User)
        .join(User, User.id == Member.user_id)
        .where(Member.project_id == project.id)
        .order_by(Member.id)
    )
    return [(m, u) for m, u in session.execute(stmt).all()]


def get_member(session: Session, project: Project, user_id: int) -> Member:
    member = session.scalar(select(Member).where(Member.project_id == project.id, Member.user_id == user_id))
    if member is None:
        raise NotFound(f"user {user_id} is not a member of project {project.name!r}", field="user_id")
    return member


def remove_member(session: Session, project: Project, user_id: int) -> None:
    member = get_member(session, project, user_id)
    if member.role == "manager":
        managers = session.scalar(
            select(func.count())
            .select_from(Member)
            .where(Member.project_id == project.id, Member.role == "manager")
        )
        if managers == 1:
            raise Conflict("cannot remove the last manager of a project", field="user_id")
    session.delete(member)
