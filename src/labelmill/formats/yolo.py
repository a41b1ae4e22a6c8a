"""YOLO (Ultralytics layout): a folder of ``images/``, ``labels/<stem>.txt`` and ``data.yaml``.

YOLO coordinates are fractions of the image size, so an item whose pixel size is unknown cannot be
written and is skipped (and counted in a comment at the top of ``data.yaml``); so is an item with no
label under the export options. Every other item gets a label file, empty for an image labelled as
containing nothing (a background image, which YOLO trains on as a negative).

The task follows the schema: boxes controls give detection lines ``class cx cy w h``; without a
boxes control, polygons controls give segmentation lines ``class x1 y1 x2 y2 ...``. (Exporter
options carry no task choice, and a detection dataset is what most schemas with both mean; a
schema with both exports its boxes only.) Class ids index ``names`` in ``data.yaml``: the union of
the chosen controls' classes in schema order. Images are copied into ``images/`` when the media
store has them locally; the others are listed as missing in ``data.yaml``'s comments (their label
files are still written, so the images can be put in place later). ``train`` and ``val`` both
name ``images``: the split is the user's decision, not the label tool's.

In ``annotations`` mode every annotator's objects go into the one label file of the item.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml

from labelmill.formats.exporting import ExportContext, ExportRow, controls_of
from labelmill.formats.images import (
    ImageSkips,
    LabelTarget,
    box_of,
    check_target,
    copy_media,
    flat_stem,
    image_source,
    labelled_images,
    listed,
    make_record,
    media_suffix,
    points_of,
    unique_stem,
)
from labelmill.formats.images import class_names as schema_classes
from labelmill.formats.media import IMAGE_EXTENSIONS, probe_media
from labelmill.formats.records import FormatError, ImportRecord

__all__ = ["YOLO_EXPORTER", "YoloExporter", "denormalise_box", "normalise_box", "read_yolo"]

#: Normalised coordinates may overshoot [0, 1] by this much (float round-off) before it is an error.
_TOLERANCE = 1e-6


def normalise_box(
    x: float, y: float, w: float, h: float, width: float, height: float
) -> tuple[float, float, float, float]:
    """Pixel ``(x, y, w, h)`` (top-left corner) to YOLO ``(cx, cy, w, h)`` fractions of the image."""
    return (x + w / 2) / width, (y + h / 2) / height, w / width, h / height


def denormalise_box(
    cx: float, cy: float, w: float, h: float, width: float, height: float
) -> tuple[float, float, float, float]:
    """YOLO ``(cx, cy, w, h)`` fractions back to pixel ``(x, y, w, h)`` with a top-left corner."""
    pw, ph = w * width, h * height
    return cx * width - pw / 2, cy * height - ph / 2, pw, ph


def _num(value: float) -> str:
    """A coordinate as short text that still round-trips to well under a millionth of a pixel."""
    text = f"{value:.10f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


class YoloExporter:
    """Writes an Ultralytics-style YOLO detection or segmentation dataset folder."""

    name = "yolo"
    target: Literal["file", "folder"] = "folder"
    description = (
        "YOLO folder: images/, labels/<stem>.txt (detection from boxes, else segmentation from "
        "polygons), data.yaml with the class names"
    )

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        controls = controls_of(ctx.schema, "boxes")
        task = "detect"
        if not controls:
            controls, task = controls_of(ctx.schema, "polygons"), "segment"
        if not controls:
            raise ValueError("YOLO export needs a boxes or polygons control")
        source = image_source(ctx.schema, [controls[0].type])
        controls = [c for c in controls if c.source == source]
        assert source is not None
        names = schema_classes(controls)
        ids = {label: n for n, label in enumerate(names)}
        out = Path(out)
        images_dir, labels_dir = out / "images", out / "labels"
        images_dir.mkdir(parents=True, exist_ok=True)
        labels_dir.mkdir(parents=True, exist_ok=True)
        written = not_local = 0
        skips = ImageSkips()
        for line, _, pairs, info, width, height in labelled_images(rows, source, ctx, skips):
            stem = unique_stem(flat_stem(info.name), labels_dir, ".txt", line)
            lines: list[str] = []
            for value, _ in pairs:
                for control in controls:
                    for entry in listed(value, control.name):
                        label = ids.get(str(entry.get("label")))
                        if label is None:
                            continue
                        text = _label_line(task, label, entry, width, height)
                        if text is not None:
                            lines.append(text)
            (labels_dir / f"{stem}.txt").write_text("".join(f"{t}\n" for t in lines), encoding="utf-8")
            if info.local is not None:
                copy_media(info.local, images_dir / f"{stem}{media_suffix(info)}")
            else:
                not_local += 1
            written += 1
        notes = [f"labelmill YOLO {task} export of {ctx.project_name}: {written} images"]
        if skips.without_size:
            notes.append(
                f"{skips.without_size} items were skipped: their image size is unknown, and YOLO "
                "coordinates are fractions of it"
            )
        if skips.unlabelled:
            notes.append(f"{skips.unlabelled} items were skipped: they have no label ({ctx.options.labels})")
        if skips.without_image:
            notes.append(f"{skips.without_image} items were skipped: no image in data field {source!r}")
        if not_local:
            notes.append(
                f"{not_local} images are not stored locally and were not copied into images/ "
                "(their label files are written)"
            )
        config = {
            "path": str(out.resolve()),
            "train": "images",
            "val": "images",
            "nc": len(names),
            "names": dict(enumerate(names)),
        }
        header = "".join(f"# {note}\n" for note in notes)
        body = yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
        (out / "data.yaml").write_text(header + body, encoding="utf-8")
        return written


def _label_line(task: str, label: int, entry: dict[str, Any], width: float, height: float) -> str | None:
    if task == "detect":
        box = box_of(entry)
        if box is None:
            return None
        coords: tuple[float, ...] = normalise_box(*box, width, height)
    else:
        points = points_of(entry)
        if points is None:
            return None
        coords = tuple(c for x, y in points for c in (x / width, y / height))
    return " ".join([str(label), *(_num(_clip(c)) for c in coords)])


YOLO_EXPORTER = YoloExporter()


# --------------------------------------------------------------------------- import


def _names_from_yaml(folder: Path, source: str) -> list[str]:
    config_path = folder / "data.yaml"
    if not config_path.is_file():
        raise FormatError(source, 0, "data.yaml", "missing; pass class_names= to name the class ids")
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise FormatError(f"{source}/data.yaml", 1, "", f"not valid YAML ({exc})") from None
    names = config.get("names") if isinstance(config, dict) else None
    if isinstance(names, list) and all(isinstance(n, str) for n in names):
        return list(names)
    if isinstance(names, dict):
        try:
            order = sorted(names, key=int)
        except (TypeError, ValueError):
            order = None
        if order is not None and [int(k) for k in order] == list(range(len(order))):
            return [str(names[k]) for k in order]
    raise FormatError(
        f"{source}/data.yaml", 1, "names", "expected a list of class names or a mapping {0: name, 1: ...}"
    )


def _images(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS:
                yield path


def _parse_label_file(
    path: Path,
    where: str,
    names: list[str],
    width: float,
    height: float,
    shape: str,
) -> tuple[list[dict[str, Any]], list[float]]:
    """The values and detection scores of one label file."""
    values: list[dict[str, Any]] = []
    scores: list[float] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(where, 1, "", f"not valid UTF-8 text ({exc.reason})") from None
    for number, raw in enumerate(text.splitlines(), start=1):
        tokens = raw.split()
        if not tokens:
            continue
        try:
            klass = float(tokens[0])
        except ValueError:
            raise FormatError(where, number, "class", f"expected a class id, got {tokens[0]!r}") from None
        if not klass.is_integer() or not 0 <= klass < len(names):
            raise FormatError(
                where, number, "class", f"class id {tokens[0]} is not one of 0..{len(names) - 1}"
            )
        label = names[int(klass)]
        try:
            numbers = [float(t) for t in tokens[1:]]
        except ValueError:
            raise FormatError(where, number, "", "coordinates must be numbers") from None
        if not all(math.isfinite(v) for v in numbers):
            raise FormatError(where, number, "", "coordinates must be finite numbers")
        n = len(numbers)
        if n in (4, 5):
            coords, score = numbers[:4], (numbers[4] if n == 5 else None)
        elif n >= 6:
            coords, score = (numbers, None) if n % 2 == 0 else (numbers[:-1], numbers[-1])
        else:
            raise FormatError(where, number, "", f"expected 'class cx cy w h' or a polygon, got {raw!r}")
        if any(c < -_TOLERANCE or c > 1 + _TOLERANCE for c in coords):
            raise FormatError(where, number, "", "normalised coordinates must lie in [0, 1]")
        if score is not None:
            scores.append(score)
        values.append(_value(coords, label, width, height, shape, where, number))
    return values, scores


def _value(
    coords: list[float], label: str, width: float, height: float, shape: str, where: str, number: int
) -> dict[str, Any]:
    if len(coords) == 4:
        x, y, w, h = denormalise_box(coords[0], coords[1], coords[2], coords[3], width, height)
        if w <= 0 or h <= 0:
            raise FormatError(where, number, "", "box width and height must be > 0")
        x, y = max(0.0, x), max(0.0, y)
        w, h = min(w, width - x), min(h, height - y)
        if shape == "polygons":
            return {"points": [[x, y], [x + w, y], [x + w, y + h], [x, y + h]], "label": label}
        return {"x": x, "y": y, "w": w, "h": h, "label": label}
    points = [
        [min(width, max(0.0, coords[i] * width)), min(height, max(0.0, coords[i + 1] * height))]
        for i in range(0, len(coords), 2)
    ]
    if shape == "boxes":
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return {"x": min(xs), "y": min(ys), "w": max(xs) - min(xs), "h": max(ys) - min(ys), "label": label}
    return {"points": points, "label": label}


def read_yolo(
    folder: str | os.PathLike[str],
    *,
    control: str,
    target: LabelTarget = "gold",
    source: str = "image",
    class_names: list[str] | None = None,
    shape: Literal["auto", "boxes", "polygons"] = "auto",
    model_version: str = "yolo",
    annotator: str = "yolo",
) -> Iterator[ImportRecord]:
    """One record per image under ``images/`` (recursive, sorted), labelled from ``labels/<same
    path>.txt``, as ``target`` labels of ``control``.

    Class names come from ``class_names`` or ``data.yaml``'s ``names``. Detection lines become boxes
    and segmentation lines polygons (``shape="auto"``); ``shape`` forces one kind (a polygon's
    bounding box, a box's rectangle) because one control holds one kind. A trailing confidence
    (``class cx cy w h conf``, as YOLO writes predictions) is accepted; a prediction's score is the
    mean confidence (a labelmill value holds one score). The image is attached as a media file and
    its size read from its header, since YOLO's fractions mean nothing without it. An image with no
    label file is a background image: an empty list of objects.
    """
    check_target(target)
    if shape not in ("auto", "boxes", "polygons"):
        raise ValueError(f"unknown shape {shape!r}; expected auto, boxes or polygons")
    root = Path(folder)
    name = root.name or str(root)
    if not (root / "images").is_dir():
        raise FormatError(name, 0, "images", "missing: a YOLO dataset keeps its images in images/")
    names = list(class_names) if class_names is not None else _names_from_yaml(root, name)
    for n, image in enumerate(_images(root / "images"), start=1):
        rel = image.relative_to(root / "images")
        try:
            size = probe_media(image, "image")
        except ValueError as exc:
            raise FormatError(f"{name}/images/{rel.as_posix()}", n, "image", str(exc)) from None
        label_file = (root / "labels" / rel).with_suffix(".txt")
        values: list[dict[str, Any]] = []
        scores: list[float] = []
        if label_file.is_file():
            where = f"{name}/labels/{rel.with_suffix('.txt').as_posix()}"
            values, scores = _parse_label_file(label_file, where, names, size["width"], size["height"], shape)
        yield make_record(
            name,
            n,
            {source: rel.as_posix()},
            rel.as_posix(),
            control=control,
            values=values,
            target=target,
            meta={"media": {source: size}},
            media_files=[(source, image)],
            score=sum(scores) / len(scores) if scores else None,
            model_version=model_version,
            annotator=annotator,
        )
