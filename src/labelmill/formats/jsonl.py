"""Reading labelmill JSONL: the ``labelmill import`` line format, and our own JSONL export.

A line is either *structured* (``{"data": {...}, "external_id"?, "predictions"?, "gold"?, "meta"?,
"annotations"?, "consensus"?}``) or a *flat* object taken whole as ``data``. A line is structured iff
it has a ``"data"`` key holding an object, so a flat item may still have a plain field called
``data``. A flat line's keys follow the column convention of tables (``external_id`` or ``id``,
``meta.KEY``, ``gold.CONTROL``, ``annotation.WHO.CONTROL``), so ``{"text": ..., "external_id": "a1"}``
works as users expect.

Imports of millions of lines must be quick and flat in memory, so the flat path does one UTF-8
decode, one JSON decode and a couple of ``isinstance`` checks per line and nothing else; the
stricter checks run only on structured lines, which are rarer and richer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, NoReturn

from labelmill.formats._io import SourceLike, display_name, open_binary, utf8_error_reason
from labelmill.formats.columns import ColumnMap, ColumnPlan, identifier
from labelmill.formats.records import FormatError, ImportRecord

__all__ = ["STRUCTURED_KEYS", "read_jsonl", "structured_record"]

#: The top-level keys a structured line may have; anything else is a typo we report.
STRUCTURED_KEYS = frozenset(
    {"data", "external_id", "predictions", "gold", "meta", "annotations", "consensus"}
)
#: Keys that only make sense in a structured line; they mark a line whose "data" is malformed.
_LABEL_KEYS = frozenset({"predictions", "gold", "annotations", "consensus"})
_PREDICTION_KEYS = frozenset({"value", "score", "model_version"})
_CONSENSUS_KEYS = frozenset({"value", "confidence", "method", "auto"})
_BOM = b"\xef\xbb\xbf"
#: Bounds the plans kept for flat lines whose keys keep changing.
_MAX_PLANS = 64


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are accepted by Python's json module but are not JSON, and would poison
    # scores and numeric data downstream.
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _is_number(value: Any) -> bool:
    return type(value) is float or type(value) is int


def _json_kind(value: Any) -> str:
    """The JSON name of a Python value's type, for error messages written for users."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


class _LineChecker:
    """Validates one structured line; raises :class:`FormatError` naming the offending field."""

    __slots__ = ("line", "source")

    def __init__(self, source: str, line: int) -> None:
        self.source = source
        self.line = line

    def fail(self, field: str, reason: str) -> NoReturn:
        raise FormatError(self.source, self.line, field, reason)

    def obj(self, value: Any, field: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.fail(field, f"must be an object, not {_json_kind(value)}")
        return value

    def optional_obj(self, value: Any, field: str) -> dict[str, Any] | None:
        return None if value is None else self.obj(value, field)

    def array(self, value: Any, field: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(field, f"must be an array, not {_json_kind(value)}")
        return value

    def number(self, value: Any, field: str) -> float | None:
        if value is None:
            return None
        if not _is_number(value):
            self.fail(field, f"must be a number, not {_json_kind(value)}")
        return float(value)

    def string(self, value: Any, field: str) -> str:
        if not isinstance(value, str):
            self.fail(field, f"must be a string, not {_json_kind(value)}")
        return value

    def identifier(self, value: Any, field: str) -> str | None:
        """External ids and annotator names: strings, or integers taken as their decimal string."""
        if value is None or isinstance(value, str):
            return value
        if type(value) is int:
            return str(value)
        self.fail(field, f"must be a string or an integer, not {_json_kind(value)}")

    def unknown_keys(self, obj: dict[str, Any], allowed: frozenset[str], field: str) -> None:
        extra = obj.keys() - allowed
        if extra:
            key = sorted(extra)[0]
            where = f"{field}.{key}" if field else key
            self.fail(where, f"unknown key (expected one of: {', '.join(sorted(allowed))})")

    def predictions(self, value: Any) -> list[dict[str, Any]]:
        out = []
        for i, raw in enumerate(self.array(value, "predictions")):
            field = f"predictions[{i}]"
            pred = self.obj(raw, field)
            self.unknown_keys(pred, _PREDICTION_KEYS, field)
            if "value" not in pred:
                self.fail(field, "missing 'value'")
            model_version = pred.get("model_version")
            out.append(
                {
                    "value": self.obj(pred["value"], f"{field}.value"),
                    "score": self.number(pred.get("score"), f"{field}.score"),
                    "model_version": ""
                    if model_version is None
                    else self.string(model_version, f"{field}.model_version"),
                }
            )
        return out

    def annotations(self, value: Any) -> list[dict[str, Any]]:
        out = []
        for i, raw in enumerate(self.array(value, "annotations")):
            field = f"annotations[{i}]"
            ann = dict(self.obj(raw, field))  # extra keys (timestamps, ids) pass through untouched
            if "value" not in ann:
                self.fail(field, "missing 'value'")
            if ann.get("annotator") is None:
                self.fail(f"{field}.annotator", "missing annotator")
            ann["annotator"] = self.identifier(ann["annotator"], f"{field}.annotator")
            self.obj(ann["value"], f"{field}.value")
            if "lead_seconds" in ann:
                ann["lead_seconds"] = self.number(ann["lead_seconds"], f"{field}.lead_seconds")
            if "status" in ann:
                self.string(ann["status"], f"{field}.status")
            out.append(ann)
        return out

    def consensus(self, value: Any) -> dict[str, Any] | None:
        cons = self.optional_obj(value, "consensus")
        if cons is None:
            return None
        self.unknown_keys(cons, _CONSENSUS_KEYS, "consensus")
        if "value" not in cons:
            self.fail("consensus", "missing 'value'")
        auto = cons.get("auto", False)
        if not isinstance(auto, bool):
            self.fail("consensus.auto", f"must be true or false, not {_json_kind(auto)}")
        method = cons.get("method")
        return {
            "value": self.obj(cons["value"], "consensus.value"),
            "confidence": self.number(cons.get("confidence"), "consensus.confidence"),
            "method": "" if method is None else self.string(method, "consensus.method"),
            "auto": auto,
        }


def _fast_predictions(preds: list[Any]) -> list[dict[str, Any]] | None:
    """Normalise well-formed predictions cheaply; None means "take the slow path that explains"."""
    out = []
    for pred in preds:
        if type(pred) is not dict or not pred.keys() <= _PREDICTION_KEYS:
            return None
        value = pred.get("value")
        score = pred.get("score")
        model_version = pred.get("model_version")
        if (
            type(value) is not dict
            or not (score is None or type(score) is float or type(score) is int)
            or not (model_version is None or type(model_version) is str)
        ):
            return None
        out.append(
            {
                "value": value,
                "score": None if score is None else float(score),
                "model_version": model_version or "",
            }
        )
    return out


def structured_record(obj: dict[str, Any], source: str, line: int) -> ImportRecord:
    """Validate a structured line (one with a ``data`` object) into a record.

    The common well-formed shapes are checked inline; the :class:`_LineChecker` that words the error
    is only built when something looks wrong, which keeps million-line imports fast.
    """
    if not obj.keys() <= STRUCTURED_KEYS:
        _LineChecker(source, line).unknown_keys(obj, STRUCTURED_KEYS, "")
    external_id = obj.get("external_id")
    if external_id is not None and type(external_id) is not str:
        external_id = _LineChecker(source, line).identifier(external_id, "external_id")
    raw_predictions = obj.get("predictions")
    predictions: list[dict[str, Any]] = []
    if raw_predictions is not None:
        fast = _fast_predictions(raw_predictions) if type(raw_predictions) is list else None
        predictions = _LineChecker(source, line).predictions(raw_predictions) if fast is None else fast
    gold = obj.get("gold")
    meta = obj.get("meta")
    raw_annotations = obj.get("annotations")
    consensus = obj.get("consensus")
    if (
        (gold is not None and type(gold) is not dict)
        or (meta is not None and type(meta) is not dict)
        or raw_annotations
        or consensus is not None
    ):
        check = _LineChecker(source, line)
        gold = check.optional_obj(gold, "gold")
        meta = check.optional_obj(meta, "meta")
        annotations = check.annotations(raw_annotations)
        consensus = check.consensus(consensus)
    else:
        annotations = []
        if raw_annotations is not None and type(raw_annotations) is not list:
            _LineChecker(source, line).annotations(raw_annotations)  # raises, naming the field
    return ImportRecord(
        source, line, obj["data"], external_id, predictions, gold, meta, annotations, consensus
    )


def read_jsonl(
    src: SourceLike, source_name: str | None = None, *, columns: ColumnMap | None = None
) -> Iterator[ImportRecord]:
    """Stream records from JSONL, one line at a time (constant memory).

    ``src`` is a path (``*.gz`` is decompressed) or an open stream; ``source_name`` is the file name
    errors show (default: the path's base name). Blank lines are skipped and a UTF-8 BOM tolerated.
    The keys of a flat line follow the column convention and ``columns``' options, like a table's
    columns (:mod:`labelmill.formats.columns`); a structured line says where everything goes itself.
    """
    source = display_name(src, source_name)
    decode = _DECODER.decode
    column_map = columns or ColumnMap()
    # Flat lines of one file mostly share their keys: plan each set of keys once.
    plans: dict[tuple[str, ...], ColumnPlan] = {}
    keys_seen: set[str] = set()
    with open_binary(src) as fp:
        n = 0
        for raw in fp:
            n += 1
            if type(raw) is bytes:
                if n == 1 and raw.startswith(_BOM):
                    raw = raw[3:]
                if raw.isspace() or not raw:
                    continue
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise FormatError(source, n, "", utf8_error_reason(exc)) from None
            else:  # a text stream handed in by a caller
                text = raw.removeprefix("\ufeff") if n == 1 else raw
                if text.isspace() or not text:
                    continue
            try:
                obj = decode(text)
            except json.JSONDecodeError as exc:
                raise FormatError(source, n, "", f"invalid JSON: {exc.msg} (column {exc.colno})") from None
            except ValueError as exc:  # NaN / Infinity
                raise FormatError(source, n, "", f"invalid JSON: {exc}") from None
            except RecursionError:
                raise FormatError(source, n, "", "invalid JSON: nested too deeply") from None
            if type(obj) is not dict:
                raise FormatError(source, n, "", f"each line must be a JSON object, not {_json_kind(obj)}")
            data = obj.get("data")
            if type(data) is dict:
                yield structured_record(obj, source, n)
            elif "data" in obj and not _LABEL_KEYS.isdisjoint(obj):
                # Labels beside a non-object "data": a structured line gone wrong, not a flat item.
                raise FormatError(source, n, "data", f"must be an object, not {_json_kind(data)}")
            else:
                keys = tuple(obj)
                plan = plans.get(keys)
                if plan is None:
                    if len(plans) >= _MAX_PLANS:
                        plans.clear()
                    plan = plans[keys] = column_map.plan(keys, source, n, require=False)
                    keys_seen.update(keys)
                if plan.plain:
                    yield ImportRecord(source, n, obj)
                elif plan.only_id is not None:
                    key = plan.only_id
                    yield ImportRecord(source, n, obj, identifier(obj.pop(key), source, n, key))
                else:
                    yield plan.record(list(obj.values()), source, n)
    for column, option in column_map.named_columns():
        if column not in keys_seen:
            raise FormatError(source, 1, "", f"no flat line has the key {column!r} (named by {option})")
