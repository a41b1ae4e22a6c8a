"""Importing a folder of media files: one item per image or audio file.

Each item's data names its file by the path relative to the folder (also its external id, so
re-importing the same folder is recognisable), and its ``meta`` records what annotation needs to
know before the file is ever opened in a browser: pixel size for images (box coordinates are pixels
of the original image) and duration for audio (segment times are seconds). Probing reads headers
only, so scanning thousands of large files stays quick.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from labelmill.formats.records import FormatError, ImportRecord

__all__ = ["AUDIO_EXTENSIONS", "IMAGE_EXTENSIONS", "MediaKind", "probe_media", "scan_media_folder"]

MediaKind = Literal["image", "audio"]

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
#: What libsndfile (through soundfile) reads; .m4a/.aac are absent because libsndfile cannot.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})


def media_kind(path: Path) -> MediaKind | None:
    """Which kind of media a file is, by its extension (None: not media, so not imported)."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in AUDIO_EXTENSIONS:
        return "audio"
    return None


def probe_media(path: Path, kind: MediaKind) -> dict[str, Any]:
    """The facts annotation needs about a media file, reading only its header.

    Raises ``ValueError`` with a readable reason when the file is not what its extension says.
    """
    if kind == "image":
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                width, height = image.size
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            raise ValueError(f"not a readable image ({exc})") from None
        if width <= 0 or height <= 0:
            raise ValueError(f"image has no pixels ({width}x{height})")
        return {"width": width, "height": height}
    import soundfile

    try:
        info = soundfile.info(str(path))
    except (RuntimeError, OSError) as exc:  # soundfile.LibsndfileError derives from RuntimeError
        raise ValueError(f"not a readable audio file ({exc})") from None
    return {
        "duration": float(info.duration),
        "sample_rate": int(info.samplerate),
        "channels": int(info.channels),
    }


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _walk(root: Path) -> Iterator[tuple[Path, bool]]:
    """Every non-hidden file under root, sorted, each with "is a symlink leading outside root".

    A symlinked folder is yielded like a file when it leads outside (to be refused) and skipped
    otherwise: its target is inside the folder and scanned anyway, and not following links rules out
    symlink loops.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        entries = []
        kept = []
        for name in dirnames:
            if name.startswith("."):
                continue
            sub = here / name
            if sub.is_symlink():
                if not _inside(sub.resolve(), root):
                    entries.append((sub, True))
                continue
            kept.append(name)
        dirnames[:] = sorted(kept)
        for name in filenames:
            if not name.startswith("."):
                file = here / name
                entries.append((file, file.is_symlink() and not _inside(file.resolve(), root)))
        yield from sorted(entries)


def scan_media_folder(
    path: str | os.PathLike[str], *, kind: MediaKind | None = None, source_name: str | None = None
) -> Iterator[ImportRecord]:
    """One record per image or audio file under ``path`` (recursive, sorted, hidden files skipped).

    ``kind`` restricts the scan to images or to audio. Other files are ignored: folders of media
    routinely carry READMEs and sidecar files. Errors name the file (``source``) and its position in
    the scan (``line``, 1-based).
    """
    root = Path(path).resolve()
    source = source_name if source_name is not None else Path(path).name or str(path)
    if not root.is_dir():
        raise FormatError(source, 1, "", "not a folder")
    n = 0
    for file, escapes in _walk(root):
        if escapes:
            rel = file.relative_to(root).as_posix()
            raise FormatError(
                f"{source}/{rel}", n + 1, "", "symbolic link points outside the folder; refused"
            )
        file_kind = media_kind(file)
        if file_kind is None or (kind is not None and file_kind != kind):
            continue
        n += 1
        rel = file.relative_to(root).as_posix()
        try:
            info = probe_media(file, file_kind)
        except ValueError as exc:
            raise FormatError(f"{source}/{rel}", n, file_kind, str(exc)) from None
        yield ImportRecord(
            source,
            n,
            {file_kind: rel},
            rel,
            meta={"media": {file_kind: info}},
            media_files=[(file_kind, file)],
        )
