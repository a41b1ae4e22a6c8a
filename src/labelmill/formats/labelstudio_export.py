"""Label Studio export: a JSON array of tasks that Label Studio imports, and that
:func:`labelmill.formats.labelstudio.read_labelstudio` reads back to the same values.

Label Studio keeps one ``result`` entry per region and image coordinates in percent of the image;
labelmill keeps one value per control and pixels. Converting to percent needs the image's size: it
comes from the item's ``meta["media"][<field>]`` (recorded at import), else from the media file
itself when it is stored locally. Without a size, coordinates are written unchanged (an item
imported from Label Studio without sizes is still in percent, so it goes back as it came).

The array is streamed (``[``, tasks separated by commas, ``]``), so memory does not grow with the
number of items. Controls Label Studio's importer here has no result type for (``tracks``,
``ranking``) are left out with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from labelmill.formats.exporting import ExportContext, ExportRow, labelled_values
from labelmill.formats.table_export import json_text
from labelmill.schema import LabelSchema

__all__ = ["LABELSTUDIO_EXPORTER", "LabelStudioExporter", "labelstudio_results", "labelstudio_task"]

#: labelmill control type -> Label Studio result type.
RESULT_TYPES = {
    "choices": "choices",
    "multi_choices": "choices",
    "spans": "labels",
    "segments": "labels",
    "relations": "relation",
    "boxes": "rectanglelabels",
    "polygons": "polygonlabels",
    "keypoints": "keypointlabels",
    "rating": "rating",
    "transcript": "textarea",
    "text": "textarea",
    "pairwise": "pairwise",
}
_IMAGE_TYPES = frozenset({"boxes", "polygons", "keypoints"})
_PAIRWISE = {"a": "left", "b": "right", "tie": "none"}
_FLUSH_CHARS = 1 << 20

#: (width, height) of a control's image in pixels, or None when unknown.
ImageSize = tuple[float, float] | None


def _image_size(
    control: Any, data: Mapping[str, Any], meta: Mapping[str, Any], ctx: ExportContext
) -> ImageSize:
    media = meta.get("media")
    if isinstance(media, dict):
        info = media.get(control.source)
        if isinstance(info, dict):
            w, h = info.get("width"), info.get("height")
            if isinstance(w, int | float) and isinstance(h, int | float) and w > 0 and h > 0:
                return float(w), float(h)
    ls = meta.get("labelstudio")
    if isinstance(ls, dict) and control.name in (ls.get("percent_coordinates") or []):
        return None  # still in percent from a Label Studio import: written back unchanged
    ref = data.get(control.source)
    if isinstance(ref, str):
        path = ctx.media_path(ref)
        if path is not None:
            from labelmill.formats.media import probe_media

            try:
                info = probe_media(path, "image")
            except (ValueError, OSError):
                return None
            return float(info["width"]), float(info["height"])
    return None


def labelstudio_results(
    value: Mapping[str, Any],
    schema: LabelSchema,
    data: Mapping[str, Any],
    sizes: Mapping[str, ImageSize] | None = None,
) -> list[dict[str, Any]]:
    """A labelmill value -> Label Studio ``result`` list (``sizes``: control name -> image size)."""
    results: list[dict[str, Any]] = []
    sizes = sizes or {}
    for control in schema.controls:
        answer = value.get(control.name)
        kind = RESULT_TYPES.get(control.type)
        if answer is None or kind is None:
            continue
        base = {"from_name": control.name, "to_name": control.source, "type": kind}
        ctype = control.type
        if ctype == "choices":
            results.append({**base, "value": {"choices": [answer]}})
        elif ctype == "multi_choices":
            results.append({**base, "value": {"choices": list(answer)}})
        elif ctype in ("rating",):
            results.append({**base, "value": {"rating": answer}})
        elif ctype in ("transcript", "text"):
            results.append({**base, "value": {"text": [answer]}})
        elif ctype == "pairwise":
            results.append({**base, "value": {"selected": _PAIRWISE[answer["choice"]]}})
        elif ctype == "spans":
            source = data.get(control.source)
            for span in answer:
                region: dict[str, Any] = {
                    "start": span["start"],
                    "end": span["end"],
                    "labels": [span["label"]],
                }
                if isinstance(source, str):
                    region["text"] = source[span["start"] : span["end"]]
                results.append({"id": str(span["id"]), **base, "value": region})
        elif ctype == "segments":
            for k, segment in enumerate(answer):
                region = {
                    "start": float(segment["start"]),
                    "end": float(segment["end"]),
                    "labels": [segment["label"]],
                }
                results.append({"id": f"{control.name}-{k + 1}", **base, "value": region})
        elif ctype == "relations":
            for rel in answer:
                results.append(
                    {
                        "type": "relation",
                        "from_id": str(rel["from"]),
                        "to_id": str(rel["to"]),
                        "direction": "right",
                        "labels": [rel["label"]],
                    }
                )
        elif ctype in _IMAGE_TYPES:
            results.extend(_image_results(ctype, control.name, base, answer, sizes.get(control.name)))
    return results


def _image_results(
    ctype: str, name: str, base: dict[str, Any], answer: list[dict[str, Any]], size: ImageSize
) -> list[dict[str, Any]]:
    # Percent per pixel; the importer multiplies back by (size / 100).
    sx, sy = (size[0] / 100.0, size[1] / 100.0) if size else (1.0, 1.0)
    extra: dict[str, Any] = {}
    if size:
        extra = {"original_width": round(size[0]), "original_height": round(size[1]), "image_rotation": 0}
    out = []
    for k, region in enumerate(answer):
        label = [region["label"]]
        if ctype == "boxes":
            v: dict[str, Any] = {
                "x": region["x"] / sx,
                "y": region["y"] / sy,
                "width": region["w"] / sx,
                "height": region["h"] / sy,
                "rotation": 0,
                "rectanglelabels": label,
            }
        elif ctype == "polygons":
            v = {"points": [[px / sx, py / sy] for px, py in region["points"]], "polygonlabels": label}
            v["closed"] = True
        else:
            v = {"x": region["x"] / sx, "y": region["y"] / sy, "keypointlabels": label}
        out.append({"id": f"{name}-{k + 1}", **base, **extra, "value": v})
    return out


def labelstudio_task(row: ExportRow, ctx: ExportContext) -> dict[str, Any]:
    """One export row -> one Label Studio task."""
    schema = ctx.schema
    data = row.get("data") if isinstance(row.get("data"), dict) else {}
    assert isinstance(data, dict)
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    sizes = {c.name: _image_size(c, data, meta, ctx) for c in schema.controls if c.type in _IMAGE_TYPES}
    task: dict[str, Any] = {}
    external_id = row.get("external_id")
    if external_id is not None:
        task["id"] = external_id
    task["data"] = data
    annotations: list[dict[str, Any]] = []
    if ctx.options.labels == "consensus":
        for value, _info in labelled_values(row, ctx):
            annotations.append({"id": 1, "result": labelstudio_results(value, schema, data, sizes)})
    else:
        for annotation in row.get("annotations") or []:
            if annotation.get("status") == "rejected":
                continue
            entry: dict[str, Any] = {
                "id": len(annotations) + 1,
                "completed_by": annotation.get("annotator"),
                "result": labelstudio_results(annotation.get("value") or {}, schema, data, sizes),
            }
            if annotation.get("lead_seconds") is not None:
                entry["lead_time"] = annotation["lead_seconds"]
            if annotation.get("status") == "skipped":
                entry["was_cancelled"] = True
            annotations.append(entry)
    task["annotations"] = annotations
    if ctx.options.include_predictions:
        task["predictions"] = [
            {
                "model_version": p.get("model_version") or "",
                "score": p.get("score"),
                "result": labelstudio_results(p.get("value") or {}, schema, data, sizes),
            }
            for p in row.get("predictions") or []
        ]
    if meta:
        task["meta"] = meta
    return task


class LabelStudioExporter:
    """``--format labelstudio``: a Label Studio task JSON array."""

    name = "labelstudio"
    target: Literal["file", "folder"] = "file"
    description = "Label Studio tasks (JSON array) with annotations, predictions and percent image regions"

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        left_out = [c.name for c in ctx.schema.controls if c.type not in RESULT_TYPES]
        if left_out:
            warnings.warn(
                f"Label Studio export: controls {', '.join(left_out)} have no Label Studio result type "
                "here and are left out",
                stacklevel=2,
            )
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        count = 0
        with out.open("w", encoding="utf-8") as fh:
            parts = ["["]
            size = 0
            for row in rows:
                text = json_text(labelstudio_task(row, ctx))
                parts.append(("\n" if count == 0 else ",\n") + text)
                size += len(text)
                count += 1
                if size >= _FLUSH_CHARS:
                    fh.write("".join(parts))
                    parts, size = [], 0
            parts.append("\n]\n")
            fh.write("".join(parts))
        return count


LABELSTUDIO_EXPORTER = LabelStudioExporter()
