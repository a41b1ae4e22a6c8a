"""The error types of the schema package.

There are exactly three, so callers (CLI, API, importers) can catch them without
knowing anything about pydantic: a bad schema file raises `SchemaError`, a bad
annotation value is described by `ValueIssue`s, and `check_value` raises
`AnnotationValueError` when a caller wants an exception instead of a list.
"""

from __future__ import annotations

from dataclasses import dataclass


class SchemaError(ValueError):
    """A label schema that cannot be used.

    `str(error)` is one human line per problem (``path: message``); the first line is the
    headline a CLI prints, the rest help fix everything in one go instead of one per run.
    """

    def __init__(self, message: str, lines: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: every problem found, one ``path: message`` line each (the message split on newlines)
        self.lines: list[str] = lines if lines is not None else message.splitlines()


@dataclass(frozen=True, slots=True)
class ValueIssue:
    """One problem with an annotation value.

    `path` points into the value the way a person reads it (``entities[2].end``; empty for
    the value as a whole), so the UI can put the message next to the region at fault.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class AnnotationValueError(ValueError):
    """An annotation value that does not fit its schema or its item.

    A `ValueError` so generic handlers (FastAPI's 422 mapping, the import loop) treat it as
    bad input; `.issues` keeps the structured problems for callers that render them.
    """

    def __init__(self, issues: list[ValueIssue]) -> None:
        self.issues: list[ValueIssue] = list(issues)
        super().__init__("; ".join(str(issue) for issue in self.issues))
