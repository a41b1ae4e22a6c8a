"""Statements run straight on the event loop, on PostgreSQL: the annotator loop's hot path.

Through SQLAlchemy and a worker thread, one statement costs the server about 250 µs of Python
(connection checkout, execution context, result wrapping, the thread hop). At fifty annotators
the API process is CPU-bound on exactly that, so the few statements of the annotator loop are
built with SQLAlchemy Core (one definition of every rule, shared with the ORM paths), compiled
once, and run by asyncpg on the event loop: about 110 µs of Python a statement with its pool,
measured under 50 concurrent requests, against 190 µs for psycopg's asyncio pool. Everything
else uses :class:`~labelmill.store.engine.Database`.

The pool's connections run outside transactions (each hot statement commits by itself, and
none changes session state, so a connection needs no reset between uses) and with generic
plans: these statements look rows up by id through fixed indexes, so planning them again at
every call (PostgreSQL's choice for the first uses of a prepared statement, and for good when
it misjudges the generic plan's cost) would only cost time.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import make_url
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.sql import ClauseElement

from labelmill.store.compiled import CompiledStatement

#: Connections per API process. The database has two cores' worth of work to do for them; more
#: connections would only queue inside PostgreSQL instead of in the pool.
POOL_MAX = 16
POOL_MIN = 2
_DIALECT = pg_asyncpg.dialect()
#: Generic plans (see above), and no JIT: on a large project the pick's estimated cost (the
#: whole open-items index, before LIMIT 1) passes ``jit_above_cost``, and compiling the plan
#: took 75 ms at every call, for a statement that runs in a fraction of a millisecond.
SERVER_SETTINGS = {"plan_cache_mode": "force_generic_plan", "jit": "off"}


class Row(asyncpg.Record):
    """A result row whose columns are also attributes, like SQLAlchemy's rows."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Compiled(CompiledStatement):
    """A Core statement compiled once for asyncpg (``$n`` parameters, each cast to its type)."""

    def __init__(self, statement: ClauseElement) -> None:
        super().__init__(statement, _DIALECT)

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return self.ordered(values)


def conninfo(url: str) -> str:
    """A libpq URL for a SQLAlchemy ``postgresql+...://`` URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON in and out as Python values, as SQLAlchemy hands them over.
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _no_reset(conn: asyncpg.Connection) -> None:
    """The hot statements open no transaction and change no setting: nothing to reset (asyncpg's
    default reset is one more round trip at every release)."""


class HotPath:
    """The asyncio pool of one API process; open it and close it on the event loop that uses it
    (the app's lifespan does)."""

    def __init__(self, url: str, *, min_size: int = POOL_MIN, max_size: int = POOL_MAX) -> None:
        self.dsn = conninfo(url)
        self.min_size, self.max_size = min_size, max_size
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            init=_init_connection,
            reset=_no_reset,
            record_class=Row,
            server_settings=SERVER_SETTINGS,
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool, for several statements in a row (each still commits by
        itself)."""
        assert self._pool is not None, "HotPath.open() first"
        async with self._pool.acquire() as conn:
            yield conn

    async def fetch_one(
        self, statement: Compiled, values: Mapping[str, Any], conn: asyncpg.Connection | None = None
    ) -> Any:
        """Run one statement (a transaction by itself) and return its first row (a :class:`Row`),
        or None; on ``conn``, or on a connection of the pool."""
        if conn is None:
            async with self.connection() as conn:
                return await conn.fetchrow(statement.sql, *statement.args(values))
        return await conn.fetchrow(statement.sql, *statement.args(values))
