"""Migration 0006 on SQLite: projects get AUTOINCREMENT (ids never reused) and the table rebuild
keeps every row that references a project, and every foreign key."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from labelmill.store.engine import MIGRATIONS_DIR, Database, make_engine, migrate

CHILDREN = (
    "members",
    "items",
    "tasks",
    "annotations",
    "predictions",
    "consensus",
    "jobs",
    "annotator_skills",
)


def _at_0004(path: Path) -> None:
    engine = make_engine(f"sqlite:///{path}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (id, name, role, is_active) VALUES (1, 'u', 'admin', 1)"))
        for pid in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO projects (id, name, description, instructions, label_schema, settings, "
                    "created_by) VALUES (:id, :name, '', '', '{}', '{}', 1)"
                ),
                {"id": pid, "name": f"p{pid}"},
            )
            conn.execute(
                text("INSERT INTO members (project_id, user_id, role, paused) VALUES (:p, 1, 'manager', 0)"),
                {"p": pid},
            )
            conn.execute(
                text(
                    "INSERT INTO items (project_id, external_id, data, is_gold, priority, annotation_count, "
                    "assigned, is_open) VALUES (:p, 'e', '{}', 0, 0, 0, 0, 1)"
                ),
                {"p": pid},
            )
        conn.execute(text("DELETE FROM projects WHERE id = 3"))  # the newest project is gone
    engine.dispose()


def _foreign_keys(db: Database) -> dict[str, list[tuple[str, str]]]:
    with db.engine.connect() as conn:
        return {
            table: sorted(
                (row[2], row[6]) for row in conn.exec_driver_sql(f"PRAGMA foreign_key_list({table})")
            )
            for table in CHILDREN
        }


def test_upgrade_keeps_rows_and_foreign_keys_and_ids_are_not_reused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _at_0004(path)
    old = Database(f"sqlite:///{path}", run_migrations=False)
    keys_before = _foreign_keys(old)
    old.dispose()

    db = Database(f"sqlite:///{path}")  # migrates to head
    with db.engine.connect() as conn:
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'projects'").scalar()
        assert "AUTOINCREMENT" in str(ddl)
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1  # enforcement is back on
        assert conn.exec_driver_sql("SELECT count(*) FROM members").scalar() == 2
        assert conn.exec_driver_sql("SELECT count(*) FROM items").scalar() == 2
        assert conn.exec_driver_sql("SELECT name FROM projects ORDER BY id").scalars().all() == ["p1", "p2"]
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    assert _foreign_keys(db) == keys_before
    assert ("projects", "CASCADE") in _foreign_keys(db)["items"]

    with db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM projects WHERE id = 2")  # cascades still work
        assert conn.exec_driver_sql("SELECT count(*) FROM items WHERE project_id = 2").scalar() == 0
        conn.exec_driver_sql(
            "INSERT INTO projects (name, description, instructions, label_schema, settings) "
            "VALUES ('new', '', '', '{}', '{}')"
        )
        new_id = conn.exec_driver_sql("SELECT id FROM projects WHERE name = 'new'").scalar()
    assert new_id == 3  # above every id in use at the migration, and never a deleted project's 2
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM projects WHERE id = 3")
        conn.exec_driver_sql(
            "INSERT INTO projects (name, description, instructions, label_schema, settings) "
            "VALUES ('newer', '', '', '{}', '{}')"
        )
        assert conn.exec_driver_sql("SELECT id FROM projects WHERE name = 'newer'").scalar() == 4
    db.dispose()


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    path = tmp_path / "db.db"
    db = Database(f"sqlite:///{path}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute("PRAGMA foreign_keys=OFF")
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0004")
        raw.execute("PRAGMA foreign_keys=ON")
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'projects'").scalar()
        assert "AUTOINCREMENT" not in str(ddl)
    migrate(db.engine)
    with db.engine.connect() as conn:
        ddl = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'projects'").scalar()
        assert "AUTOINCREMENT" in str(ddl)
    db.dispose()
