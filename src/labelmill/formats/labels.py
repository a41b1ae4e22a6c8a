"""Crowd labels as three columns (item, worker, label) for ``labelmill aggregate`` and ``agreement``.

They read what people have at hand: a plain ``item,worker,label`` CSV (``task`` for ``item``), or
a project's own annotations export, so the quality commands work on a labelmill project's output
without a conversion step:

- the JSONL export (one item a line with ``"annotations": [{"annotator", "value"}]``);
- the CSV export with ``--labels annotations`` (``external_id``, ``data.*`` columns, one column per
  control, ``annotator``);
- export rows straight from a project (:func:`labels_from_rows`).

A label is one control's answer; structured answers (lists, objects) become their compact JSON
text, so two annotators agree exactly when their answers are equal.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from labelmill.formats._io import display_name, open_binary
from labelmill.formats.records import FormatError

__all__ = ["LabelTable", "labels_from_rows", "read_label_table"]

#: Columns of the CSV export that are not a control's answer.
_EXPORT_COLUMNS = frozenset({"external_id", "annotator", "status", "lead_seconds", "created_at"})


@dataclass
class LabelTable:
    items: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)

    def add(self, item: Any, worker: Any, label: Any) -> None:
        self.items.append(str(item))
        self.workers.append(str(worker))
        self.labels.append(label if isinstance(label, str) else json.dumps(label, sort_keys=True))

    def as_columns(self) -> dict[str, list[str]]:
        return {"item": self.items, "worker": self.workers, "label": self.labels}


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == []


def _choose_control(controls: Iterable[str], control: str | None, where: str) -> str:
    names = sorted(set(controls))
    if control is not None:
        if control not in names:
            raise ValueError(f"{where}: no control {control!r} (found: {', '.join(names) or 'none'})")
        return control
    if len(names) != 1:
        found = ", ".join(names) or "none"
        raise ValueError(f"{where}: choose the control with --control (found: {found})")
    return names[0]


def labels_from_rows(rows: Iterable[Mapping[str, Any]], control: str | None, where: str) -> LabelTable:
    """Labels of ``control`` (default: the one control answered) from export rows."""
    answers: list[tuple[Any, Any, Mapping[str, Any]]] = []
    controls: set[str] = set()
    for row in rows:
        for ann in row.get("annotations") or []:
            value = ann.get("value") or {}
            if ann.get("annotator") is not None and isinstance(value, Mapping):
                answers.append((row.get("external_id"), ann["annotator"], value))
                controls.update(value)
    table = LabelTable()
    if not answers:
        return table
    chosen = _choose_control(controls, control, where)
    for item, worker, value in answers:
        label = value.get(chosen)
        if not _is_empty(label):
            table.add(item, worker, label)
    return table


def _jsonl_rows(path: Path, source: str) -> Iterable[dict[str, Any]]:
    with open_binary(path) as fp:
        for n, raw in enumerate(fp, 1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise FormatError(source, n, "", f"invalid JSON: {exc}") from None
            if not isinstance(row, dict) or not isinstance(row.get("annotations", []), list):
                raise FormatError(
                    source, n, "annotations", "expected an export line with an annotations list"
                )
            yield row


def _csv_labels(path: Path, source: str, control: str | None) -> LabelTable:
    table = LabelTable()
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = [h.strip() for h in next(reader, [])]
        lower = [h.lower() for h in header]
        if "item" not in lower and "task" in lower:
            lower[lower.index("task")] = "item"
        if {"item", "worker", "label"} <= set(lower):
            ii, wi, li = lower.index("item"), lower.index("worker"), lower.index("label")
        elif {"external_id", "annotator"} <= set(header):
            answers = [h for h in header if h not in _EXPORT_COLUMNS and not h.startswith("data.")]
            ii, wi = header.index("external_id"), header.index("annotator")
            li = header.index(_choose_control(answers, control, source))
        else:
            missing = ", ".join(c for c in ("item", "worker", "label") if c not in lower)
            raise FormatError(
                source,
                1,
                "",
                f"missing column(s) {missing} (need item,worker,label, task accepted for item; or a "
                "labelmill CSV export with --labels annotations: external_id, annotator, a column "
                "per control)",
            )
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise FormatError(source, n, "", f"expected {len(header)} fields, found {len(row)}")
            if row[li] == "":
                if lower[li] == "label":
                    raise FormatError(source, n, "label", "empty")
                continue  # an export row of an annotator who left this control out
            table.add(row[ii], row[wi], row[li])
    return table


def read_label_table(path: str | os.PathLike[str], control: str | None = None) -> LabelTable:
    """Labels from ``path``: a JSONL export (``.jsonl``, ``.ndjson``, ``.gz`` of them) or a CSV."""
    p = Path(path)
    source = display_name(p, None)
    suffixes = [s.lower() for s in p.suffixes[-2:]]
    if ".jsonl" in suffixes or ".ndjson" in suffixes:
        table = labels_from_rows(_jsonl_rows(p, source), control, source)
    else:
        table = _csv_labels(p, source, control)
    if not table.labels:
        raise FormatError(source, 1, "", "no labels")
    return table
