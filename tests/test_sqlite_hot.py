"""The SQLite hot path's statements store and read values exactly as SQLAlchemy does, and its
transactions never wait."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    insert,
    select,
)

from labelmill.store.engine import Database, WriterBusy
from labelmill.store.models import JSONType, Task, UTCDateTime
from labelmill.store.sqlite_hot import Compiled, SqliteHotPath

_META = MetaData()
_THINGS = Table(
    "things",
    _META,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime()),
    Column("doc", JSONType),
    Column("flag", Boolean),
    Column("score", Float),
    Column("name", String(50)),
)
_COLUMNS = ("at", "doc", "flag", "score", "name")
_INSERT = Compiled(insert(_THINGS).values({c: bindparam(c) for c in _COLUMNS}).returning(_THINGS.c.id))
_READ_ALL = select(*(_THINGS.c[c] for c in _COLUMNS))
_READ = Compiled(_READ_ALL.where(_THINGS.c.id == bindparam("id")))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
things = st.fixed_dictionaries(
    {
        "at": st.datetimes(
            min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ),
        "doc": st.dictionaries(st.text(max_size=8), json_values, max_size=4),
        "flag": st.booleans(),
        "score": st.floats(allow_nan=False, allow_infinity=False),
        "name": st.text(max_size=50),
    }
)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("hot") / "things.db"
    engine = create_engine(f"sqlite:///{path}")
    _META.create_all(engine)
    conn = sqlite3.connect(path, isolation_level=None)
    yield engine, conn
    conn.close()
    engine.dispose()


def _raw(conn: sqlite3.Connection, row_id: int) -> tuple[Any, ...]:
    return tuple(
        conn.execute("SELECT at, doc, flag, score, name FROM things WHERE id = ?", (row_id,)).fetchone()
    )


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(thing=things)
def test_values_round_trip_exactly_as_through_sqlalchemy(stores: Any, thing: dict[str, Any]) -> None:
    engine, conn = stores
    with engine.begin() as sa:
        by_sqlalchemy = sa.execute(insert(_THINGS).values(thing).returning(_THINGS.c.id)).scalar_one()
    rows = conn.execute(_INSERT.sql, _INSERT.args(thing)).fetchall()
    by_hot = _INSERT.make_row(rows[0]).id
    # the same stored form, whoever wrote it
    assert _raw(conn, by_hot) == _raw(conn, by_sqlalchemy)
    # and each reads back what either wrote, as SQLAlchemy would
    for row_id in (by_hot, by_sqlalchemy):
        hot = _READ.make_row(conn.execute(_READ.sql, _READ.args({"id": row_id})).fetchone())
        with engine.connect() as sa:
            expected = sa.execute(
                select(*(_THINGS.c[c] for c in _COLUMNS)).where(_THINGS.c.id == row_id)
            ).one()
        assert tuple(hot) == tuple(expected)
        assert hot._asdict() == thing


def test_statements_needing_python_defaults_are_refused() -> None:
    values = {"project_id": bindparam("pid"), "item_id": 1, "annotator_id": 1, "expires_at": None}
    with pytest.raises(ValueError, match="give these columns a value"):  # state, is_gold
        Compiled(insert(Task).values(values))


def test_a_missing_parameter_is_named() -> None:
    with pytest.raises(KeyError, match=r"missing parameters: \['id'\]"):
        _READ.args({})


@pytest.fixture
def hot(tmp_path: Path) -> Any:
    db = Database(f"sqlite:///{tmp_path / 'hot.db'}")
    path = SqliteHotPath(db)
    yield path
    path.close()
    db.dispose()


def test_transactions_never_wait_for_the_write_lock(hot: SqliteHotPath) -> None:
    """WriterBusy at once, whether a thread of this process or another process holds the lock;
    afterwards the hot path writes again."""
    count = "SELECT count(*) FROM jobs"
    add = "INSERT INTO jobs (kind, status, progress_done) VALUES ('x', 'done', 0)"
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with hot.db.connect(immediate=True):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        with pytest.raises(WriterBusy), hot.transaction():
            pytest.fail("ran while another thread held the write lock")
    finally:
        release.set()
        thread.join()
    other = sqlite3.connect(hot.db.engine.url.database or "", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(WriterBusy), hot.transaction():
            pytest.fail("ran while another process held the write lock")
    finally:
        other.rollback()
        other.close()
    with hot.transaction():
        hot.conn.execute(add)
    assert hot.conn.execute(count).fetchone() == (1,)


def test_a_failed_transaction_leaves_nothing_behind(hot: SqliteHotPath) -> None:
    with pytest.raises(RuntimeError), hot.transaction():
        hot.conn.execute("INSERT INTO jobs (kind, status, progress_done) VALUES ('x', 'done', 0)")
        raise RuntimeError("validation failed after a write")
    assert hot.conn.execute("SELECT count(*) FROM jobs").fetchone() == (0,)
    with hot.db.connect(immediate=True):  # and the in-process writer lock was released
        pass


def test_a_failed_commit_is_rolled_back_and_the_connection_stays_usable(hot: SqliteHotPath) -> None:
    """A COMMIT that fails (here: a deferred foreign key check) leaves SQLite's transaction
    open; the hot path rolls it back, so the write lock is free and the next call works."""
    with pytest.raises(sqlite3.IntegrityError), hot.transaction():
        hot.conn.execute("PRAGMA defer_foreign_keys=ON")
        hot.conn.execute(
            "INSERT INTO jobs (project_id, kind, status, progress_done) VALUES (999, 'x', 'done', 0)"
        )
    assert not hot.conn.in_transaction
    with hot.transaction():
        hot.conn.execute("INSERT INTO jobs (kind, status, progress_done) VALUES ('x', 'done', 0)")
    assert hot.conn.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
