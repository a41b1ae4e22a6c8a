"""Statements run straight on the event loop, on PostgreSQL: the annotator loop's hot path.

Through SQLAlchemy and a worker thread, one statement costs the server about 250 µs of Python
(connection checkout, execution context, result wrapping, the thread hop) against 70-110 µs for
psycopg alone; at fifty annotators the API process is CPU-bound on exactly that. So the few
statements of the annotator loop are built with SQLAlchemy Core (one definition of every rule,
shared with the ORM paths), compiled once for psycopg, and run by psycopg's asyncio connection
pool without leaving the event loop. Everything else uses :class:`~labelmill.store.engine.Database`.

The pool's connections run in autocommit (each hot statement is atomic by itself), in UTC, and
with generic plans: these statements look rows up by id through fixed indexes, so planning them
again at every call (PostgreSQL's default for the first uses of a prepared statement, and for
good when it misjudges the generic plan's cost) would only cost time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from psycopg import AsyncConnection
from psycopg.rows import namedtuple_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import make_url
from sqlalchemy.dialects.postgresql import psycopg as pg_psycopg
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

#: Connections per API process. The database has two cores' worth of work to do for them; more
#: connections would only queue inside PostgreSQL instead of in the pool.
POOL_MAX = 16
POOL_MIN = 2
_DIALECT = pg_psycopg.dialect()


class Compiled:
    """A Core statement compiled once for psycopg: its SQL (``%(name)s`` parameters) and the
    values of the constants SQLAlchemy made parameters of (``LIMIT 1``, literal strings)."""

    def __init__(self, statement: ClauseElement) -> None:
        compiled = cast(SQLCompiler, statement.compile(dialect=_DIALECT))
        self.sql = str(compiled)
        every = compiled.construct_params(_check=False)
        self.constants = {k: v for k, v in every.items() if v is not None}
        self.names = frozenset(every)

    def params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        missing = self.names - self.constants.keys() - values.keys()
        if missing:
            raise KeyError(f"missing parameters: {sorted(missing)}")
        return {**self.constants, **values}


def conninfo(url: str) -> str:
    """A libpq URL for a SQLAlchemy ``postgresql+psycopg://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


class HotPath:
    """The asyncio pool of one API process; open it and close it on the event loop that uses it
    (the app's lifespan does)."""

    def __init__(self, url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> None:
        self.pool: AsyncConnectionPool[AsyncConnection[Any]] = AsyncConnectionPool(
            conninfo(url),
            min_size=min_size,
            max_size=max_size,
            open=False,
            name="labelmill-hot-path",
            connection_class=AsyncConnection[Any],
            kwargs={
                "autocommit": True,
                "prepare_threshold": 0,
                "row_factory": namedtuple_row,
                "options": "-c plan_cache_mode=force_generic_plan -c TimeZone=UTC",
            },
        )

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def fetch_one(self, statement: Compiled, values: Mapping[str, Any]) -> Any:
        """Run one statement (a transaction by itself) and return its first row (a named
        tuple), or None."""
        conn = await self.pool.getconn()
        try:
            cursor = await conn.execute(statement.sql, statement.params(values), prepare=True)
            return await cursor.fetchone()
        finally:
            await self.pool.putconn(conn)
