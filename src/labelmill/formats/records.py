"""The one shape every importer produces, and the one error every importer raises.

Readers turn very different files (JSONL, CSV, Parquet, Label Studio JSON, media folders) into a
stream of :class:`ImportRecord`, so the ingest service validates and stores them in one place.
Every problem with the input is a :class:`FormatError` that names the file, the line and the
field, because an import is all-or-nothing and the user must be able to find what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["FormatError", "ImportRecord"]


@dataclass(slots=True)
class ImportRecord:
    """One item to import, with whatever labels the file already carried.

    ``line`` is 1-based (a JSONL line, a CSV line, a Parquet row, a Label Studio task, the n-th file of
    a folder) so error messages raised later, e.g. by schema validation in the ingest service, can
    still point at the place in the file.
    """

    source: str
    line: int
    data: dict[str, Any]
    external_id: str | None = None
    #: ``{"value": dict, "score": float | None, "model_version": str}`` each.
    predictions: list[dict[str, Any]] = field(default_factory=list)
    gold: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    #: ``{"annotator": str, "value": dict, "lead_seconds"?: float, "status"?: str, ...}`` each; present in
    #: our own JSONL export so that export -> import round-trips.
    annotations: list[dict[str, Any]] = field(default_factory=list)
    #: ``{"value", "confidence", "method", "auto"}`` or None.
    consensus: dict[str, Any] | None = None
    #: (data field, local file) pairs the ingest service copies into the media store.
    media_files: list[tuple[str, Path]] = field(default_factory=list)


class FormatError(Exception):
    """Bad input, located precisely: ``"{source}:{line}: {field}: {reason}"``.

    ``field`` is a path into the line such as ``predictions[0].score``; it is empty for problems with
    the whole line (broken JSON, wrong column count), and the message then drops that part.
    """

    def __init__(self, source: str, line: int, field: str, reason: str) -> None:
        self.source = source
        self.line = line
        self.field = field
        self.reason = reason
        super().__init__(f"{source}:{line}: {field}: {reason}" if field else f"{source}:{line}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the error picklable (jobs run in worker processes) despite the 4-argument __init__.
        return (type(self), (self.source, self.line, self.field, self.reason))
