"""The stored types routes and other callers of the services name, re-exported so that the API
layer depends on services only (routes never import :mod:`labelmill.store`)."""

from __future__ import annotations

from labelmill.store.engine import Database
from labelmill.store.media import LocalMediaStore, MediaStore, safe_media_name
from labelmill.store.models import Annotation, ApiToken, Item, Job, Member, Project, User

__all__ = [
    "Annotation",
    "ApiToken",
    "Database",
    "Item",
    "Job",
    "LocalMediaStore",
    "MediaStore",
    "Member",
    "Project",
    "User",
    "safe_media_name",
]
