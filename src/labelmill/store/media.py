"""Media storage: the files items refer to (images, audio), kept outside the database.

Keys look like ``media/<project_id>/<name>``; item data refers to a stored file as
``media://<project_id>/<name>`` and the web app serves it under ``/media/<project_id>/<name>``.
Names come from users (file names in an uploaded folder, archive members), so every name is checked
by :func:`safe_media_name` and every resolved path is checked again to lie inside the store: nothing
is ever written outside the root. Writes go to a temporary file that is renamed into place, so an
interrupted import leaves no half-written file.

A store is opened from a URL (:func:`open_media_store`), and that URL, never a path, is what
settings and job parameters keep: ``file:///srv/media`` (or a plain path) is a local folder today;
an fsspec/S3-backed store can implement :class:`MediaStore` later without touching its callers.

Project isolation: a media reference resolves only inside the project that holds it
(:meth:`MediaStore.resolve`), so an item of one project can never reach another project's files,
in imports, exports or the media route.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

__all__ = [
    "KEY_PREFIX",
    "MEDIA_SCHEME",
    "LocalMediaStore",
    "MediaStore",
    "media_key",
    "media_url",
    "open_media_store",
    "resolve_ref",
    "safe_media_name",
]

#: Every key starts with this, naming the URL space media is served from.
KEY_PREFIX = "media/"
#: How item data refers to a stored file: ``media://<project_id>/<name>``.
MEDIA_SCHEME = "media://"
_DRIVE = re.compile(r"^[A-Za-z]:")
_URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
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


def media_url(key: str) -> str:
    """How item data refers to a stored media file: ``media://<project_id>/<name>``."""
    return MEDIA_SCHEME + key.removeprefix(KEY_PREFIX)


def resolve_ref(ref: str, project_id: int) -> str:
    """The key of ``ref`` (``media://<project>/<name>``, or a bare ``name`` of the project), only when
    it lies inside ``project_id``'s own media; ``ValueError`` (one line) otherwise.

    This is the one place a media reference becomes a key, so no import, export or route can reach
    another project's files through a crafted reference.
    """
    if not isinstance(ref, str):
        raise ValueError(f"media reference {ref!r} is not a string")
    if ref.startswith(MEDIA_SCHEME):
        head, sep, name = ref[len(MEDIA_SCHEME) :].partition("/")
        if not sep or not head.isdigit():
            raise ValueError(f"media reference {ref!r} is not media://<project>/<name>")
        if int(head) != project_id:
            raise ValueError(
                f"media reference {ref!r} belongs to another project; "
                f"project {project_id} can use only its own media"
            )
    else:
        name = ref
    return media_key(f"{project_id}/{safe_media_name(name)}")


def open_media_store(url: str | os.PathLike[str]) -> MediaStore:
    """The media store at ``url``: ``file:///abs/folder`` or a plain path is a local folder.

    Other schemes (``s3://``, ``gs://``, ...) are refused with a one-line ``ValueError`` for now. A
    plain path is accepted so that settings and job parameters written before stores had URLs
    (``media_root``: a folder) keep working.
    """
    text = os.fspath(url)
    if not text:
        raise ValueError("media URL is empty: give a folder or a file:// URL")
    match = _URL_SCHEME.match(text)
    if match is None or _DRIVE.match(text):
        return LocalMediaStore(Path(text).expanduser())
    scheme = match.group(1).lower()
    if scheme != "file":
        raise ValueError(
            f"media URL {text!r}: scheme {scheme}:// is not supported yet "
            "(only a local folder: a file:// URL or a path)"
        )
    parts = urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"media URL {text!r}: file:// URLs must name a local folder (file:///path)")
    if not parts.path:
        raise ValueError(f"media URL {text!r}: no folder in the URL (file:///path)")
    return LocalMediaStore(Path(url2pathname(unquote(parts.path))))


class MediaStore(ABC):
    """Where media lives; services use only this, so the backend (disk, S3) is a deployment choice.

    Keys are ``media/<project_id>/<name>``; a backend stores bytes under them. Callers that start from
    a reference in item data go through :meth:`resolve`, which keeps every project to its own files.
    """

    #: Where the store is: what settings and job parameters keep (:func:`open_media_store` reopens it).
    url: str

    @abstractmethod
    def put_file(self, src: Path, name: str) -> str:
        """Copy a local file in under ``name``; return its key."""

    @abstractmethod
    def put_bytes(self, data: bytes, name: str) -> str:
        """Store ``data`` under ``name``; return its key."""

    @abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """Open a stored file for reading; ``FileNotFoundError`` when it is not stored."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a key is stored."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove a key; False when it was not there."""

    @abstractmethod
    def delete_project(self, project_id: int) -> int:
        """Remove every file of a project; returns how many were removed."""

    def local_path(self, key: str) -> Path | None:
        """The file of ``key`` on this machine when the backend keeps files locally, else None."""
        return None

    def resolve(self, ref: str, project_id: int) -> str:
        """The key of a media reference inside ``project_id``'s own media (see :func:`resolve_ref`)."""
        return resolve_ref(ref, project_id)


class LocalMediaStore(MediaStore):
    """Media in a local directory: key ``media/<name>`` is the file ``<root>/<name>``."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        self.url = self.root.as_uri()

    def __repr__(self) -> str:
        return f"LocalMediaStore({self.url!r})"

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

    def local_path(self, key: str) -> Path | None:
        """The stored file of ``key``, or None when it is not stored."""
        path = self.path(key)
        return path if path.is_file() else None

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

    def delete_project(self, project_id: int) -> int:
        """Remove the folder ``<root>/<project_id>`` and everything in it (a symlink is unlinked,
        never followed); returns how many files were removed."""
        folder = self.root / str(int(project_id))
        if folder.is_symlink():
            folder.unlink()
            return 0
        if not folder.is_dir():
            return 0
        count = sum(len(files) for _, _, files in os.walk(folder))  # os.walk follows no symlink
        shutil.rmtree(folder)
        return count
