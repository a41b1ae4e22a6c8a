"""annotation queue

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("annotation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["annotation_id"], ["annotations.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reviewer_id"], ["users.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index("ix_reviews_project_annotation", ["project_id", "annotation_id"], unique=False)

    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch_op.create_index("ix_annotations_project_status", ["project_id", "status"], unique=False)
        batch_op.create_unique_constraint("uq_annotations_idempotency", ["annotator_id", "idempotency_key"])

    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assigned", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("needed", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("is_open", sa.Boolean(), server_default=sa.true(), nullable=False))
        batch_op.drop_index(batch_op.f("ix_items_queue"))
        batch_op.create_index(
            "ix_items_gold",
            ["project_id", "id"],
            unique=False,
            sqlite_where=sa.text("is_gold"),
            postgresql_where=sa.text("is_gold"),
        )
    op.create_index(
        "ix_items_open",
        "items",
        ["project_id", sa.text("priority DESC"), "id"],
        unique=False,
        sqlite_where=sa.text("is_open AND NOT is_gold"),
        postgresql_where=sa.text("is_open AND NOT is_gold"),
    )
    # Existing labels take their slots; an item is open while it has fewer than the project's overlap.
    op.execute("UPDATE items SET assigned = annotation_count")
    bind = op.get_bind()
    for project_id, settings in bind.execute(sa.text("SELECT id, settings FROM projects")):
        overlap = int(
            (settings if isinstance(settings, dict) else __import__("json").loads(settings)).get("overlap", 1)
        )
        bind.execute(
            sa.text("UPDATE items SET is_open = (assigned < :overlap) WHERE project_id = :pid"),
            {"overlap": overlap, "pid": project_id},
        )

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("qualification", sa.String(length=16), server_default="pending", nullable=False)
        )

    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_gold", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("is_gold")

    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("qualification")

    op.drop_index("ix_items_open", table_name="items")
    with op.batch_alter_table("items", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_items_gold", sqlite_where=sa.text("is_gold"), postgresql_where=sa.text("is_gold")
        )
        batch_op.create_index(
            batch_op.f("ix_items_queue"),
            ["project_id", "is_gold", "annotation_count", "priority", "id"],
            unique=False,
        )
        batch_op.drop_column("is_open")
        batch_op.drop_column("needed")
        batch_op.drop_column("assigned")

    with op.batch_alter_table("annotations", schema=None) as batch_op:
        batch_op.drop_constraint("uq_annotations_idempotency", type_="unique")
        batch_op.drop_index("ix_annotations_project_status")
        batch_op.drop_column("idempotency_key")

    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_reviews_project_annotation")

    op.drop_table("reviews")
