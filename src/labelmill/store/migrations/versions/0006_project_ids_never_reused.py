"""projects.id is never reused on SQLite (AUTOINCREMENT)

Without AUTOINCREMENT SQLite hands a new row the largest id + 1, so deleting the newest project and
creating another gave the newcomer the deleted project's id, and with it any file still keyed by that
id (media, exports). The table is rebuilt with AUTOINCREMENT; SQLite's sqlite_sequence starts at the
largest id in use. PostgreSQL sequences never hand out an id twice: nothing to do there.

The rebuild drops and recreates ``projects``, which many tables reference: :func:`migrate` runs
SQLite migrations with foreign-key enforcement off (else dropping the table would cascade-delete
every project's rows) and checks every reference afterwards.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "projects", recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
    ):
        pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
