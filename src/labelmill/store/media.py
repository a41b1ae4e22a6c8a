"""Media storage: the files items refer to (images, audio), kept outside the database.

Keys look like ``media/<project_id>/<name>`` and are what item data stores (``{"image": key}``), so
the web app can serve them under ``/media/...``. Names come from users (file names in an uploaded
folder, archive members), so every name is checked by :func:`safe_media_name` and every resolved
path is checked again to lie inside the store: nothing is ever written outside the root. Writes go
to a temporary file that is renamed into place, so an interrupted import leaves no half-written file.

:class:`MediaStore` is the protocol services depend on; :class:`LocalMediaStore` is the default, and
an fsspec/S3-backed store can implement the same protocol later.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

__all__ = ["KEY_PREFIX", "LocalMediaStore", "MediaStore", "media_key", "safe_media_name"]

#: Every key starts with this, naming the URL space media is served from.
KEY_PREFIX = "media/"
_DRIVE = re.compile(r"^[A-Za-z]:")
_MAX_SEGMENT_BYTES = 255  # the usual file-name limit of Linux, macOS and Windows file systems
_COPY_CHUNK = 1 << 20


def safe_media_name(name: str) -> str:
    """Return ``name`` if it is a safe relative path of ``/``-separated segments, else ``ValueError``.

    Rejected, whatever the platform: empty names, absolute paths, drive letters, backslashes (a
    separator on Windows), NUL and other control characters, empty, ``.`` and ``..`` segments, and
    segments too long for common file systems. Rejecting instead of "cleaning" keeps two different
    user names from silently landing on the same file.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"unsafe media name {name!r}: empty")
    if name.startswith("/"):
        raise ValueError(f"unsafe media name {name!r}: absolute path")
    if _DRIVE.match(name):
        raise ValueError(f"unsafe media name {name!r}: drive letter")
    if "\\" in name:
        raise ValueError(f"unsafe media name {name!r}: backslash")
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"unsafe media name {name!r}: NUL or control character")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"unsafe media name {name!r}: empty, '.' or '..' path segment")
        if len(segment.encode("utf-8", "surrogatepass")) > _MAX_SEGMENT_BYTES:
            raise ValueError(f"unsafe media name {name!r}: a path segment is longer than 255 bytes")
    return name


def media_key(name: str) -> str:
    """The key for a safe name: what item data stores and URLs use."""
    return KEY_PREFIX + safe_media_name(name)


@runtime_checkable
class MediaStore(Protocol):
    """Where media lives; services use only this, so the backend (disk, S3) is a deployment choice."""

    def put_file(self, src: Path, name: str) -> str:
        """Copy a local file in under ``name``; return its key."""
        ...

    def put_bytes(self, data: bytes, name: str) -> str:
        """Store ``data`` under ``name``; return its key."""
        ...

    def open(self, key: str) -> IO[bytes]:
        """Open a stored file for reading."""
        ...

    def exists(self, key: str) -> bool:
        """Whether a key is stored."""
        ...

    def delete(self, key: str) -> bool:
        """Remove a key; False when it was not there."""
        ...


class LocalMediaStore:
    """Media in a local directory: key ``media/<name>`` is the file ``<root>/<name>``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    def path(self, key: str) -> Path:
        """The file of ``key`` (a key, or a bare safe name); never a path outside the root."""
        name = key[len(KEY_PREFIX) :] if key.startswith(KEY_PREFIX) else key
        safe_media_name(name)
        path = self.root / name
        # The name is lexically safe; a symlink planted inside the root could still lead out.
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise ValueError(f"unsafe media name {name!r}: resolves outside the media root")
        return path

    @contextmanager
    def _atomic_writer(self, name: str) -> Iterator[tuple[IO[bytes], str]]:
        key = media_key(name)
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.path(key)  # re-check: creating directories must not have opened a way out
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as fp:
                yield fp, key
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def put_file(self, src: Path, name: str) -> str:
        """Copy ``src`` in under ``name`` (replacing an existing file atomically); return its key."""
        with self._atomic_writer(name) as (out, key), Path(src).open("rb") as inp:
            shutil.copyfileobj(inp, out, _COPY_CHUNK)
        return key

    def put_bytes(self, data: bytes, name: str) -> str:
        """Store ``data`` under ``name`` (replacing an existing file atomically); return its key."""
        with self._atomic_writer(name) as (out, key):
            out.write(data)
        return key

    def open(self, key: str) -> IO[bytes]:
        """Open a stored file for reading; ``FileNotFoundError`` when it is not stored."""
        return self.path(key).open("rb")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> bool:
        """Remove a stored file; False when it was not there (deleting twice is not an error)."""
        try:
            self.path(key).unlink()
        except FileNotFoundError:
            return False
        return True
