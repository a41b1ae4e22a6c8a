"""Persistence: SQLAlchemy models, engine and Alembic migrations."""

from labelmill.store.engine import Database, migrate, open_database
from labelmill.store.models import (
    Annotation,
    AnnotatorSkill,
    ApiToken,
    Base,
    Consensus,
    Item,
    Job,
    Member,
    Prediction,
    Project,
    Review,
    Task,
    User,
)

__all__ = [
    "Annotation",
    "AnnotatorSkill",
    "ApiToken",
    "Base",
    "Consensus",
    "Database",
    "Item",
    "Job",
    "Member",
    "Prediction",
    "Project",
    "Review",
    "Task",
    "User",
    "migrate",
    "open_database",
]
