"""COCO: the object-detection dataset format of record, exported as one JSON file and read back.

Export writes ``{"categories", "images", "annotations", "info", "licenses"}`` where boxes become
``bbox`` ``[x, y, w, h]`` with ``area``; polygons become ``segmentation`` ``[[x1, y1, ...]]`` with
their shoelace ``area`` and bounding ``bbox``; each keypoints control becomes one person-like
category whose ``keypoints`` are the control's classes, and each labelled instance one annotation
``keypoints`` ``[x, y, v, ...]`` (``v`` = 2 for a marked point, ``0, 0, 0`` for a missing one); the
n-th point of every class forms the n-th instance, so one value can hold several people. Image-level
``choices`` / ``multi_choices`` answers on the same image field go into ``images[].labels``
(``{control: answer}``; in ``annotations`` mode ``{control: [{"annotator", "value"}]}``), not into
the categories, so category ids stay exactly the detection classes a model trains on.

Ground truth carries no ``score`` (tools treat a scored annotation as a detection); the consensus
confidence, method and auto flag are kept per image in ``images[].consensus``. With
``include_predictions`` a COCO *results* list ``[{"image_id", "category_id", "bbox", "score", ...}]``
is written next to the file as ``<stem>.predictions.json``, so ``COCOeval`` can score a model's
predictions against the exported ground truth directly; ``score`` is the prediction's score (1.0
when the model gave none), and polygons and keypoints add ``segmentation`` / ``keypoints``.

Items are streamed: images are written to the file as they come while annotations are buffered in
a temporary file and spliced in after, so memory stays flat however many items there are. Items
that have no label under the export options (nothing to train on) and images whose pixel size is
unknown (COCO consumers need it for masks and area ranges) are skipped and counted in
``info.labelmill``.

The image helpers COCO shares with the YOLO and Pascal VOC codecs are in :mod:`labelmill.formats.images`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from labelmill.formats.exporting import ExportContext, ExportRow, controls_of
from labelmill.formats.images import (
    ImageInfo,
    ImageSkips,
    LabelTarget,
    bounds,
    box_of,
    check_target,
    image_info,
    image_source,
    labelled_images,
    listed,
    make_record,
    media_name,
    points_of,
    positive,
    shoelace_area,
)
from labelmill.formats.media import probe_media
from labelmill.formats.records import FormatError, ImportRecord
from labelmill.schema import LabelSchema

__all__ = [
    "COCO_EXPORTER",
    "CocoExporter",
    "ImageInfo",
    "LabelTarget",
    "image_info",
    "media_name",
    "predictions_path",
    "read_coco",
]

_GEOMETRY_TYPES = ("boxes", "polygons", "keypoints")


# --------------------------------------------------------------------------- export


def predictions_path(out: Path) -> Path:
    """Where the COCO results list of an export to ``out`` goes: ``<stem>.predictions.json``."""
    return out.with_name(f"{out.stem}.predictions.json")


def _dumps(obj: Any) -> str:
    # ASCII-escaped: always valid UTF-8 on disk, even for a lone surrogate in a file name.
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


class _JsonArray:
    """Writes the elements of one JSON array to a stream as they come."""

    def __init__(self, fp: IO[str]) -> None:
        self.fp = fp
        self.count = 0

    def add(self, obj: Any) -> int:
        self.fp.write(("," if self.count else "") + _dumps(obj))
        self.count += 1
        return self.count


@dataclass
class _Categories:
    """The schema's classes as COCO categories (ids 1..K in schema order)."""

    source: str | None
    boxes: list[Any]
    polygons: list[Any]
    keypoints: list[Any]
    choices: list[Any]
    ids: dict[str, int] = field(default_factory=dict)
    keypoint_ids: dict[str, int] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_schema(cls, schema: LabelSchema) -> _Categories:
        source = image_source(schema, _GEOMETRY_TYPES) or image_source(schema, ("choices", "multi_choices"))
        if source is None:
            raise ValueError(
                "COCO export needs a boxes, polygons, keypoints or choices control on an image field"
            )

        def on_source(*types: str) -> list[Any]:
            return [c for c in controls_of(schema, *types) if c.source == source]

        self = cls(
            source,
            on_source("boxes"),
            on_source("polygons"),
            on_source("keypoints"),
            on_source("choices", "multi_choices"),
        )
        for control in self.boxes + self.polygons:
            for label in control.classes:
                if label not in self.ids:
                    self.ids[label] = len(self.records) + 1
                    self.records.append({"id": self.ids[label], "name": label, "supercategory": control.name})
        for control in self.keypoints:
            self.keypoint_ids[control.name] = len(self.records) + 1
            self.records.append(
                {
                    "id": len(self.records) + 1,
                    "name": control.name,
                    "supercategory": control.name,
                    "keypoints": list(control.classes),
                    "skeleton": [],
                }
            )
        return self

    def objects(self, value: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """The COCO annotation bodies (no ids) of one labelled value."""
        for control in self.boxes:
            for entry in listed(value, control.name):
                category = self.ids.get(str(entry.get("label")))
                box = box_of(entry)
                if category is None or box is None:
                    continue
                yield {
                    "category_id": category,
                    "bbox": list(box),
                    "area": box[2] * box[3],
                    "iscrowd": 0,
                }
        for control in self.polygons:
            for entry in listed(value, control.name):
                category = self.ids.get(str(entry.get("label")))
                points = points_of(entry)
                if category is None or points is None:
                    continue
                yield {
                    "category_id": category,
                    "segmentation": [[coordinate for point in points for coordinate in point]],
                    "bbox": list(bounds(points)),
                    "area": shoelace_area(points),
                    "iscrowd": 0,
                }
        for control in self.keypoints:
            yield from _keypoint_instances(control, self.keypoint_ids[control.name], value)


def _keypoint_instances(control: Any, category: int, value: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    by_label: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for entry in listed(value, control.name):
        try:
            x, y = float(entry["x"]), float(entry["y"])
        except (KeyError, TypeError, ValueError):
            continue
        if entry.get("label") in control.class_set and math.isfinite(x) and math.isfinite(y):
            by_label[entry["label"]].append((x, y))
    for n in range(max((len(v) for v in by_label.values()), default=0)):
        flat: list[float] = []
        marked: list[tuple[float, float]] = []
        for label in control.classes:
            points = by_label.get(label, [])
            if n < len(points):
                flat += [points[n][0], points[n][1], 2]
                marked.append(points[n])
            else:
                flat += [0, 0, 0]
        box = bounds(marked)
        yield {
            "category_id": category,
            "keypoints": flat,
            "num_keypoints": len(marked),
            "bbox": list(box),
            "area": box[2] * box[3],
            "iscrowd": 0,
        }


def _choice_labels(
    categories: _Categories, pairs: list[tuple[dict[str, Any], dict[str, Any]]], ctx: ExportContext
) -> dict[str, Any]:
    labels: dict[str, Any] = {}
    for control in categories.choices:
        if ctx.options.labels == "consensus":
            answers = [value[control.name] for value, _ in pairs if control.name in value]
            if answers:
                labels[control.name] = answers[0]
        else:
            given = [
                {"annotator": info.get("annotator"), "value": value[control.name]}
                for value, info in pairs
                if control.name in value
            ]
            if given:
                labels[control.name] = given
    return labels


class CocoExporter:
    """Writes a COCO instances JSON (and optionally a results list of predictions)."""

    name = "coco"
    target: Literal["file", "folder"] = "file"
    description = (
        "COCO instances JSON: boxes, polygons (segmentation), keypoints; image-level choices in "
        "images[].labels; predictions as a COCO results list <stem>.predictions.json"
    )

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        categories = _Categories.from_schema(ctx.schema)
        assert categories.source is not None
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.partial")
        pred_out = predictions_path(out) if ctx.options.include_predictions else None
        pred_partial = pred_out.with_name(f".{pred_out.name}.partial") if pred_out else None
        skipped = ImageSkips()
        try:
            with ExitStack() as stack:
                fp = stack.enter_context(partial.open("w", encoding="utf-8"))
                buffer = stack.enter_context(
                    tempfile.TemporaryFile("w+", encoding="utf-8", dir=out.parent, prefix=".coco-")
                )
                results = None
                if pred_partial is not None:
                    pred_fp = stack.enter_context(pred_partial.open("w", encoding="utf-8"))
                    pred_fp.write("[")
                    results = _JsonArray(pred_fp)
                fp.write('{"categories":' + _dumps(categories.records) + ',"images":[')
                images, annotations = _JsonArray(fp), _JsonArray(buffer)
                for _, row, pairs, info, _, _ in labelled_images(
                    rows, categories.source, ctx, skipped, need_local=False
                ):
                    image_id = images.count + 1
                    images.add(_image_record(image_id, row, info, categories, pairs, ctx))
                    for value, meta in pairs:
                        for body in categories.objects(value):
                            body = {"id": annotations.count + 1, "image_id": image_id, **body}
                            if meta.get("annotator") is not None:
                                body["annotator"] = meta["annotator"]
                            annotations.add(body)
                    if results is not None:
                        _write_results(results, image_id, row, categories)
                fp.write('],"annotations":[')
                buffer.seek(0)
                shutil.copyfileobj(buffer, fp, 1 << 16)
                summary = {
                    "items": images.count,
                    "annotations": annotations.count,
                    "labels": ctx.options.labels,
                    "skipped_unlabelled": skipped.unlabelled,
                    "skipped_without_image": skipped.without_image,
                    "skipped_without_size": skipped.without_size,
                }
                info_record = {
                    "description": f"{ctx.project_name}, exported by labelmill",
                    "version": "1.0",
                    "year": datetime.now(UTC).year,
                    "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "labelmill": summary,
                }
                fp.write('],"info":' + _dumps(info_record) + ',"licenses":[]}\n')
                if results is not None:
                    results.fp.write("]\n")
            os.replace(partial, out)
            if pred_out is not None and pred_partial is not None:
                os.replace(pred_partial, pred_out)
        finally:
            for leftover in (partial, pred_partial):
                if leftover is not None and leftover.exists():
                    leftover.unlink()
        return images.count


def _image_record(
    image_id: int,
    row: ExportRow,
    info: ImageInfo,
    categories: _Categories,
    pairs: list[tuple[dict[str, Any], dict[str, Any]]],
    ctx: ExportContext,
) -> dict[str, Any]:
    width, height = info.width, info.height
    assert width is not None and height is not None
    record: dict[str, Any] = {
        "id": image_id,
        "file_name": info.name,
        "width": int(width) if float(width).is_integer() else width,
        "height": int(height) if float(height).is_integer() else height,
        "external_id": row.get("external_id"),
    }
    if not info.ref.startswith("media://"):
        record["coco_url"] = info.ref
    labels = _choice_labels(categories, pairs, ctx)
    if labels:
        record["labels"] = labels
    if ctx.options.labels == "consensus":
        record["consensus"] = pairs[0][1]
    return record


def _write_results(results: _JsonArray, image_id: int, row: ExportRow, categories: _Categories) -> None:
    for prediction in row.get("predictions") or []:
        if not isinstance(prediction, Mapping):
            continue
        raw = prediction.get("score")
        score = None
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            score = float(raw)
        value = prediction.get("value") or {}
        for body in categories.objects(value):
            entry = {
                "image_id": image_id,
                "category_id": body["category_id"],
                "bbox": body["bbox"],
                "score": 1.0 if score is None else score,
            }
            for key in ("segmentation", "keypoints"):
                if key in body:
                    entry[key] = body[key]
            if prediction.get("model_version"):
                entry["model_version"] = prediction["model_version"]
            results.add(entry)


COCO_EXPORTER = CocoExporter()


# --------------------------------------------------------------------------- import


def _load_json(path: Path, source: str) -> Any:
    try:
        with path.open("rb") as fp:
            return json.load(fp)
    except FileNotFoundError:
        raise FormatError(source, 0, "", "file not found") from None
    except UnicodeDecodeError as exc:
        raise FormatError(source, 0, "", f"not valid UTF-8 text ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise FormatError(source, exc.lineno, "", f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    except RecursionError:
        raise FormatError(source, 0, "", "invalid JSON: nested too deeply") from None


def _number(value: Any, source: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise FormatError(source, 0, where, f"expected a finite number, got {value!r}")
    return float(value)


def _list(doc: Mapping[str, Any], key: str, source: str, required: bool = True) -> list[Any]:
    value = doc.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list):
        raise FormatError(source, 0, key, "expected a list" if key in doc else "missing")
    return value


def _bbox(raw: Any, source: str, where: str) -> tuple[float, float, float, float]:
    if not isinstance(raw, list) or len(raw) != 4:
        raise FormatError(source, 0, where, "expected [x, y, width, height]")
    x, y, w, h = (_number(v, source, f"{where}[{i}]") for i, v in enumerate(raw))
    if w <= 0:
        raise FormatError(source, 0, where, "width must be > 0")
    if h <= 0:
        raise FormatError(source, 0, where, "height must be > 0")
    if x < 0 or y < 0:
        raise FormatError(source, 0, where, "x and y must be >= 0 (pixels from the top-left corner)")
    return x, y, w, h


def _polygons(raw: Any, source: str, where: str) -> list[list[list[float]]]:
    if isinstance(raw, dict):
        raise FormatError(source, 0, where, "an RLE mask cannot be imported as polygons; use shape='boxes'")
    if not isinstance(raw, list):
        raise FormatError(source, 0, where, "expected a list of polygons [[x1, y1, x2, y2, ...], ...]")
    rings: list[list[list[float]]] = []
    for n, ring in enumerate(raw):
        at = f"{where}[{n}]"
        if not isinstance(ring, list) or len(ring) % 2 or len(ring) < 6:
            raise FormatError(source, 0, at, "a polygon is a flat list of 3 or more x, y pairs")
        flat = [_number(v, source, f"{at}[{i}]") for i, v in enumerate(ring)]
        rings.append([[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)])
    return rings


@dataclass
class _CocoIndex:
    categories: dict[Any, str]
    image_ids: set[Any]


def _objects(
    ann: Any, index: int, key: str, coco: _CocoIndex, source: str, shape: str
) -> tuple[Any, list[dict[str, Any]], float | None, str | None]:
    """(image id, values, score, model version) of one COCO annotation or result."""
    where = f"{key}[{index}]"
    if not isinstance(ann, dict):
        raise FormatError(source, 0, where, "expected an object")
    image_id = ann.get("image_id")
    if image_id not in coco.image_ids:
        raise FormatError(source, 0, f"{where}.image_id", f"no image with id {image_id!r}")
    label = coco.categories.get(ann.get("category_id"))
    if label is None:
        raise FormatError(
            source, 0, f"{where}.category_id", f"no category with id {ann.get('category_id')!r}"
        )
    score = None
    if "score" in ann:
        score = _number(ann["score"], source, f"{where}.score")
    version = ann.get("model_version")
    version = version if isinstance(version, str) else None
    if shape == "polygons" and ann.get("segmentation"):
        rings = _polygons(ann["segmentation"], source, f"{where}.segmentation")
        return image_id, [{"points": ring, "label": label} for ring in rings], score, version
    x, y, w, h = _bbox(ann.get("bbox"), source, f"{where}.bbox")
    if shape == "polygons":  # no outline: the box is the best polygon there is
        points = [[x, y], [x + w, y], [x + w, y + h], [x, y + h]]
        return image_id, [{"points": points, "label": label}], score, version
    return image_id, [{"x": x, "y": y, "w": w, "h": h, "label": label}], score, version


def _resolve_image(images_dir: Path, file_name: str) -> Path | None:
    root = images_dir.resolve()
    candidate = (images_dir / file_name).resolve()
    if root not in candidate.parents:
        return None
    return candidate if candidate.is_file() else None


def read_coco(
    path: str | os.PathLike[str],
    *,
    control: str,
    target: LabelTarget = "gold",
    source: str = "image",
    images_dir: str | os.PathLike[str] | None = None,
    shape: Literal["boxes", "polygons"] = "boxes",
    results: str | os.PathLike[str] | None = None,
    min_score: float = 0.0,
    model_version: str = "coco",
    annotator: str = "coco",
) -> Iterator[ImportRecord]:
    """One record per COCO image, with its annotations as ``target`` labels of ``control``.

    ``shape`` picks what an annotation becomes: a box from ``bbox``, or polygons from polygon
    ``segmentation`` (one polygon per part; an annotation without one becomes its box's rectangle).
    Images are looked up under ``images_dir`` (default: the JSON's folder, else its ``images/``
    subfolder) and attached as ``media_files`` when present; their size comes from ``images[]``, else
    from the file. ``results`` names a COCO results list (``[{"image_id", "category_id", "bbox",
    "score"}]``) whose detections at or above ``min_score`` become predictions, one per image and
    ``model_version``, scored by the mean detection score (a labelmill value holds one score).
    Scored annotations in the dataset itself are treated the same way when ``target`` is
    ``predictions``. COCO is one JSON document, so it is read whole (as pycocotools does); errors name
    the file, line 0 (the whole document) and the field, e.g.
    ``instances.json:0: annotations[12].bbox: width must be > 0``.
    """
    check_target(target)
    if shape not in ("boxes", "polygons"):
        raise ValueError(f"unknown shape {shape!r}; expected boxes or polygons")
    file = Path(path)
    name = file.name
    doc = _load_json(file, name)
    if isinstance(doc, list):
        raise FormatError(
            name,
            0,
            "",
            "a COCO results list names images only by id; read the dataset, pass this file as results=",
        )
    if not isinstance(doc, dict):
        raise FormatError(name, 0, "", "expected a COCO object with images, annotations and categories")
    categories: dict[Any, str] = {}
    for i, category in enumerate(_list(doc, "categories", name)):
        if not isinstance(category, dict) or not isinstance(category.get("name"), str):
            raise FormatError(name, 0, f"categories[{i}].name", "expected a category name")
        categories[category.get("id")] = category["name"]
    images = _list(doc, "images", name)
    image_ids: set[Any] = set()
    for i, image in enumerate(images):
        if not isinstance(image, dict):
            raise FormatError(name, 0, f"images[{i}]", "expected an object")
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            raise FormatError(name, 0, f"images[{i}].file_name", "expected the image's file name")
        if image.get("id") in image_ids:
            raise FormatError(name, 0, f"images[{i}].id", f"duplicate image id {image.get('id')!r}")
        image_ids.add(image.get("id"))
    coco = _CocoIndex(categories, image_ids)

    values: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    scores: dict[Any, list[float]] = defaultdict(list)
    for i, ann in enumerate(_list(doc, "annotations", name, required=False)):
        image_id, objects, score, _ = _objects(ann, i, "annotations", coco, name, shape)
        if target == "predictions" and score is not None and score < min_score:
            continue
        values[image_id] += objects
        if score is not None:
            scores[image_id].append(score)

    predicted: dict[Any, dict[str, list[Any]]] = defaultdict(dict)
    if results is not None:
        results_file = Path(results)
        listing = _load_json(results_file, results_file.name)
        if not isinstance(listing, list):
            raise FormatError(results_file.name, 0, "", "expected a COCO results list")
        for i, ann in enumerate(listing):
            image_id, objects, score, version = _objects(ann, i, "results", coco, results_file.name, shape)
            if score is not None and score < min_score:
                continue
            slot = predicted[image_id].setdefault(version or model_version, [[], []])
            slot[0] += objects
            if score is not None:
                slot[1].append(score)

    folder = Path(images_dir) if images_dir is not None else file.parent
    if (
        images_dir is None
        and images
        and _resolve_image(folder, str(images[0]["file_name"])) is None
        and (folder / "images").is_dir()
    ):
        folder = folder / "images"
    for i, image in enumerate(images):
        file_name = str(image["file_name"])
        local = _resolve_image(folder, file_name)
        size = {key: image[key] for key in ("width", "height") if positive(image.get(key)) is not None}
        if len(size) < 2 and local is not None:
            try:
                size = probe_media(local, "image")
            except ValueError as exc:
                raise FormatError(name, 0, f"images[{i}]", f"{file_name}: {exc}") from None
        image_id = image.get("id")
        extra = [
            {
                "value": {control: objects},
                "score": sum(found) / len(found) if found else None,
                "model_version": version,
            }
            for version, (objects, found) in predicted.get(image_id, {}).items()
        ]
        found = scores.get(image_id, [])
        yield make_record(
            name,
            i + 1,
            {source: file_name},
            file_name,
            control=control,
            values=values.get(image_id, []),
            target=target,
            meta={"media": {source: size}} if len(size) == 2 else None,
            media_files=[(source, local)] if local is not None else [],
            score=sum(found) / len(found) if found else None,
            model_version=model_version,
            annotator=annotator,
            extra_predictions=extra,
        )
