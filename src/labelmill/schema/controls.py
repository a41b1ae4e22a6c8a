"""Pydantic models of a label schema: one model per control type, joined on `type`.

The models are strict (no coercion of ``"5"`` into ``5``, no unknown keys) because a
schema file is written by hand once and read by every part of the platform after: a typo
such as ``"clases"`` must fail at ``project create``, not silently label nothing.

`required` defaults to true for controls whose value is a single answer (choices, rating,
pairwise, ranking, transcript): leaving them out is almost always a forgotten answer. It
defaults to false for list-valued controls (spans, boxes, ...), where "found nothing" is a
normal answer, and for free `text`, which is usually an optional comment. A required
control whose key is absent from a value is an error; a present empty list is an answer.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

#: The control types, in the order of DESIGN.md's "Annotation values" table.
CONTROL_TYPES: tuple[str, ...] = (
    "choices",
    "multi_choices",
    "spans",
    "relations",
    "boxes",
    "polygons",
    "keypoints",
    "segments",
    "tracks",
    "transcript",
    "rating",
    "pairwise",
    "ranking",
    "text",
)

#: Control names become JSON keys, CSV column names, HTML ids and URL parts; keeping them
#: to ASCII identifiers means none of those needs escaping.
_SAFE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class FieldProblem(ValueError):
    """A failed check that knows which field is at fault.

    Pydantic locates an error at the validator that raised it (a whole control, or the whole
    schema); `field` is the path below that point, so `parse_schema` can name the real field.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class _Control(BaseModel):
    """Fields every control has."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: str
    source: str
    required: bool = False
    description: str | None = None
    hint: str | None = None

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(
                f"control name {name!r} is not a safe identifier "
                "(ASCII letters, digits and '_', not starting with a digit, at most 64 characters)"
            )
        return name

    @field_validator("source")
    @classmethod
    def _source_named(cls, source: str) -> str:
        if not source.strip():
            raise ValueError("source must name the item data field this control labels")
        return source


class _ClassedControl(_Control):
    """A control whose answers carry a label from a fixed list of classes."""

    classes: list[str]
    _class_set: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, classes: list[str]) -> list[str]:
        if not classes:
            raise ValueError("at least one class is needed")
        seen: set[str] = set()
        for index, label in enumerate(classes):
            if not label.strip():
                raise FieldProblem(f"[{index}]", "a class must be a non-empty string")
            if label in seen:
                raise ValueError(f"duplicate class {label!r}")
            seen.add(label)
        return classes

    def model_post_init(self, context: Any, /) -> None:
        # The validator checks membership for every answer; a frozenset makes that O(1).
        self._class_set = frozenset(self.classes)

    @property
    def class_set(self) -> frozenset[str]:
        """The classes as a set, for fast membership checks."""
        return self._class_set


class ChoicesControl(_ClassedControl):
    """One class per item, e.g. sentiment."""

    type: Literal["choices"]
    required: bool = True


class MultiChoicesControl(_ClassedControl):
    """Any number of classes per item (tags), optionally bounded."""

    type: Literal["multi_choices"]
    min_count: int = 0
    max_count: int | None = None

    @model_validator(mode="after")
    def _counts(self) -> MultiChoicesControl:
        if self.min_count < 0:
            raise FieldProblem("min_count", f"min_count {self.min_count} is negative")
        if self.min_count > len(self.classes):
            raise FieldProblem(
                "min_count",
                f"min_count {self.min_count} is more than the {len(self.classes)} classes there are",
            )
        if self.max_count is not None:
            if self.max_count < 1:
                raise FieldProblem("max_count", f"max_count {self.max_count} must be at least 1")
            if self.max_count < self.min_count:
                raise FieldProblem(
                    "max_count", f"max_count {self.max_count} is less than min_count {self.min_count}"
                )
        return self


class SpansControl(_ClassedControl):
    """Labelled character ranges of a text field (named entities)."""

    type: Literal["spans"]


class RelationsControl(_ClassedControl):
    """Labelled links between two spans of the spans control named by `spans`."""

    type: Literal["relations"]
    spans: str


class BoxesControl(_ClassedControl):
    """Labelled axis-aligned rectangles on an image."""

    type: Literal["boxes"]


class PolygonsControl(_ClassedControl):
    """Labelled polygons on an image (segmentation outlines)."""

    type: Literal["polygons"]


class KeypointsControl(_ClassedControl):
    """Labelled points on an image (pose landmarks)."""

    type: Literal["keypoints"]


class SegmentsControl(_ClassedControl):
    """Labelled time ranges of audio or video, each with an optional transcript."""

    type: Literal["segments"]


class TracksControl(_ClassedControl):
    """Labelled objects followed through a video by keyframed boxes."""

    type: Literal["tracks"]


class _TextLikeControl(_Control):
    """A control whose answer is a string, optionally bounded in length."""

    max_length: int | None = None

    @field_validator("max_length")
    @classmethod
    def _positive_length(cls, max_length: int | None) -> int | None:
        if max_length is not None and max_length < 1:
            raise ValueError(f"max_length {max_length} must be at least 1")
        return max_length


class TranscriptControl(_TextLikeControl):
    """The full transcription of an audio/video/image field."""

    type: Literal["transcript"]
    required: bool = True


class TextControl(_TextLikeControl):
    """Free text (a comment, a rewrite, an answer)."""

    type: Literal["text"]


#: A rating scale has at most this many steps after its first (0..100 is the longest from 0).
MAX_RATING_STEPS = 100
MAX_RATING_BOUND = 1_000_000


class RatingControl(_Control):
    """An integer score on a closed scale (Likert, 1-5 stars)."""

    type: Literal["rating"]
    required: bool = True
    min: int = 1
    max: int = 5

    @model_validator(mode="after")
    def _range(self) -> RatingControl:
        if self.min >= self.max:
            raise FieldProblem("max", f"rating max {self.max} must be greater than min {self.min}")
        # Every step is a class to aggregate and a button to show: a scale is short.
        if abs(self.min) > MAX_RATING_BOUND or abs(self.max) > MAX_RATING_BOUND:
            raise FieldProblem("min", f"rating min and max must lie within ±{MAX_RATING_BOUND}")
        if self.max - self.min > MAX_RATING_STEPS:
            raise FieldProblem(
                "max",
                f"rating scale {self.min}..{self.max} is too long: at most {MAX_RATING_STEPS + 1} steps",
            )
        return self


class PairwiseControl(_Control):
    """A preference between two responses (``a``, ``b`` or ``tie``), as in RLHF comparisons."""

    type: Literal["pairwise"]
    required: bool = True


class RankingControl(_Control):
    """An ordering, best first, of the responses listed in the item field `source`."""

    type: Literal["ranking"]
    required: bool = True


#: Any control; pydantic picks the model from `type`.
Control = Annotated[
    ChoicesControl
    | MultiChoicesControl
    | SpansControl
    | RelationsControl
    | BoxesControl
    | PolygonsControl
    | KeypointsControl
    | SegmentsControl
    | TracksControl
    | TranscriptControl
    | RatingControl
    | PairwiseControl
    | RankingControl
    | TextControl,
    Field(discriminator="type"),
]

#: Controls with a fixed class list, for callers that need `classes`.
ClassedControl = (
    ChoicesControl
    | MultiChoicesControl
    | SpansControl
    | RelationsControl
    | BoxesControl
    | PolygonsControl
    | KeypointsControl
    | SegmentsControl
    | TracksControl
)

#: The answers of a pairwise control, in a fixed order the quality engine can index.
PAIRWISE_CHOICES: tuple[str, ...] = ("a", "b", "tie")


class LabelSchema(BaseModel):
    """A project's label schema: the controls an annotator fills in for each item."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    controls: list[Control]
    _by_name: dict[str, Control] = PrivateAttr(default_factory=dict)
    #: Compiled per-control checkers, built by `labelmill.schema.values` on first use.
    _validation_plan: Any = PrivateAttr(default=None)

    @field_validator("controls")
    @classmethod
    def _not_empty(cls, controls: list[Control]) -> list[Control]:
        if not controls:
            raise ValueError("a schema needs at least one control")
        return controls

    @model_validator(mode="after")
    def _consistent(self) -> LabelSchema:
        first_index: dict[str, int] = {}
        for index, control in enumerate(self.controls):
            if control.name in first_index:
                raise FieldProblem(
                    f"controls[{index}].name",
                    f"duplicate control name {control.name!r} (also controls[{first_index[control.name]}])",
                )
            first_index[control.name] = index
        for index, control in enumerate(self.controls):
            if not isinstance(control, RelationsControl):
                continue
            target_index = first_index.get(control.spans)
            if target_index is None:
                raise FieldProblem(
                    f"controls[{index}].spans", f"no control named {control.spans!r} in the schema"
                )
            target = self.controls[target_index]
            if not isinstance(target, SpansControl):
                raise FieldProblem(
                    f"controls[{index}].spans",
                    f"control {control.spans!r} is a {target.type} control, not spans",
                )
            if target.source != control.source:
                raise FieldProblem(
                    f"controls[{index}].source",
                    f"relations source {control.source!r} differs from the source {target.source!r} "
                    f"of its spans control {target.name!r}",
                )
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._by_name = {control.name: control for control in self.controls}

    def __eq__(self, other: object) -> bool:
        # Two schemas are equal when their controls are; the cached validation plan (closures,
        # built on first use) must not make a used schema differ from a freshly parsed one.
        if isinstance(other, LabelSchema):
            return self.controls == other.controls
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside: not hashable

    def __getstate__(self) -> dict[Any, Any]:
        # The validation plan holds closures, which cannot be pickled (schemas travel to Ray
        # workers); drop it and let the receiving process rebuild it on first use.
        state = super().__getstate__()
        private = state.get("__pydantic_private__")
        if private and private.get("_validation_plan") is not None:
            state = {**state, "__pydantic_private__": {**private, "_validation_plan": None}}
        return state

    @property
    def names(self) -> list[str]:
        """Control names in schema order (the order a UI shows them)."""
        return [control.name for control in self.controls]

    def control(self, name: str) -> Control:
        """The control called `name`; KeyError (naming the known controls) if there is none."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no control {name!r} (schema controls: {', '.join(self.names)})") from None

    def classes_of(self, name: str) -> list[str]:
        """The classes of control `name`, for controls that have them.

        Raises KeyError for an unknown control and ValueError for a control without classes
        (rating, pairwise, ...; see `categories_of` for those) rather than returning an empty
        list that would quietly make every answer look wrong.
        """
        control = self.control(name)
        if not isinstance(control, _ClassedControl):
            raise ValueError(f"control {name!r} is a {control.type} control and has no classes")
        return list(control.classes)

    def categories_of(self, name: str) -> list[str] | list[int]:
        """Every possible answer of a categorical control, in a stable order.

        The quality engine needs this to lay out confusion matrices: classes for choices,
        ``min..max`` for rating, ``a, b, tie`` for pairwise.
        """
        control = self.control(name)
        if isinstance(control, ChoicesControl):
            return list(control.classes)
        if isinstance(control, RatingControl):
            return list(range(control.min, control.max + 1))
        if isinstance(control, PairwiseControl):
            return list(PAIRWISE_CHOICES)
        raise ValueError(f"control {name!r} is a {control.type} control, not a categorical one")
