"""A SQLAlchemy Core statement compiled once, for the event-loop hot paths that run it with a
driver directly (:mod:`labelmill.store.pg_async`, :mod:`labelmill.store.sqlite_hot`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


class CompiledStatement:
    """A Core statement compiled once for ``dialect`` (a positional paramstyle): its SQL, the
    order of its parameters, and the values of the constants SQLAlchemy made parameters of
    (``LIMIT 1``, literal strings)."""

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        self.compiled = cast(SQLCompiler, statement.compile(dialect=dialect))
        self.sql = str(self.compiled)
        every = self.compiled.construct_params(_check=False)
        self.constants = {k: v for k, v in every.items() if v is not None}
        self.order = tuple(self.compiled.positiontup or ())

    def ordered(self, values: Mapping[str, Any]) -> list[Any]:
        """The parameters in order: ``values`` over the constants."""
        merged = {**self.constants, **values}
        try:
            return [merged[name] for name in self.order]
        except KeyError as exc:  # looked for only when one is missing: this runs at every call
            missing = sorted(name for name in self.order if name not in merged)
            raise KeyError(f"missing parameters: {missing}") from exc
