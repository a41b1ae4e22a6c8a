"""Writing the JSONL export: one line per item, in the shape DESIGN fixes for users and checks.

``{"external_id", "data", "annotations": [{"annotator", "value", ...}], "predictions": [...],
"consensus": {"value", "confidence", "method", "auto"} | null}``

The reader in :mod:`labelmill.formats.jsonl` accepts these lines, so an export can be imported into
another project (or another labelmill) without loss.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

__all__ = ["export_annotation", "export_consensus", "export_prediction", "export_row", "write_jsonl"]

_BATCH = 512


def export_annotation(
    annotator: str | int,
    value: Mapping[str, Any],
    *,
    lead_seconds: float | None = None,
    status: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One annotation of an export line; optional facts are left out rather than written as null."""
    out: dict[str, Any] = {"annotator": str(annotator), "value": dict(value)}
    if lead_seconds is not None:
        out["lead_seconds"] = float(lead_seconds)
    if status is not None:
        out["status"] = status
    out.update(extra)
    return out


def export_prediction(value: Mapping[str, Any], score: float | None, model_version: str) -> dict[str, Any]:
    """One prediction of an export line."""
    return {
        "value": dict(value),
        "score": None if score is None else float(score),
        "model_version": model_version,
    }


def export_consensus(
    value: Mapping[str, Any], confidence: float | None, method: str, auto: bool = False
) -> dict[str, Any]:
    """An item's consensus; ``auto`` is true where a model's auto-label, not people, decided it."""
    return {
        "value": dict(value),
        "confidence": None if confidence is None else float(confidence),
        "method": method,
        "auto": bool(auto),
    }


def export_row(
    external_id: str | int | None,
    data: Mapping[str, Any],
    annotations: Iterable[Mapping[str, Any]] = (),
    predictions: Iterable[Mapping[str, Any]] = (),
    consensus: Mapping[str, Any] | None = None,
    *,
    meta: Mapping[str, Any] | None = None,
    gold: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One export line from plain values (mappings shaped as the ``export_*`` helpers make them).

    ``meta`` and ``gold`` are added only when given, so a plain export line keeps exactly DESIGN's
    five keys while a manager's full export can still be re-imported with nothing lost.
    """
    row = {
        "external_id": None if external_id is None else str(external_id),
        "data": dict(data),
        "annotations": [export_annotation(**a) for a in annotations],
        "predictions": [
            export_prediction(p["value"], p.get("score"), p.get("model_version", "")) for p in predictions
        ],
        "consensus": None
        if consensus is None
        else export_consensus(
            consensus["value"],
            consensus.get("confidence"),
            consensus.get("method", ""),
            consensus.get("auto", False),
        ),
    }
    if meta is not None:
        row["meta"] = dict(meta)
    if gold is not None:
        row["gold"] = dict(gold)
    return row


def _line(row: Mapping[str, Any]) -> str:
    text = json.dumps(row, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (legal in JSON escapes, so importable) cannot be written as UTF-8; escaping
        # the line keeps the file valid UTF-8 and the value round-trips exactly.
        text = json.dumps(row, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text


def write_jsonl(rows: Iterable[Mapping[str, Any]], fp: IO[str] | IO[bytes]) -> int:
    """Write one compact JSON line per row to a text or binary stream; returns the number of lines.

    Streams: rows are consumed lazily and written in small batches, so exports of any size use
    constant memory. NaN and infinities raise ``ValueError`` instead of writing invalid JSON.
    """
    binary = _is_binary(fp)
    count = 0
    batch: list[str] = []
    for row in rows:
        batch.append(_line(row))
        count += 1
        if len(batch) >= _BATCH:
            _flush(fp, batch, binary)
            batch = []
    if batch:
        _flush(fp, batch, binary)
    return count


def _is_binary(fp: IO[Any]) -> bool:
    if isinstance(fp, io.TextIOBase):
        return False
    if isinstance(fp, io.BufferedIOBase | io.RawIOBase):
        return True
    return "b" in getattr(fp, "mode", "")  # wrappers such as tempfile.NamedTemporaryFile


def _flush(fp: IO[Any], batch: list[str], binary: bool) -> None:
    text = "\n".join(batch) + "\n"
    fp.write(text.encode("utf-8") if binary else text)


if TYPE_CHECKING:
    from labelmill.formats.exporting import ExportContext


class JsonlExporter:
    """DESIGN's JSONL export: the lossless format, so every line carries the item's annotations,
    predictions and consensus whatever the options; ``include_auto=False`` drops auto-labels."""

    name = "jsonl"
    target = "file"
    description = "one item per line: data, annotations, predictions, consensus (imports back)"

    def write(self, rows: Iterable[dict[str, Any]], out: Path, ctx: ExportContext) -> int:
        def kept() -> Iterable[dict[str, Any]]:
            for row in rows:
                consensus = row.get("consensus")
                if consensus and consensus.get("auto") and not ctx.options.include_auto:
                    row = {**row, "consensus": None}
                yield row

        with out.open("w", encoding="utf-8") as fh:
            return write_jsonl(kept(), fh)


JSONL_EXPORTER = JsonlExporter()
