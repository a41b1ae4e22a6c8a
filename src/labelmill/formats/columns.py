"""Where the columns of a table go: item data, or the labels and ids that must not be data.

Everything in an item's ``data`` is shown to annotators, so a column holding the answer (the
``label`` column of a labelled CSV) must go to ``gold`` or ``annotations`` instead. One
convention, for CSV, TSV and Parquet columns and the keys of flat JSONL lines:

- ``external_id`` (else ``id``): the item's external id;
- ``meta.KEY``: ``meta[KEY]`` (for managers, filters and exports; annotators do not see it);
- ``gold.CONTROL``: the gold answer of ``CONTROL`` (the item becomes a gold item);
- ``annotation.WHO.CONTROL``: annotator ``WHO``'s answer of ``CONTROL``;
- every other column: ``data``.

Options name other columns for these roles (``gold={"label": "label"}`` takes the ``label``
column as the gold answer of the ``label`` control; the CLI's ``--gold-column label=label``),
or leave columns out (``drop``). An empty cell (an empty string or null) carries no label, so
one file can mix gold and ordinary items. Table cells are text: a control whose answer is not
a string reads its cell as JSON (``["a", "b"]``), a ``rating`` also as a plain integer.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from labelmill.formats.records import FormatError, ImportRecord

__all__ = ["ANSWER_NAMES", "ColumnMap", "ColumnPlan", "identifier", "parse_column_options"]

#: Data fields named like these usually hold an answer; an import that keeps them as data is warned.
ANSWER_NAMES = frozenset(
    {
        "label",
        "labels",
        "class",
        "class_label",
        "target",
        "answer",
        "answers",
        "gold",
        "gold_label",
        "ground_truth",
        "truth",
        "y",
        "annotation",
        "annotations",
        "prediction",
        "predictions",
        "consensus",
    }
)
#: Control types whose answer is a string; the others read a text cell as JSON.
_STRING_TYPES = frozenset({"choices", "text", "transcript"})
_META, _GOLD, _ANNOTATION = "meta.", "gold.", "annotation."


@dataclass(frozen=True)
class ColumnMap:
    """The options: which columns are gold, annotations, meta, the id, or left out.

    ``control_types`` (control name -> type, from the project's schema) lets a text cell become
    the value its control wants and lets typos in control names fail early; without it cells
    stay as read.
    """

    gold: Mapping[str, str] = field(default_factory=dict)  # control -> column
    annotations: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (annotator, control) -> column
    meta: Mapping[str, str] = field(default_factory=dict)  # meta key -> column
    drop: frozenset[str] = frozenset()
    id_column: str | None = None
    control_types: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        named = self.named_columns()
        seen: dict[str, str] = {}
        for column, option in named:
            if column in seen:
                raise ValueError(f"column {column!r} is named twice ({seen[column]} and {option})")
            seen[column] = option
        if self.control_types is not None:
            for control in [*self.gold, *(c for _, c in self.annotations)]:
                self._check_control(control)

    @property
    def explicit(self) -> bool:
        """True when any option names a column (the convention alone needs no option)."""
        return bool(self.gold or self.annotations or self.meta or self.drop or self.id_column)

    def named_columns(self) -> list[tuple[str, str]]:
        """(column, the option that names it) for every column an option names."""
        named = [(col, f"--gold-column {control}={col}") for control, col in self.gold.items()]
        named += [(col, f"--annotation-column {w}.{c}={col}") for (w, c), col in self.annotations.items()]
        named += [(col, f"--meta-column {key}={col}") for key, col in self.meta.items()]
        named += [(col, f"--drop-column {col}") for col in sorted(self.drop)]
        if self.id_column:
            named.append((self.id_column, f"--id-column {self.id_column}"))
        return named

    def _check_control(self, control: str) -> None:
        if self.control_types is not None and control not in self.control_types:
            known = ", ".join(self.control_types) or "none"
            raise ValueError(f"no control {control!r} in the project's schema (controls: {known})")

    def with_schema(self, control_types: Mapping[str, str]) -> ColumnMap:
        """The same options, checked against and typed by a project's controls."""
        return ColumnMap(
            self.gold, self.annotations, self.meta, self.drop, self.id_column, dict(control_types)
        )

    def plan(self, names: Iterable[str], source: str, line: int, *, require: bool = True) -> ColumnPlan:
        """Where each of ``names`` goes. ``require``: a column an option names must be among them
        (a table's header); flat JSONL lines differ in their keys, so there it may be missing."""
        return ColumnPlan(self, list(names), source, line, require)

    def cell(self, control: str, raw: Any, source: str, line: int, column: str) -> Any:
        """A cell as the value of ``control``; None when the cell is empty (no label)."""
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        kind = None if self.control_types is None else self.control_types.get(control)
        if kind is None or not isinstance(raw, str) or kind in _STRING_TYPES:
            return raw
        text = raw.strip()
        if kind == "rating" and text.lstrip("-").isdigit():
            return int(text)
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise FormatError(
                source, line, column, f"a {kind} answer must be JSON here ({exc.msg} at column {exc.colno})"
            ) from None


class ColumnPlan:
    """The roles of one header's columns, turning each row into an :class:`ImportRecord`."""

    __slots__ = (
        "annotations",
        "data",
        "drop",
        "gold",
        "id_index",
        "map",
        "meta",
        "names",
        "only_id",
        "plain",
    )

    def __init__(self, columns: ColumnMap, names: list[str], source: str, line: int, require: bool) -> None:
        self.map = columns
        self.names = names
        index = {name: i for i, name in enumerate(names)}
        if require:
            for column, option in columns.named_columns():
                if column not in index:
                    raise FormatError(
                        source, line, "", f"no column {column!r} in the header (named by {option})"
                    )
        taken: set[int] = set()

        def at(column: str) -> int | None:
            i = index.get(column)
            if i is not None:
                taken.add(i)
            return i

        self.drop = [i for c in columns.drop if (i := at(c)) is not None]
        self.gold = [(ctl, i) for ctl, c in columns.gold.items() if (i := at(c)) is not None]
        self.annotations = [(key, i) for key, c in columns.annotations.items() if (i := at(c)) is not None]
        self.meta = [(key, i) for key, c in columns.meta.items() if (i := at(c)) is not None]
        id_column = columns.id_column
        if id_column is None:
            id_column = next((c for c in ("external_id", "id") if c in index and index[c] not in taken), None)
        self.id_index = -1 if id_column is None else index.get(id_column, -1)
        if self.id_index >= 0:
            taken.add(self.id_index)
        for i, name in enumerate(names):
            if i in taken:
                continue
            if name.startswith(_META) and len(name) > len(_META):
                self.meta.append((name[len(_META) :], i))
            elif name.startswith(_GOLD) and len(name) > len(_GOLD):
                self.gold.append((self._control(name[len(_GOLD) :], name, source, line), i))
            elif name.startswith(_ANNOTATION) and name.count(".") >= 2:
                who, _, control = name[len(_ANNOTATION) :].rpartition(".")
                if not who or not control:
                    raise FormatError(source, line, name, "expected annotation.ANNOTATOR.CONTROL")
                self.annotations.append(((who, self._control(control, name, source, line)), i))
            else:
                continue
            taken.add(i)
        self.data = [(name, i) for i, name in enumerate(names) if i not in taken]
        self.plain = not taken
        #: The id column's name when it is the only column not taken as data (the common case,
        #: which the JSONL reader serves by popping the one key from the line).
        self.only_id = names[self.id_index] if taken == {self.id_index} and self.id_index >= 0 else None

    def _control(self, control: str, column: str, source: str, line: int) -> str:
        try:
            self.map._check_control(control)
        except ValueError as exc:
            raise FormatError(source, line, column, str(exc)) from None
        return control

    def record(self, values: list[Any], source: str, line: int) -> ImportRecord:
        if self.plain:
            return ImportRecord(source, line, dict(zip(self.names, values, strict=True)))
        rec = ImportRecord(source, line, {name: values[i] for name, i in self.data})
        if self.id_index >= 0:
            rec.external_id = identifier(values[self.id_index], source, line, self.names[self.id_index])
        if self.meta:
            rec.meta = {key: values[i] for key, i in self.meta}
        cell = self.map.cell
        gold = {}
        for control, i in self.gold:
            value = cell(control, values[i], source, line, self.names[i])
            if value is not None:
                gold[control] = value
        rec.gold = gold or None
        answers: dict[str, dict[str, Any]] = {}
        for (who, control), i in self.annotations:
            value = cell(control, values[i], source, line, self.names[i])
            if value is not None:
                answers.setdefault(who, {})[control] = value
        rec.annotations = [{"annotator": who, "value": value} for who, value in answers.items()]
        return rec


def identifier(raw: Any, source: str, line: int, column: str) -> str | None:
    """An external id: a string, or an integer (a float one too, as tables with gaps store them)."""
    if raw is None or isinstance(raw, str):
        return raw or None
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    kind = "a boolean" if isinstance(raw, bool) else "a number" if isinstance(raw, float) else "an object"
    if isinstance(raw, list):
        kind = "an array"
    raise FormatError(source, line, column, f"must be a string or an integer, not {kind}")


def _pairs(option: str, values: Iterable[str] | Mapping[str, str] | None) -> list[tuple[str, str]]:
    if values is None:
        return []
    if isinstance(values, Mapping):
        return [(str(k), str(v)) for k, v in values.items()]
    pairs = []
    for text in values:
        key, sep, column = text.partition("=")
        key, column = key.strip(), column.strip() if sep else key.strip()
        if not key or not column:
            raise ValueError(f"--{option}-column {text!r}: expected NAME=COLUMN (or COLUMN alone)")
        pairs.append((key, column))
    return pairs


def parse_column_options(
    *,
    gold: Iterable[str] | Mapping[str, str] | None = None,
    annotations: Iterable[str] | Mapping[str, str] | None = None,
    meta: Iterable[str] | Mapping[str, str] | None = None,
    drop: Iterable[str] | None = None,
    id_column: str | None = None,
) -> ColumnMap:
    """Options as users write them: ``CONTROL=COLUMN`` (``CONTROL`` alone when the column has the
    control's name), ``ANNOTATOR.CONTROL=COLUMN``, ``KEY=COLUMN`` (or ``COLUMN``, kept as its
    own key); or mappings of the same (the SDK's keyword arguments)."""
    pairs = []
    for key, column in _pairs("annotation", annotations):
        who, _, control = key.rpartition(".")
        if not who or not control:
            raise ValueError(f"annotation column {key}={column}: expected ANNOTATOR.CONTROL=COLUMN")
        pairs.append(((who, control), column))
    return ColumnMap(
        gold=dict(_pairs("gold", gold)),
        annotations=dict(pairs),
        meta=dict(_pairs("meta", meta)),
        drop=frozenset(c.strip() for c in drop or () if c.strip()),
        id_column=id_column.strip() if id_column and id_column.strip() else None,
    )
