"""Exports for LLM post-training: preference pairs (DPO) and ratings (reward models).

``dpo`` writes one JSON line ``{"prompt", "chosen", "rejected"}`` per preference, the
"explicit prompt" preference format that DPO trainers (TRL's ``DPOTrainer``, among others) load
with ``datasets.load_dataset("json", ...)``. A ``pairwise`` answer gives one pair; a tie prefers
nothing, so it gives none (ties are counted in :attr:`DpoStats.ties`). A ``ranking`` gives every
pair it implies: each response is preferred to every response ranked below it.

``ratings`` writes one JSON line per labelled item with its rating controls' values, for reward
model and evaluation datasets.

Responses live in the item field a pairwise or ranking control names as ``source``: a list of
``{"id", "text"}`` (pairwise ``a``/``b`` are the ids ``a``/``b``, or else the first two entries)
or an object ``{"a": ..., "b": ...}``. The prompt is ``data["prompt"]``, else the first text field
that is not the responses.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from labelmill.formats.exporting import ExportContext, ExportRow, controls_of, labelled_values
from labelmill.formats.table_export import json_text

__all__ = [
    "DPO_EXPORTER",
    "RATINGS_EXPORTER",
    "DpoExporter",
    "DpoStats",
    "RatingsExporter",
    "preference_pairs",
    "prompt_of",
    "responses_of",
]

_BATCH = 512


def _response_text(response: Any) -> Any:
    """A response's text: a string as is, an object's ``text`` (or ``content``/``response``)."""
    if isinstance(response, dict):
        for key in ("text", "content", "response"):
            if key in response:
                return response[key]
        return None
    return response


def responses_of(field: Any) -> dict[str, Any]:
    """Response id -> text, from a list of ``{"id", "text"}`` / strings or an ``{"a": ..}`` object."""
    if isinstance(field, dict):
        return {str(k): _response_text(v) for k, v in field.items()}
    out: dict[str, Any] = {}
    if isinstance(field, list):
        for i, response in enumerate(field):
            rid = response.get("id") if isinstance(response, dict) else None
            out[str(rid) if rid is not None else str(i)] = _response_text(response)
    return out


def _pairwise_side(responses: dict[str, Any], field: Any, side: str) -> Any:
    if side in responses:
        return responses[side]
    if isinstance(field, list) and len(field) == 2:  # ids other than a/b: a is the first response
        return _response_text(field[0 if side == "a" else 1])
    return None


def prompt_of(data: Mapping[str, Any], response_fields: Iterable[str] = ()) -> Any:
    """``data["prompt"]``, else the first string field that is not a response field."""
    prompt = data.get("prompt")
    if prompt is not None:
        return prompt
    skip = set(response_fields)
    for key, field in data.items():
        if key not in skip and isinstance(field, str):
            return field
    return None


def preference_pairs(value: Mapping[str, Any], data: Mapping[str, Any], ctx: ExportContext) -> Iterator[Any]:
    """(chosen, rejected) texts of one value; a tie yields the marker ``None`` instead of a pair."""
    for control in controls_of(ctx.schema, "pairwise", "ranking"):
        answer = value.get(control.name)
        if answer is None:
            continue
        field = data.get(control.source)
        responses = responses_of(field)
        if control.type == "pairwise":
            choice = answer.get("choice") if isinstance(answer, dict) else None
            if choice == "tie":
                yield None
                continue
            if choice not in ("a", "b"):
                continue
            a, b = _pairwise_side(responses, field, "a"), _pairwise_side(responses, field, "b")
            if a is not None and b is not None:
                yield (a, b) if choice == "a" else (b, a)
        else:
            order = [responses[str(rid)] for rid in answer if str(rid) in responses]
            for i, better in enumerate(order):
                for worse in order[i + 1 :]:
                    yield better, worse


@dataclass
class DpoStats:
    """What a DPO export wrote and what it skipped, and why."""

    lines: int = 0
    items: int = 0
    ties: int = 0
    #: Preferences whose item had no prompt or no response text.
    incomplete: int = 0


def _write_lines(out: Path, lines: Iterable[str]) -> None:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        batch: list[str] = []
        for line in lines:
            batch.append(line)
            if len(batch) >= _BATCH:
                fh.write("\n".join(batch) + "\n")
                batch = []
        if batch:
            fh.write("\n".join(batch) + "\n")


class DpoExporter:
    """``--format dpo``: preference pairs as JSON Lines; ``last_stats`` holds the counts of the last write."""

    name = "dpo"
    target: Literal["file", "folder"] = "file"
    description = 'DPO preference pairs as JSON Lines: {"prompt", "chosen", "rejected"} (ties skipped)'

    def __init__(self) -> None:
        self.last_stats = DpoStats()

    def lines(self, rows: Iterable[ExportRow], ctx: ExportContext, stats: DpoStats) -> Iterator[str]:
        controls = controls_of(ctx.schema, "pairwise", "ranking")
        if not controls:
            raise ValueError("the dpo export needs a pairwise or ranking control in the schema")
        sources = [c.source for c in controls]
        for row in rows:
            data = row.get("data")
            if not isinstance(data, dict):
                continue
            prompt = prompt_of(data, sources)
            wrote = False
            for value, _info in labelled_values(row, ctx):
                for pair in preference_pairs(value, data, ctx):
                    if pair is None:
                        stats.ties += 1
                        continue
                    chosen, rejected = pair
                    if prompt is None or chosen is None or rejected is None:
                        stats.incomplete += 1
                        continue
                    stats.lines += 1
                    wrote = True
                    yield json_text({"prompt": prompt, "chosen": chosen, "rejected": rejected})
            stats.items += wrote

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        """Returns the number of preference pairs (lines) written."""
        if not controls_of(ctx.schema, "pairwise", "ranking"):
            raise ValueError("the dpo export needs a pairwise or ranking control in the schema")
        stats = DpoStats()
        self.last_stats = stats
        _write_lines(out, self.lines(rows, ctx, stats))
        return stats.lines


class RatingsExporter:
    """``--format ratings``: ``{"external_id", "prompt"?, "response"? | "data", <rating>: n, ...}`` lines."""

    name = "ratings"
    target: Literal["file", "folder"] = "file"
    description = "Ratings as JSON Lines: prompt and response (or the item data) with each rating control"

    def lines(self, rows: Iterable[ExportRow], ctx: ExportContext) -> Iterator[str]:
        controls = controls_of(ctx.schema, "rating")
        if not controls:
            raise ValueError("the ratings export needs a rating control in the schema")
        for row in rows:
            data = row.get("data")
            if not isinstance(data, dict):
                data = {}
            for value, info in labelled_values(row, ctx):
                ratings = {c.name: value[c.name] for c in controls if value.get(c.name) is not None}
                if not ratings:
                    continue
                line: dict[str, Any] = {"external_id": row.get("external_id")}
                if "prompt" in data or "response" in data:
                    for key in ("prompt", "response"):
                        if key in data:
                            line[key] = data[key]
                else:
                    line["data"] = data
                line.update(ratings)
                for key in ("confidence", "annotator"):
                    if info.get(key) is not None:
                        line[key] = info[key]
                yield json_text(line)

    def write(self, rows: Iterable[ExportRow], out: Path, ctx: ExportContext) -> int:
        """Returns the number of lines written (one per item, or per annotation)."""
        if not controls_of(ctx.schema, "rating"):
            raise ValueError("the ratings export needs a rating control in the schema")
        count = 0

        def counted() -> Iterator[str]:
            nonlocal count
            for line in self.lines(rows, ctx):
                count += 1
                yield line

        _write_lines(out, counted())
        return count


DPO_EXPORTER = DpoExporter()
RATINGS_EXPORTER = RatingsExporter()
