"""Statements run straight on the event loop, on SQLite: the annotator loop's hot path.

Through SQLAlchemy, one statement of the annotator loop costs the server several times what
SQLite itself spends on it: a connection checkout, BEGIN through an event hook, an execution
context, result wrapping. At fifty annotators the API process is CPU-bound on exactly that. So,
as on PostgreSQL (:mod:`labelmill.store.pg_async`), the few statements of the annotator loop are
built with SQLAlchemy Core (one definition of every rule, shared with the full implementation),
compiled once, and run by :mod:`sqlite3` on one connection that only the event loop uses, with
SQLAlchemy's own type processing (times, JSON, booleans) applied to parameters and rows, so
both write and read the same stored forms.

Transactions here never wait: the event loop runs one at a time, start to end, and one that
would have to wait (another thread of this process or another process holds the write lock)
raises :class:`~labelmill.store.engine.WriterBusy` before doing anything; the caller then hands
the work to a worker thread, which waits for the lock.
"""

from __future__ import annotations

import sqlite3
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import make_url
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.types import TypeEngine

from labelmill.store.compiled import CompiledStatement
from labelmill.store.engine import Database, WriterBusy

_DIALECT = pysqlite.dialect()

Processor = Callable[[Any], Any]


def _bind_processor(type_: TypeEngine[Any]) -> Processor | None:
    # dialect_impl: SQLite's own variant of the type (its DATETIME stores times as text)
    return type_.dialect_impl(_DIALECT).bind_processor(_DIALECT)


def _result_processor(type_: TypeEngine[Any]) -> Processor | None:
    return type_.dialect_impl(_DIALECT).result_processor(_DIALECT, None)


class Compiled(CompiledStatement):
    """A Core statement compiled once for SQLite (``?`` parameters), with the bind processors
    of its parameters, and a row type (a named tuple, so columns are also attributes) with the
    result processors of its columns."""

    def __init__(self, statement: ClauseElement) -> None:
        super().__init__(statement, _DIALECT)
        compiled = self.compiled
        if compiled.insert_prefetch or compiled.update_prefetch:
            # Python-side column defaults are computed by SQLAlchemy's execution context,
            # which this path skips: such statements must give those columns a value.
            missing = [c.name for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
            raise ValueError(f"give these columns a value: {missing}")
        self.processors = tuple(_bind_processor(compiled.binds[name].type) for name in self.order)
        columns = list(getattr(statement, "exported_columns", ()))
        self.row: Any = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
        self.results = tuple(_result_processor(c.type) for c in columns)
        self._plain = not any(self.results)

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        raw = self.ordered(values)
        return [v if p is None or v is None else p(v) for v, p in zip(raw, self.processors, strict=True)]

    def make_row(self, raw: tuple[Any, ...]) -> Any:
        if self._plain:
            return self.row._make(raw)
        return self.row._make(v if p is None else p(v) for v, p in zip(raw, self.results, strict=True))


def sqlite_path(url: str) -> str | None:
    """The database file of a SQLite URL, or None for an in-memory database."""
    database = make_url(url).database
    return None if not database or database == ":memory:" else database


class SqliteHotPath:
    """One API process's event-loop connection to its SQLite file (use it on that loop only)."""

    def __init__(self, db: Database) -> None:
        path = sqlite_path(db.url)
        if path is None:
            raise ValueError("an in-memory SQLite database has no hot path")
        self.db = db
        # isolation_level=None: no implicit transactions, BEGIN and COMMIT are issued here.
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=0)
        for pragma in ("foreign_keys=ON", "synchronous=NORMAL", "busy_timeout=0"):
            self.conn.execute(f"PRAGMA {pragma}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[SqliteHotPath]:
        """A write transaction (``BEGIN IMMEDIATE``) that commits on success and rolls back on
        any error; :class:`WriterBusy` at once, before anything ran, if the write lock is taken
        (by a thread of this process or by another process)."""
        with self.db.writer_turn():
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise WriterBusy from None
                raise
            try:
                yield self
                self.conn.execute("COMMIT")
            except BaseException:
                # (SQLite itself rolls back on some errors; a failed COMMIT leaves it open)
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    def fetch_one(self, statement: Compiled, values: Mapping[str, Any]) -> Any:
        """The statement's first row (a named tuple), or None."""
        # fetchall: a statement with RETURNING completes only when stepped to its end
        rows = self.conn.execute(statement.sql, statement.args(values)).fetchall()
        return statement.make_row(rows[0]) if rows else None

    def fetch_all(self, statement: Compiled, values: Mapping[str, Any]) -> list[Any]:
        rows = self.conn.execute(statement.sql, statement.args(values)).fetchall()
        return [statement.make_row(raw) for raw in rows]

    def execute(self, statement: Compiled, values: Mapping[str, Any]) -> int:
        """Run a statement that returns no rows; the number of rows it changed."""
        return self.conn.execute(statement.sql, statement.args(values)).rowcount
