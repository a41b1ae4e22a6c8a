"""job lifecycle: a claimed job records its worker, heartbeat and attempts; running jobs indexed

A job is queued, then claimed by one worker (``claimed_by``) that keeps ``heartbeat_at`` fresh
while it runs, then done or failed. A claim whose heartbeat stops (a killed worker) is reaped:
queued again, or failed once ``attempts`` reaches its kind's limit. Jobs left ``running`` by an
older version have no claimant and no heartbeat, so the first reaper queues them again.

Plain ADD/DROP COLUMN on both databases (SQLite has both since 3.35): no table rebuild, every
row stays.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("claimed_by", sa.String(length=200), nullable=True))
    op.add_column("jobs", sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.create_index(
        "ix_jobs_running",
        "jobs",
        ["project_id", "kind"],
        unique=False,
        sqlite_where=sa.text("status = 'running'"),
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_running", table_name="jobs")
    op.drop_column("jobs", "attempts")
    op.drop_column("jobs", "heartbeat_at")
    op.drop_column("jobs", "claimed_by")
