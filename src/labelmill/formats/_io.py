"""Opening an import source: a path (optionally gzip-compressed) or an already open binary stream.

Readers take either so the CLI can pass files and the API can pass uploaded streams without a copy.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, cast

__all__ = ["SourceLike", "display_name", "open_binary", "utf8_error_reason"]

#: A file path or an open binary stream (text streams are accepted by the JSONL reader too).
SourceLike = str | os.PathLike[str] | IO[bytes] | IO[str]


def display_name(src: Any, given: str | None) -> str:
    """The name errors use: the caller's choice, else the file's base name, else the stream's name."""
    if given is not None:
        return given
    if isinstance(src, str | os.PathLike):
        return Path(src).name
    name = getattr(src, "name", None)
    return Path(name).name if isinstance(name, str) else "<stream>"


@contextmanager
def open_binary(src: Any) -> Iterator[IO[Any]]:
    """Open a path for reading (transparently un-gzipping ``*.gz``); leave a caller's stream open."""
    if isinstance(src, str | os.PathLike):
        path = Path(src)
        if path.suffix.lower() == ".gz":
            with gzip.open(path, "rb") as gz:
                yield cast(IO[bytes], gz)
        else:
            with path.open("rb") as fp:
                yield fp
    else:
        yield src


def utf8_error_reason(error: UnicodeDecodeError) -> str:
    """Explain a decoding failure in terms a user can act on."""
    return (
        f"not valid UTF-8 text (byte {error.start + 1} of the line is 0x{error.object[error.start]:02x}); "
        "save the file as UTF-8"
    )
