"""Load the demo projects into a database and a media store.

Idempotent: projects that already exist are left as they are; the ``demo`` admin's password
is reset on every run so that the printed login always works.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from labelmill.demo.content import DemoProject, build_demo_projects
from labelmill.formats.records import ImportRecord
from labelmill.services.ingest import import_records
from labelmill.services.projects import create_project, project_item_count
from labelmill.services.users import create_user, hash_password
from labelmill.store.engine import Database
from labelmill.store.media import MediaStore, media_url
from labelmill.store.models import Project, User

DEMO_USER = "demo"


def _demo_user(db: Database, password: str) -> int:
    with db.session() as session:
        user = session.scalar(select(User).where(User.name == DEMO_USER))
        if user is None:
            user = create_user(session, DEMO_USER, role="admin", password=password)
        else:
            user.password_hash = hash_password(password)
            user.is_active = True
        return user.id


def _records(demo: DemoProject, project_id: int, media: MediaStore) -> list[ImportRecord]:
    keys = {name: media.put_bytes(content, f"{project_id}/{name}") for name, content in demo.media.items()}
    records = []
    for line, raw in enumerate(demo.records, start=1):
        data: dict[str, Any] = {
            k: (media_url(keys[v]) if isinstance(v, str) and v in keys else v) for k, v in raw["data"].items()
        }
        records.append(
            ImportRecord(
                source=f"demo:{demo.name}",
                line=line,
                data=data,
                external_id=raw.get("external_id"),
                predictions=list(raw.get("predictions") or []),
                gold=raw.get("gold"),
                meta=raw.get("meta"),
            )
        )
    return records


def load_demo(db: Database, media: MediaStore, *, password: str) -> list[tuple[str, int]]:
    """Create the demo admin and any demo project not there yet; returns (project name, items)."""
    user_id = _demo_user(db, password)
    loaded: list[tuple[str, int]] = []
    for demo in build_demo_projects():
        with db.session() as session:
            project = session.scalar(select(Project).where(Project.name == demo.name))
            if project is not None:
                loaded.append((demo.name, project_item_count(session, project.id)))
                continue
            owner = session.get(User, user_id)
            project = create_project(
                session,
                demo.name,
                demo.schema,
                settings=demo.settings,
                description=demo.description,
                instructions=demo.instructions,
                owner=owner,
            )
            project_id = project.id  # create_project made the owner its manager
        result = import_records(db, project_id, _records(demo, project_id, media), media=media)
        loaded.append((demo.name, result.created))
    return loaded
