"""Alembic environment: runs on the connection :func:`labelmill.store.engine.migrate` hands in."""

from __future__ import annotations

from alembic import context

from labelmill.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only via `alembic` on the command line
    from labelmill.config import get_settings
    from labelmill.store.engine import make_engine

    connection = make_engine(get_settings().resolved_database_url()).connect()

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
