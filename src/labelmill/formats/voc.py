"""Pascal VOC: ``Annotations/<stem>.xml`` per image, ``ImageSets/Main/default.txt``, ``JPEGImages/``.

VOC boxes are 1-based inclusive pixel indices: a box at labelmill pixels ``x, y, w, h`` (0-based
top-left corner and extent) is written ``xmin = x + 1``, ``ymin = y + 1``, ``xmax = x + w``,
``ymax = y + h``, which is what the VOC devkit and readers such as supervision (which subtract 1
from the minima) expect. Coordinates are written as integers when they are whole and as decimals
otherwise, so sub-pixel labels survive a round trip.

Boxes controls give ``<object>``\\s with a ``<bndbox>``; polygons controls give objects whose
``<bndbox>`` is the polygon's bounding box plus a ``<polygon>`` of ``<x1>, <y1>, <x2>, ...``
vertices (also 1-based), the extension Roboflow and supervision read. Items with no label under the
export options, or whose image size is unknown (``<size>`` is required), are skipped and counted in
``labelmill_export.txt``. Images the media store has locally are copied into ``JPEGImages/`` (under
their own extension: VOC tools look images up by stem). In ``annotations`` mode every annotator's
objects go into the one XML file of the item.
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from labelmill.formats.exporting import ExportContext, ExportRow, controls_of
from labelmill.formats.images import (
    ImageSkips,
    LabelTarget,
    bounds,
    box_of,
    check_target,
    copy_media,
    flat_stem,
    labelled_images,
    listed,
    make_record,
    media_suffix,
    points_of,
    unique_stem,
)
from labelmill.formats.media import IMAGE_EXTENSIONS, probe_media
from labelmill.formats.records import FormatError, ImportRecord

__all__ = ["VOC_EXPORTER", "VocExporter", "read_voc"]


def _num(value: float) -> str:
    """Whole pixels as integers (what most VOC tools expect), fractions with enough digits to
    round-trip well below a millionth of a pixel."""
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.10f}".rstrip("0").rstrip(".")


def _sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
    element = ET.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


class VocExporter:
    """Writes a Pascal VOC dataset folder."""

    name = "voc"
    target: Literal["file", "folder"] = "folder"
    description = (
        "Pascal VOC folder: Annotations/<stem>.xml (1-based pixel boxes, polygons as <polygon>), "
        "ImageSets/Main/default.txt, JPEGImages/"
    )

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        controls = controls_of(ctx.schema, "boxes", "polygons")
        if not controls:
            raise ValueError("Pascal VOC export needs a boxes or polygons control")
        source = str(controls[0].source)
        controls = [c for c in controls if c.source == source]
        out = Path(out)
        annotations_dir, images_dir = out / "Annotations", out / "JPEGImages"
        sets_dir = out / "ImageSets" / "Main"
        for folder in (annotations_dir, images_dir, sets_dir):
            folder.mkdir(parents=True, exist_ok=True)
        written = not_local = 0
        skips = ImageSkips()
        with (sets_dir / "default.txt").open("w", encoding="utf-8") as image_set:
            for line, row, pairs, info, width, height in labelled_images(rows, source, ctx, skips):
                stem = unique_stem(flat_stem(info.name), annotations_dir, ".xml", line)
                file_name = f"{stem}{media_suffix(info)}"
                root = ET.Element("annotation")
                _sub(root, "folder", "JPEGImages")
                _sub(root, "filename", file_name)
                _sub(root, "path", info.ref)
                origin = _sub(root, "source")
                _sub(origin, "database", ctx.project_name)
                _sub(origin, "annotation", "labelmill")
                if row.get("external_id") is not None:
                    _sub(origin, "external_id", str(row["external_id"]))
                size = _sub(root, "size")
                _sub(size, "width", _num(width))
                _sub(size, "height", _num(height))
                _sub(size, "depth", "3")
                segmented = _sub(root, "segmented", "0")
                for value, meta in pairs:
                    for control in controls:
                        for entry in listed(value, control.name):
                            label = entry.get("label")
                            if label not in control.class_set:
                                continue
                            obj = _object(control.type, str(label), entry)
                            if obj is None:
                                continue
                            if meta.get("annotator") is not None:
                                _sub(obj, "annotator", str(meta["annotator"]))
                            if obj.find("polygon") is not None:
                                segmented.text = "1"
                            root.append(obj)
                ET.indent(root)
                ET.ElementTree(root).write(
                    annotations_dir / f"{stem}.xml", encoding="utf-8", xml_declaration=True
                )
                image_set.write(f"{stem}\n")
                if info.local is not None:
                    copy_media(info.local, images_dir / file_name)
                else:
                    not_local += 1
                written += 1
        notes = [f"labelmill Pascal VOC export of {ctx.project_name}: {written} images"]
        if skips.without_size:
            notes.append(f"{skips.without_size} items skipped: their image size is unknown")
        if skips.unlabelled:
            notes.append(f"{skips.unlabelled} items skipped: they have no label ({ctx.options.labels})")
        if skips.without_image:
            notes.append(f"{skips.without_image} items skipped: no image in data field {source!r}")
        if not_local:
            notes.append(f"{not_local} images are not stored locally and were not copied into JPEGImages/")
        (out / "labelmill_export.txt").write_text("".join(f"{n}\n" for n in notes), encoding="utf-8")
        return written


def _object(kind: str, label: str, entry: dict[str, Any]) -> ET.Element | None:
    polygon: list[tuple[float, float]] | None = None
    if kind == "boxes":
        box = box_of(entry)
    else:
        polygon = points_of(entry)
        box = bounds(polygon) if polygon is not None else None
    if box is None:
        return None
    x, y, w, h = box
    obj = ET.Element("object")
    _sub(obj, "name", label)
    _sub(obj, "pose", "Unspecified")
    _sub(obj, "truncated", "0")
    _sub(obj, "difficult", "0")
    bndbox = _sub(obj, "bndbox")
    _sub(bndbox, "xmin", _num(x + 1))
    _sub(bndbox, "ymin", _num(y + 1))
    _sub(bndbox, "xmax", _num(x + w))
    _sub(bndbox, "ymax", _num(y + h))
    if polygon is not None:
        element = _sub(obj, "polygon")
        for n, (px, py) in enumerate(polygon, start=1):
            _sub(element, f"x{n}", _num(px + 1))
            _sub(element, f"y{n}", _num(py + 1))
    return obj


VOC_EXPORTER = VocExporter()


# --------------------------------------------------------------------------- import


def _coordinate(parent: ET.Element, tag: str, where: str, path: str) -> float:
    text = parent.findtext(tag)
    if text is None or not text.strip():
        raise FormatError(where, 1, f"{path}.{tag}", "missing")
    try:
        value = float(text)
    except ValueError:
        raise FormatError(where, 1, f"{path}.{tag}", f"expected a number, got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise FormatError(where, 1, f"{path}.{tag}", "expected a finite number")
    return value


def _polygon_points(element: ET.Element, where: str, path: str) -> list[list[float]]:
    coordinates: dict[str, dict[int, float]] = {"x": {}, "y": {}}
    for child in element:
        axis, index = child.tag[:1], child.tag[1:]
        if axis not in coordinates or not index.isdigit():
            raise FormatError(where, 1, f"{path}.{child.tag}", "expected <x1>, <y1>, <x2>, ... vertices")
        coordinates[axis][int(index)] = _coordinate(element, child.tag, where, path)
    xs, ys = coordinates["x"], coordinates["y"]
    if sorted(xs) != sorted(ys) or sorted(xs) != list(range(1, len(xs) + 1)) or len(xs) < 3:
        raise FormatError(where, 1, path, "a polygon needs x1, y1 ... xn, yn for 3 or more vertices")
    return [[xs[n] - 1, ys[n] - 1] for n in range(1, len(xs) + 1)]


def _objects(root: ET.Element, where: str, shape: str) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = []
    for n, obj in enumerate(root.findall("object")):
        path = f"object[{n}]"
        label = (obj.findtext("name") or "").strip()
        if not label:
            raise FormatError(where, 1, f"{path}.name", "missing class name")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise FormatError(where, 1, f"{path}.bndbox", "missing")
        xmin, ymin, xmax, ymax = (
            _coordinate(bndbox, tag, where, f"{path}.bndbox") for tag in ("xmin", "ymin", "xmax", "ymax")
        )
        x, y = xmin - 1, ymin - 1
        w, h = xmax - x, ymax - y
        if x < 0 or y < 0:
            raise FormatError(where, 1, f"{path}.bndbox", "xmin and ymin are 1-based: they must be >= 1")
        if w <= 0 or h <= 0:
            raise FormatError(where, 1, f"{path}.bndbox", "xmax and ymax must not be less than xmin and ymin")
        element = obj.find("polygon")
        points = _polygon_points(element, where, f"{path}.polygon") if element is not None else None
        if points is not None and shape != "boxes":
            values.append({"points": points, "label": label})
        elif shape == "polygons":
            values.append({"points": [[x, y], [x + w, y], [x + w, y + h], [x, y + h]], "label": label})
        else:
            values.append({"x": x, "y": y, "w": w, "h": h, "label": label})
    return values


def _image_of(root: Path, filename: str, stem: str) -> Path | None:
    images = root / "JPEGImages"
    if filename:
        candidate = (images / filename).resolve()
        if images.resolve() in candidate.parents and candidate.is_file():
            return candidate
    for suffix in sorted(IMAGE_EXTENSIONS):
        for variant in (suffix, suffix.upper()):
            candidate = images / f"{stem}{variant}"
            if candidate.is_file():
                return candidate
    return None


def read_voc(
    folder: str | os.PathLike[str],
    *,
    control: str,
    target: LabelTarget = "gold",
    source: str = "image",
    shape: Literal["auto", "boxes", "polygons"] = "auto",
    model_version: str = "voc",
    annotator: str = "voc",
) -> Iterator[ImportRecord]:
    """One record per ``Annotations/*.xml`` (sorted), its objects as ``target`` labels of ``control``.

    Boxes are converted from VOC's 1-based inclusive indices to labelmill pixels (``x = xmin - 1``,
    ``w = xmax - xmin + 1``). An object with a ``<polygon>`` becomes a polygon under
    ``shape="auto"``; ``shape`` forces one kind, because one control holds one kind. The image named
    by ``<filename>`` (else the XML's stem with any image extension) is attached from
    ``JPEGImages/`` when present; the size comes from ``<size>``, else from the image.
    """
    check_target(target)
    if shape not in ("auto", "boxes", "polygons"):
        raise ValueError(f"unknown shape {shape!r}; expected auto, boxes or polygons")
    root = Path(folder)
    name = root.name or str(root)
    annotations = root / "Annotations"
    if not annotations.is_dir():
        raise FormatError(
            name, 0, "Annotations", "missing: a Pascal VOC dataset keeps its XML in Annotations/"
        )
    files = sorted(
        p for p in annotations.iterdir() if p.suffix.lower() == ".xml" and not p.name.startswith(".")
    )
    for n, xml_file in enumerate(files, start=1):
        where = f"{name}/Annotations/{xml_file.name}"
        try:
            tree = ET.parse(xml_file)
        except ET.ParseError as exc:
            raise FormatError(where, exc.position[0], "", f"not valid XML ({exc})") from None
        document = tree.getroot()
        if document.tag != "annotation":
            raise FormatError(where, 1, "", f"expected an <annotation> document, got <{document.tag}>")
        filename = (document.findtext("filename") or "").strip()
        image = _image_of(root, filename, xml_file.stem)
        size: dict[str, Any] = {}
        element = document.find("size")
        if element is not None:
            try:
                width, height = float(element.findtext("width") or 0), float(element.findtext("height") or 0)
            except ValueError:
                width = height = 0.0
            if width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height):
                size = {
                    "width": int(width) if width.is_integer() else width,
                    "height": int(height) if height.is_integer() else height,
                }
        if not size and image is not None:
            try:
                size = probe_media(image, "image")
            except ValueError as exc:
                raise FormatError(where, 1, "filename", f"{image.name}: {exc}") from None
        name_in_data = image.name if image is not None else (filename or xml_file.stem)
        yield make_record(
            name,
            n,
            {source: name_in_data},
            xml_file.stem,
            control=control,
            values=_objects(document, where, shape),
            target=target,
            meta={"media": {source: size}} if size else None,
            media_files=[(source, image)] if image is not None else [],
            model_version=model_version,
            annotator=annotator,
        )
