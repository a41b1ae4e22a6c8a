"""Request and response bodies. Requests are strict (no ``"1"`` for 1, no ``false`` for 0)
and reject unknown fields, so a typo is an error instead of a silently ignored setting."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from fastapi import Path as PathParam
from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

T = TypeVar("T")

#: Database ids: positive 64-bit integers (a larger number in a URL is a 422, not a crash).
MAX_ID = 2**63 - 1
Id = Annotated[int, PathParam(ge=1, le=MAX_ID)]
IdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


#: A name that is not only digits: command-line arguments and the API read digits as an id.
#: (A look-ahead: validated with Python's ``re``, which the OpenAPI document's readers share.)
NOT_ONLY_DIGITS = r"^(?!\s*\d+\s*$)"
#: A JSON number: finite (NaN and Infinity are not JSON; the request guard refuses them too).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _drop_null_defaults(schema: dict[str, Any]) -> None:
    for prop in schema.get("properties", {}).values():
        if (
            "default" in prop
            and prop["default"] is None
            and prop.get("type") != "null"
            and "anyOf" not in prop
        ):
            del prop["default"]


class Patch(Strict):
    """A PATCH body: a field left out keeps its value; ``null`` is refused (it would erase a
    field that cannot be empty), so the OpenAPI document does not offer it either
    (the fields' types have no None, and no ``default: null``)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_drop_null_defaults)

    #: Fields whose null means something (e.g. "no reason given").
    nullable: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value


class Page(BaseModel, Generic[T]):
    results: list[T]
    next_cursor: str | None = None


class LoginIn(Strict):
    name: str
    password: str


#: Global roles: ``admin`` does everything; ``creator`` may also create projects; ``member``
#: works in the projects it is added to.
UserRole = Literal["admin", "creator", "member"]


class UserIn(Strict):
    name: str = Field(
        min_length=1, max_length=150, pattern=r"^(?!\d+$)[A-Za-z0-9_.@+-]+$", description="Not only digits."
    )
    role: UserRole = "member"
    password: str | None = Field(default=None, min_length=8)

    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")


# PATCH fields are typed without None (it is refused) and default to None: left out.
class UserPatch(Patch):
    role: UserRole = None  # type: ignore[assignment]
    is_active: bool = None  # type: ignore[assignment]


class UserOut(BaseModel):
    id: int
    name: str
    role: str
    is_active: bool


class TokenIn(Strict):
    name: str = Field(default="", max_length=150)


class TokenOut(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime | None
    last_used_at: datetime | None = None


class NewTokenOut(TokenOut):
    token: str = Field(description="The secret; shown once, store it now.")


ProjectName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=NOT_ONLY_DIGITS, description="Not only digits.")
]


class ProjectIn(Strict):
    name: ProjectName
    label_schema: dict[str, Any] = Field(alias="schema", description="{'controls': [...]} (DESIGN.md)")
    settings: dict[str, Any] = Field(default_factory=dict)
    description: str = ""
    instructions: str = ""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, regex_engine="python-re")


class ProjectPatch(Patch):
    name: ProjectName = None  # type: ignore[assignment]
    label_schema: dict[str, Any] = Field(
        default=None,  # type: ignore[arg-type]
        alias="schema",
        description="{'controls': [...]} (DESIGN.md)",
    )
    settings: dict[str, Any] = Field(
        default=None,  # type: ignore[arg-type]
        description="Merged into the current settings.",
    )
    description: str = None  # type: ignore[assignment]
    instructions: str = None  # type: ignore[assignment]

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, regex_engine="python-re")


class ProjectOut(BaseModel):
    id: int
    name: str
    description: str
    instructions: str
    label_schema: dict[str, Any] = Field(serialization_alias="schema")
    settings: dict[str, Any]
    role: str = Field(description="The caller's role in this project.")
    item_count: int | None = None
    created_at: datetime | None


class MemberIn(Strict):
    user: str | int = Field(description="User id or name.")
    role: Literal["manager", "reviewer", "annotator"]


class MemberPatch(Patch):
    role: Literal["manager", "reviewer", "annotator"] = None  # type: ignore[assignment]
    paused: bool = None  # type: ignore[assignment]
    pause_reason: str | None = Field(default=None, max_length=1000, description="null: the default reason.")

    nullable: ClassVar[frozenset[str]] = frozenset({"pause_reason"})


class MemberOut(BaseModel):
    user_id: int
    name: str
    role: str
    paused: bool
    pause_reason: str | None
    #: ``manager`` (a manager's decision, which automatic pausing never overrides), ``auto``, or null.
    paused_by: Literal["manager", "auto"] | None = None


class ItemOut(BaseModel):
    id: int
    external_id: str
    data: dict[str, Any]
    meta: dict[str, Any] | None = None
    priority: float
    annotation_count: int
    created_at: datetime | None
    is_gold: bool | None = Field(default=None, description="Managers only.")
    gold: dict[str, Any] | None = Field(default=None, description="Managers only.")


class AnnotationOut(BaseModel):
    id: int
    annotator_id: int | None
    value: dict[str, Any]
    status: str
    lead_seconds: float | None
    created_at: datetime | None


class ItemDetailOut(ItemOut):
    annotations: list[AnnotationOut] = Field(default_factory=list)


class JobOut(BaseModel):
    id: int
    project_id: int | None
    kind: str
    status: str
    params: dict[str, Any] | None
    result: dict[str, Any] | None
    error: str | None
    progress_done: int
    progress_total: int | None
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    #: The worker that claimed it (``machine:pid:start``), its last heartbeat, and how many
    #: times it was claimed (a job whose worker died is claimed again).
    claimed_by: str | None = None
    heartbeat_at: datetime | None = None
    attempts: int | None = None


class FieldErrorOut(BaseModel):
    field: str
    message: str


class ErrorOut(BaseModel):
    """Every error: a message a person can act on, a machine-readable code, the offending field."""

    detail: str
    code: str
    field: str | None = None
    line: int | None = Field(default=None, description="Line of the uploaded file, for import errors.")
    errors: list[FieldErrorOut] | None = Field(default=None, description="Every invalid field, for 422.")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut, "description": text}
    for status, text in (
        (401, "Not authenticated"),
        (403, "Not allowed for the caller's role"),
        (404, "Not found, or not visible to the caller"),
        (409, "Conflicts with the current state"),
        (413, "Request body too large"),
        (422, "Invalid input: the message names the field (and file:line for imports)"),
        (
            503,
            "The database stayed busy (locked by other writers); nothing was done. Try again "
            "after the Retry-After header's seconds",
        ),
    )
}


class TaskItemOut(BaseModel):
    """What an annotator sees of an item: its data, never whether it is gold, never a gold answer."""

    id: int
    data: dict[str, Any]
    meta: dict[str, Any] | None = None


class PredictionOut(BaseModel):
    value: dict[str, Any]
    score: float | None
    model_version: str


class TaskOut(BaseModel):
    id: int
    project_id: int
    state: str
    item: TaskItemOut
    predictions: list[PredictionOut] = Field(default_factory=list, description="Pre-labels to start from.")
    leased_at: datetime | None
    expires_at: datetime | None


class NextTaskOut(BaseModel):
    task: TaskOut


class SubmitIn(Strict):
    value: dict[str, Any] = Field(description="The annotation value, keyed by control name (DESIGN.md).")


class MyTaskOut(BaseModel):
    id: int
    project_id: int
    item_id: int
    state: str
    leased_at: datetime | None
    expires_at: datetime | None
    finished_at: datetime | None


class MyAnnotationOut(BaseModel):
    id: int
    task_id: int | None
    item_id: int
    value: dict[str, Any]
    status: str
    lead_seconds: float | None
    created_at: datetime | None
    updated_at: datetime | None


class ReviewIn(Strict):
    action: Literal["accept", "reject", "correct"]
    comment: str = Field(default="", max_length=10_000, description="Required to reject.")
    value: dict[str, Any] | None = Field(default=None, description="The corrected value, to correct.")


class ReviewOut(BaseModel):
    id: int
    annotation_id: int
    reviewer_id: int | None
    action: str
    comment: str
    created_at: datetime | None


class ReviewAnnotationOut(BaseModel):
    id: int
    annotator_id: int | None
    value: dict[str, Any]
    status: str
    lead_seconds: float | None


class ReviewTaskOut(BaseModel):
    annotation: ReviewAnnotationOut
    item: TaskItemOut


class ExportIn(Strict):
    format: str = Field(
        min_length=1,
        max_length=50,
        description="An export format name (GET /api/v1/export-formats lists them).",
    )
    labels: Literal["consensus", "annotations"] = "consensus"
    include_predictions: bool = False
    include_auto: bool = True
    is_gold: bool | None = None
    has_consensus: bool | None = None
    min_annotations: int | None = Field(default=None, ge=0, le=1_000_000)
    slice: dict[str, str] = Field(default_factory=dict, description="meta field -> value the items must have")


class PredictionIn(Strict):
    external_id: str = Field(min_length=1, max_length=255)
    value: dict[str, Any]
    score: FiniteFloat | None = None
    model_version: str = Field(default="", max_length=200)


class PredictionsIn(Strict):
    predictions: list[PredictionIn] = Field(max_length=100_000)


class CreatedOut(BaseModel):
    created: int
