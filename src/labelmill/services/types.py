"""The stored types routes and other callers of the services name (the event-loop hot paths
among them), re-exported so that the API layer depends on services only
(routes never import :mod:`labelmill.store`)."""

from __future__ import annotations

from labelmill.store.engine import Database
from labelmill.store.media import LocalMediaStore, MediaStore, safe_media_name
from labelmill.store.models import Annotation, ApiToken, Item, Job, Member, Project, User
from labelmill.store.pg_async import HotPath
from labelmill.store.sqlite_hot import SqliteHotPath

__all__ = [
    "Annotation",
    "ApiToken",
    "Database",
    "HotPath",
    "Item",
    "Job",
    "LocalMediaStore",
    "MediaStore",
    "Member",
    "Project",
    "SqliteHotPath",
    "User",
    "safe_media_name",
]
