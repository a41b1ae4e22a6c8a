"""Small schema helpers the rest of the platform shares, so no package re-derives them."""

from __future__ import annotations

from typing import Any

from labelmill.schema.controls import CONTROL_TYPES, LabelSchema

#: Controls whose value is one answer out of a known finite set: what majority vote,
#: Dawid-Skene and the agreement coefficients can aggregate directly.
CATEGORICAL_TYPES: tuple[str, ...] = ("choices", "rating", "pairwise")

#: Controls whose value is a list, where an empty list means "nothing to mark here".
LIST_TYPES: tuple[str, ...] = (
    "multi_choices",
    "spans",
    "relations",
    "boxes",
    "polygons",
    "keypoints",
    "segments",
    "tracks",
)


def control_types() -> list[str]:
    """Every control type, in DESIGN.md's table order (for help texts and UI pickers)."""
    return list(CONTROL_TYPES)


def empty_value(schema: LabelSchema) -> dict[str, Any]:
    """The value an annotator starts from: ``[]`` for every list control, nothing else.

    Single-answer controls (choices, rating, ...) have no neutral answer, so they are left
    out; the result therefore validates with ``partial=True`` and, unless the schema has
    required single-answer controls, without it too.
    """
    return {control.name: [] for control in schema.controls if control.type in LIST_TYPES}


def categorical_controls(schema: LabelSchema) -> list[str]:
    """Names of the controls the quality engine can aggregate as categories, in schema order.

    Their possible answers are `LabelSchema.categories_of(name)`.
    """
    return [control.name for control in schema.controls if control.type in CATEGORICAL_TYPES]
