"""Audio segments and transcripts export, for speech and sound-event training sets.

JSON Lines by default, one line per labelled item (or per annotation)::

    {"external_id", "audio", "segments": [{"start", "end", "label", "text"?}], "transcript"?}

and CSV when the output path ends in ``.csv``, one row per segment
(``external_id,audio,start,end,label,text``; an item with a transcript but no segments gets one row
with empty times and the transcript as ``text``). ``audio`` is the item's media reference as stored
(``media://...`` or a URL), so the export can be joined with a media export. Times are seconds.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from labelmill.formats.exporting import ExportContext, ExportRow, controls_of, labelled_values
from labelmill.formats.table_export import json_text

__all__ = ["SEGMENTS_EXPORTER", "SegmentsExporter", "segment_records"]

_BATCH = 512


def segment_records(rows: Iterable[ExportRow], ctx: ExportContext) -> Iterator[dict[str, Any]]:
    """One ``{"external_id", "audio", "segments", "transcript"?, "annotator"?}`` per labelled value."""
    segment_controls = controls_of(ctx.schema, "segments")
    transcript_controls = controls_of(ctx.schema, "transcript")
    if not segment_controls and not transcript_controls:
        raise ValueError("the segments export needs a segments or transcript control in the schema")
    return _records(rows, ctx, segment_controls, transcript_controls)


def _records(
    rows: Iterable[ExportRow], ctx: ExportContext, segment_controls: list[Any], transcript_controls: list[Any]
) -> Iterator[dict[str, Any]]:
    audio_field = (segment_controls or transcript_controls)[0].source
    for row in rows:
        data = row.get("data")
        if not isinstance(data, dict):
            data = {}
        for value, info in labelled_values(row, ctx):
            segments = []
            for control in segment_controls:
                for segment in value.get(control.name) or []:
                    entry = {"start": segment["start"], "end": segment["end"], "label": segment["label"]}
                    if segment.get("text") is not None:
                        entry["text"] = segment["text"]
                    segments.append(entry)
            transcript = next(
                (value[c.name] for c in transcript_controls if value.get(c.name) is not None), None
            )
            if not segments and transcript is None:
                continue
            segments.sort(key=lambda s: (s["start"], s["end"]))
            record: dict[str, Any] = {
                "external_id": row.get("external_id"),
                "audio": data.get(audio_field),
                "segments": segments,
            }
            if transcript is not None:
                record["transcript"] = transcript
            if info.get("annotator") is not None:
                record["annotator"] = info["annotator"]
            yield record


class SegmentsExporter:
    """``--format segments``: JSON Lines, or CSV (one row per segment) for a ``.csv`` path."""

    name = "segments"
    target: Literal["file", "folder"] = "file"
    description = "Audio segments and transcripts: JSON Lines, or CSV when the path ends in .csv"

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        """Returns the number of records (labelled items, or annotations) written."""
        records = segment_records(rows, ctx)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".csv":
            return self._write_csv(records, out, annotations=ctx.options.labels == "annotations")
        count = 0
        with out.open("w", encoding="utf-8") as fh:
            batch: list[str] = []
            for record in records:
                batch.append(json_text(record))
                count += 1
                if len(batch) >= _BATCH:
                    fh.write("\n".join(batch) + "\n")
                    batch = []
            if batch:
                fh.write("\n".join(batch) + "\n")
        return count

    @staticmethod
    def _write_csv(records: Iterator[dict[str, Any]], out: Path, annotations: bool) -> int:
        count = 0
        header = ["external_id", "audio", "start", "end", "label", "text"]
        if annotations:
            header.append("annotator")
        with out.open("w", encoding="utf-8", newline="", errors="backslashreplace") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for record in records:
                count += 1
                head = [record["external_id"], _cell(record["audio"])]
                tail = [record.get("annotator", "")] if annotations else []
                if not record["segments"]:
                    writer.writerow([*head, "", "", "", record.get("transcript", ""), *tail])
                for s in record["segments"]:
                    writer.writerow([*head, s["start"], s["end"], s["label"], s.get("text", ""), *tail])
        return count


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return value if isinstance(value, str | int | float) else json_text(value)


SEGMENTS_EXPORTER = SegmentsExporter()
