"""members.paused_by: who decided the member's pause state (a manager's decision sticks)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("paused_by", sa.String(length=16), nullable=True))
    # Pauses stored before this revision were the quality engine's unless a reason was typed by
    # hand; they stay automatic (a manager's resume from now on sticks).
    op.execute("UPDATE members SET paused_by = 'auto' WHERE paused")


def downgrade() -> None:
    with op.batch_alter_table("members") as batch:
        batch.drop_column("paused_by")
