"""The database shape: migrations equal the models, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from labelmill.store.engine import Database, normalise_url
from labelmill.store.models import Base

#: Expression indexes (``priority DESC``) that Alembic cannot compare by reflection; checked below.
EXPRESSION_INDEXES = {"ix_items_open"}


def _index_name(entry: Any) -> str | None:
    op = entry[0] if isinstance(entry, tuple) else None
    return entry[1].name if op in ("add_index", "remove_index") else None


def test_migrations_match_models(db: Any) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert [d for d in diff if _index_name(d) not in EXPRESSION_INDEXES] == []


def test_queue_index_is_partial_and_ordered(db: Any) -> None:
    with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'ix_items_open'").scalar()
        else:
            sql = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_items_open'"
            ).scalar()
    assert sql is not None
    assert "priority DESC" in sql and "is_open" in sql and "is_gold" in sql


def test_migrate_is_idempotent(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    Database(url).dispose()
    db = Database(url)  # second run finds the schema current
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    db.dispose()


def test_normalise_url() -> None:
    assert normalise_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
