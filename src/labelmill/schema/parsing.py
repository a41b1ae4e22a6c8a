"""Reading and writing schema files, with errors a person can act on.

Pydantic's own messages ("Input tag 'boxs' found using 'type' does not match any of the
expected tags", locations with the union tag in them) are written for developers; the
people who write schema files are project managers, so every pydantic error is turned
into one ``controls[1].type: unknown control type 'boxs' (expected one of: ...)`` line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from labelmill.schema.controls import CONTROL_TYPES, Control, FieldProblem, LabelSchema
from labelmill.schema.errors import SchemaError

_EXPECTED_TYPES = ", ".join(sorted(CONTROL_TYPES))


def parse_schema(obj: Mapping[str, Any]) -> LabelSchema:
    """Build a `LabelSchema` from the decoded JSON/YAML of a schema file.

    Raises `SchemaError` listing every problem pydantic found, one ``path: message`` line
    each, so a manager can fix a schema file in one pass.
    """
    if isinstance(obj, LabelSchema):
        return obj
    if not isinstance(obj, Mapping):
        raise SchemaError(f"expected a schema object with a 'controls' list, got {json_kind(obj)}")
    try:
        return LabelSchema.model_validate(dict(obj))
    except ValidationError as exc:
        lines = [_describe(error) for error in exc.errors()]
        # pydantic can report the same place twice (e.g. one per union branch); keep the first
        unique = list(dict.fromkeys(lines))
        raise SchemaError("\n".join(unique), unique) from None


def schema_to_json(schema: LabelSchema) -> dict[str, Any]:
    """The schema as plain JSON data, in the schema file shape.

    Defaults are written out (``"required": true``) so a stored schema keeps its meaning
    even if a default changes in a later version; `parse_schema` reads it back unchanged.
    """
    return schema.model_dump(mode="json", exclude_none=True)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a schema file, for the API's OpenAPI document and the docs."""
    return LabelSchema.model_json_schema()


def json_kind(value: object) -> str:
    """The JSON name of a value's type, which is what a schema or value author thinks in."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, Sequence):
        return "list"
    return type(value).__name__


def _path(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for index, part in enumerate(loc):
        # inside a control, pydantic puts the discriminator tag ("choices") in the location
        if index == 2 and loc[0] == "controls" and isinstance(loc[1], int) and part in CONTROL_TYPES:
            continue
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(f".{part}" if parts else str(part))
    return "".join(parts)


def _join(path: str, field: str) -> str:
    if not path:
        return field
    return path + field if field.startswith("[") else f"{path}.{field}"


def _model_for(loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model whose field `loc` ends in (for listing allowed fields)."""
    if not loc:
        return LabelSchema
    if len(loc) == 3 and loc[0] == "controls" and loc[2] in CONTROL_TYPES:
        return _CONTROL_MODELS.get(str(loc[2]))
    return None


_FIELD_ORDER = ("name", "type", "source", "classes", "spans", "min", "max", "min_count", "max_count")


def _field_rank(field: str) -> tuple[int, str]:
    """Sort fields the way a schema file is written: identity first, then the rest."""
    return (_FIELD_ORDER.index(field) if field in _FIELD_ORDER else len(_FIELD_ORDER), field)


def _describe(error: ErrorDetails) -> str:
    loc = error["loc"]
    path = _path(loc)
    kind = error["type"]
    ctx: dict[str, Any] = dict(error.get("ctx") or {})
    value = error.get("input")

    if kind == "value_error":
        cause = ctx.get("error")
        if isinstance(cause, FieldProblem):
            return f"{_join(path, cause.field)}: {cause.message}"
        message = str(cause) if cause is not None else error["msg"]
    elif kind == "union_tag_invalid":
        tag = value.get("type") if isinstance(value, Mapping) else ctx.get("tag")
        return f"{_join(path, 'type')}: unknown control type {tag!r} (expected one of: {_EXPECTED_TYPES})"
    elif kind == "union_tag_not_found":
        return f"{_join(path, 'type')}: missing control type (expected one of: {_EXPECTED_TYPES})"
    elif kind in ("model_attributes_type", "model_type", "dict_type"):
        what = "a control" if path.startswith("controls[") else "an object"
        message = f"expected {what} (an object), got {json_kind(value)}"
    elif kind == "missing":
        message = "required field is missing"
    elif kind == "extra_forbidden":
        model = _model_for(loc[:-1])
        if model is not None:
            allowed = ", ".join(sorted(model.model_fields, key=_field_rank))
            owner = f"a {loc[2]} control" if model is not LabelSchema else "a schema"
            message = f"unknown field ({owner} takes: {allowed})"
        else:
            message = "unknown field"
    elif kind == "string_type":
        message = f"expected a string, got {json_kind(value)}"
    elif kind in ("int_type", "int_from_float"):
        message = f"expected an integer, got {json_kind(value)}"
    elif kind == "bool_type":
        message = f"expected true or false, got {json_kind(value)}"
    elif kind == "list_type":
        message = f"expected a list, got {json_kind(value)}"
    else:
        message = error["msg"]
    return f"{path}: {message}" if path else message


def _control_models() -> dict[str, type[BaseModel]]:
    """Control type name -> model, read off the `Control` union so the two cannot drift."""
    models: dict[str, type[BaseModel]] = {}
    for model in get_args(get_args(Control)[0]):
        (tag,) = get_args(model.model_fields["type"].annotation)
        models[tag] = model
    return models


_CONTROL_MODELS = _control_models()
