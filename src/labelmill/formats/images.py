"""Image helpers the image dataset codecs (COCO, YOLO, Pascal VOC) share.

What an exporter needs to know about an item's image (:class:`ImageInfo`: its media name, pixel size
and, when the media store keeps it on this machine, its local file), the geometry of box, polygon and
keypoint values, file names in flat export folders, and the import record a dataset's labels become.

Media references reach a file only through ``ExportContext.media_path``, which the export service
builds from the media store for one project: a reference to another project's media resolves to
nothing, so no image export can ship another project's files.
"""

from __future__ import annotations

import math
import posixpath
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote, urlsplit

from labelmill.formats.exporting import ExportContext, ExportRow, labelled_values
from labelmill.formats.media import probe_media
from labelmill.formats.records import ImportRecord
from labelmill.schema import LabelSchema

__all__ = [
    "ImageInfo",
    "ImageSkips",
    "LabelTarget",
    "LabelledImage",
    "bounds",
    "box_of",
    "check_target",
    "class_names",
    "copy_media",
    "flat_stem",
    "image_info",
    "image_source",
    "labelled_images",
    "listed",
    "make_record",
    "media_name",
    "media_suffix",
    "points_of",
    "positive",
    "shoelace_area",
    "unique_stem",
]

#: Where imported labels go: the item's gold answer, a model prediction, or an annotation.
LabelTarget = Literal["gold", "predictions", "annotations"]


def media_name(ref: str) -> str:
    """The file name a media reference stands for: the media name of ``media://<project>/<name>``
    (which may contain folders), the last path part of a URL, else the last part of a path."""
    if ref.startswith("media://"):
        _, _, name = ref[len("media://") :].partition("/")
        return name or ref[len("media://") :]
    parts = urlsplit(ref)
    if parts.scheme and parts.netloc:
        return posixpath.basename(unquote(parts.path)) or parts.netloc
    return posixpath.basename(ref.replace("\\", "/")) or ref


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an exporter needs to know about an item's image."""

    ref: str
    #: The media file name (``sub/a.jpg`` for media stored under a folder).
    name: str
    width: float | None
    height: float | None
    #: The image on this machine, when the media store has it locally.
    local: Path | None

    @property
    def sized(self) -> bool:
        return self.width is not None and self.height is not None


def positive(number: Any) -> float | None:
    """A finite positive number as a float, else None (bools are not numbers here)."""
    if isinstance(number, bool) or not isinstance(number, int | float):
        return None
    value = float(number)
    return value if math.isfinite(value) and value > 0 else None


def image_info(
    row: ExportRow, source: str, ctx: ExportContext, *, need_local: bool = True
) -> ImageInfo | None:
    """The image an export row labels in its data field ``source`` (None when it has none).

    The size comes from ``meta["media"][source]`` recorded at import; when that is missing but the
    file is local, its header is read, because every format here needs the size (YOLO normalises by
    it, COCO and VOC record it) and guessing would corrupt the labels. ``need_local=False`` (COCO,
    which copies no images) looks for the local file only when the size is missing, sparing a file
    system call per item.
    """
    data = row.get("data") or {}
    ref = data.get(source) if isinstance(data, Mapping) else None
    if not isinstance(ref, str) or not ref:
        return None
    media = (row.get("meta") or {}).get("media")
    recorded = media.get(source) if isinstance(media, Mapping) else None
    width = height = None
    if isinstance(recorded, Mapping):
        width, height = positive(recorded.get("width")), positive(recorded.get("height"))
    local = None
    if need_local or width is None or height is None:
        local = ctx.media_path(ref)
        if local is not None and not local.is_file():
            local = None
    if (width is None or height is None) and local is not None:
        try:
            probed = probe_media(local, "image")
        except ValueError:
            probed = {}
        width, height = positive(probed.get("width")), positive(probed.get("height"))
    return ImageInfo(ref, media_name(ref), width, height, local)


def image_source(schema: LabelSchema, types: Iterable[str]) -> str | None:
    """The image field an export describes: the ``source`` of the first control of ``types``.

    COCO, YOLO and VOC have one image per record; a schema labelling two image fields exports the
    first one (controls on other fields are left out).
    """
    wanted = tuple(types)
    for control in schema.controls:
        if control.type in wanted:
            return str(control.source)
    return None


def class_names(controls: Iterable[Any]) -> list[str]:
    """The union of the controls' classes, in schema order: the category list of a dataset."""
    names: dict[str, None] = {}
    for control in controls:
        for label in control.classes:
            names.setdefault(label, None)
    return list(names)


def listed(value: Mapping[str, Any], control: str) -> list[dict[str, Any]]:
    """The objects (boxes, polygons, points) a value holds for a control; [] for anything else."""
    entries = value.get(control)
    if not isinstance(entries, list | tuple):
        return []
    return [entry for entry in entries if isinstance(entry, dict)]


def box_of(entry: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """``(x, y, w, h)`` of a box value, or None when it is not a box with a positive extent."""
    try:
        x, y, w, h = (float(entry[key]) for key in ("x", "y", "w", "h"))
    except (KeyError, TypeError, ValueError):
        return None
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return None
    return x, y, w, h


def points_of(entry: Mapping[str, Any]) -> list[tuple[float, float]] | None:
    """The vertices of a polygon value, or None when it is not a polygon of 3+ finite points."""
    raw = entry.get("points")
    if not isinstance(raw, list | tuple) or len(raw) < 3:
        return None
    points: list[tuple[float, float]] = []
    for point in raw:
        if not (isinstance(point, list | tuple) and len(point) == 2):
            return None
        try:
            x, y = float(point[0]), float(point[1])
        except (TypeError, ValueError):
            return None
        if not (math.isfinite(x) and math.isfinite(y)):
            return None
        points.append((x, y))
    return points


def bounds(points: Iterable[tuple[float, float]]) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` of the smallest box around the points."""
    xs, ys = zip(*points, strict=True)
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


def shoelace_area(points: list[tuple[float, float]]) -> float:
    """The area a simple polygon encloses (COCO's ``area`` of a polygon segmentation)."""
    total = 0.0
    for (x1, y1), (x2, y2) in zip(points, points[1:] + points[:1], strict=True):
        total += x1 * y2 - x2 * y1
    return abs(total) / 2.0


def copy_media(local: Path, dest: Path) -> None:
    """Copy an image into an export folder (a copy, not a link: editing the export must not change
    the media store)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(local, dest)


@dataclass
class ImageSkips:
    """Items an image exporter left out, by reason (its notes report them)."""

    unlabelled: int = 0
    without_image: int = 0
    without_size: int = 0


class LabelledImage(NamedTuple):
    line: int
    row: ExportRow
    pairs: list[tuple[dict[str, Any], dict[str, Any]]]
    info: ImageInfo
    width: float
    height: float


def labelled_images(
    rows: Iterable[ExportRow], source: str, ctx: ExportContext, skips: ImageSkips, *, need_local: bool = True
) -> Iterator[LabelledImage]:
    """Each item an image format can write: it has a label under the export options, an image,
    and a known image size (coordinates need it)."""
    for line, row in enumerate(rows, start=1):
        pairs = list(labelled_values(row, ctx))
        if not pairs:
            skips.unlabelled += 1
            continue
        info = image_info(row, source, ctx, need_local=need_local)
        if info is None:
            skips.without_image += 1
            continue
        if info.width is None or info.height is None:
            skips.without_size += 1
            continue
        yield LabelledImage(line, row, pairs, info, info.width, info.height)


def flat_stem(name: str) -> str:
    """A file-name stem for a media name in a flat folder (YOLO ``labels/``, VOC ``Annotations/``):
    folders are joined with ``__`` so ``a/x.jpg`` and ``b/x.jpg`` do not collide."""
    # String operations, not pathlib: pathlib interns every part, which grows with the export.
    folder, base = posixpath.split(name)
    parts = [*folder.split("/"), posixpath.splitext(base)[0]]
    stem = "__".join(p for p in parts if p not in ("", ".", ".."))
    return stem or "image"


def unique_stem(stem: str, taken: Path, suffix: str, line: int) -> str:
    """``stem``, or ``stem_<line>`` when ``taken/stem+suffix`` already exists.

    Asking the file system instead of remembering every stem keeps memory flat on huge exports.
    """
    if not (taken / f"{stem}{suffix}").exists():
        return stem
    candidate = f"{stem}_{line}"
    n = 1
    while (taken / f"{candidate}{suffix}").exists():
        n += 1
        candidate = f"{stem}_{line}_{n}"
    return candidate


def media_suffix(info: ImageInfo) -> str:
    """The image's file extension (``.jpg`` when the reference has none)."""
    suffix = posixpath.splitext(posixpath.basename(info.name))[1]
    if not suffix and info.local is not None:
        suffix = info.local.suffix
    return suffix or ".jpg"


def make_record(
    source_name: str,
    line: int,
    data: dict[str, Any],
    external_id: str | None,
    *,
    control: str,
    values: list[dict[str, Any]] | None,
    target: LabelTarget,
    meta: dict[str, Any] | None,
    media_files: list[tuple[str, Path]],
    score: float | None = None,
    model_version: str = "import",
    annotator: str = "import",
    extra_predictions: list[dict[str, Any]] | None = None,
) -> ImportRecord:
    """One import record whose labels (``values`` of ``control``) land where ``target`` says."""
    record = ImportRecord(source_name, line, data, external_id, meta=meta, media_files=media_files)
    if values is not None:
        value = {control: values}
        if target == "gold":
            record.gold = value
        elif target == "predictions":
            record.predictions.append({"value": value, "score": score, "model_version": model_version})
        elif target == "annotations":
            record.annotations.append({"annotator": annotator, "value": value})
        else:
            raise ValueError(f"unknown target {target!r}; expected gold, predictions or annotations")
    record.predictions.extend(extra_predictions or [])
    return record


def check_target(target: str) -> None:
    if target not in ("gold", "predictions", "annotations"):
        raise ValueError(f"unknown target {target!r}; expected gold, predictions or annotations")
