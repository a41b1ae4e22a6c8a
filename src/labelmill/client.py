"""The labelmill Python SDK: a small, typed, synchronous client for the REST API (``/api/v1``).

::

    from labelmill import Client

    with Client("http://127.0.0.1:8080", token="...") as lm:
        project = lm.create_project("reviews", {"controls": [...]})
        lm.import_items(project, [{"text": "great"}, {"text": "awful"}])  # one job, all or nothing
        task = lm.next_task(project)

It speaks HTTP only (it never imports the server side), so it works against any labelmill
server. pandas and Hugging Face ``datasets`` are optional: they are used when you hand them to
:meth:`Client.import_items` or call :meth:`Client.export_dataframe`, and never imported otherwise.

Every error the server reports becomes a :class:`LabelmillAPIError` subclass chosen by the
status (401, 403, 404, 409, 413, 422) and carrying the server's message, code and field; a server
that cannot be reached raises :class:`LabelmillConnectionError` (a :class:`ConnectionError`).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import email.utils
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, TypeVar

import httpx

if TYPE_CHECKING:
    import pandas

    from labelmill.formats.columns import ColumnMap, ColumnPlan

__all__ = [
    "Annotation",
    "AuthenticationError",
    "Client",
    "ConflictError",
    "ConsensusLabel",
    "Item",
    "Job",
    "LabelmillAPIError",
    "LabelmillConnectionError",
    "Member",
    "NotFoundError",
    "PayloadTooLarge",
    "PermissionDenied",
    "Prediction",
    "Project",
    "Task",
    "TaskItem",
    "TaskState",
    "User",
    "ValidationError",
]

API_PREFIX = "/api/v1"
OnDuplicate = Literal["reject", "update", "skip"]
Role = Literal["manager", "reviewer", "annotator"]

#: Largest JSON body the server accepts is 16 MiB; stay well below it when batching predictions.
_MAX_JSON_BODY = 8 * 1024 * 1024


# -- errors ----------------------------------------------------------------------------------------


class LabelmillAPIError(Exception):
    """The server refused a request. ``status`` is the HTTP status; ``message``, ``code`` and
    ``field`` come from the server's error body ``{"detail", "code", "field"}``, so a caller can
    branch on ``code``/``field`` instead of parsing the message."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        code: str | None = None,
        *,
        line: int | None = None,
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.code = code
        #: For import errors: the line of the uploaded batch the server named.
        self.line = line
        #: For 422: every invalid field as ``{"field", "message"}``.
        self.errors = errors or []

    def __str__(self) -> str:
        where = f" [field {self.field}]" if self.field else ""
        return f"{self.status} {self.code or 'error'}: {self.message}{where}"


class AuthenticationError(LabelmillAPIError):
    """401: no token, or the token is wrong, revoked, or its user is inactive."""


class PermissionDenied(LabelmillAPIError):
    """403: authenticated, but the caller's role does not allow this."""


class NotFoundError(LabelmillAPIError):
    """404: no such thing, or it is not visible to the caller (projects are hidden from non-members)."""


class ConflictError(LabelmillAPIError):
    """409: conflicts with the current state (a duplicate name or external id, a late submit, ...)."""


class PayloadTooLarge(LabelmillAPIError):
    """413: the request body is over the server's limit; send smaller batches."""


class ValidationError(LabelmillAPIError):
    """422: invalid input; ``field`` (and ``line`` for imports) says where."""


class LabelmillConnectionError(ConnectionError):
    """The server could not be reached (refused, unresolvable, timed out, or dropped the connection)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach labelmill at {url}: {reason}")
        self.url = url
        self.reason = reason


_ERRORS_BY_STATUS: dict[int, type[LabelmillAPIError]] = {
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLarge,
    422: ValidationError,
}


def _error_from(response: httpx.Response) -> LabelmillAPIError:
    """Build the exception for an error response, tolerating bodies that are not ours (a proxy's
    HTML 502, say) so the caller still sees the status and some text."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        message = detail if isinstance(detail, str) else json.dumps(detail)
        field, code, line = body.get("field"), body.get("code"), body.get("line")
        errors = body.get("errors") if isinstance(body.get("errors"), list) else None
    else:
        text = response.text.strip()
        message = text[:500] if text else response.reason_phrase or f"HTTP {status}"
        field = code = line = errors = None
    cls = _ERRORS_BY_STATUS.get(status, LabelmillAPIError)
    return cls(status, message, field, code, line=line, errors=errors)


# -- results ---------------------------------------------------------------------------------------

_T = TypeVar("_T")


def _parse_datetime(value: Any) -> _dt.datetime | None:
    if isinstance(value, str):
        try:
            return _dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _build(cls: type[_T], data: Mapping[str, Any], **override: Any) -> _T:
    """Construct a result dataclass from a response body, ignoring fields a newer server adds
    (so an old SDK keeps working) and parsing ``*_at`` timestamps."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in override:
            values[f.name] = override[f.name]
        elif f.name in data:
            raw = data[f.name]
            values[f.name] = _parse_datetime(raw) if f.name.endswith("_at") else raw
    return cls(**values)


@dataclasses.dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    is_active: bool = True


@dataclasses.dataclass(frozen=True)
class Project:
    id: int
    name: str
    schema: dict[str, Any]
    settings: dict[str, Any]
    role: str
    """The caller's role in this project."""
    description: str = ""
    instructions: str = ""
    item_count: int | None = None
    """Managers only (None otherwise, and in :meth:`Client.projects`)."""
    created_at: _dt.datetime | None = None

    @property
    def controls(self) -> list[str]:
        """Names of the schema's controls, in schema order."""
        return [str(c["name"]) for c in self.schema.get("controls", []) if isinstance(c, dict)]


@dataclasses.dataclass(frozen=True)
class Member:
    user_id: int
    name: str
    role: str
    paused: bool = False
    pause_reason: str | None = None
    #: ``manager`` when a manager decided (automatic pausing never overrides it), ``auto``, or None.
    paused_by: str | None = None


@dataclasses.dataclass(frozen=True)
class Item:
    id: int
    external_id: str
    data: dict[str, Any]
    priority: float = 0.0
    annotation_count: int = 0
    meta: dict[str, Any] | None = None
    created_at: _dt.datetime | None = None
    is_gold: bool | None = None
    """Managers only."""
    gold: dict[str, Any] | None = None
    """Managers only."""


@dataclasses.dataclass(frozen=True)
class Job:
    """Background work with its progress; an import's ``result`` holds its counts
    (``created``, ``updated``, ``skipped``, ``predictions``, ``annotations``, ``media_files``)."""

    id: int
    kind: str
    status: str
    project_id: int | None = None
    params: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    progress_done: int = 0
    progress_total: int | None = None
    created_at: _dt.datetime | None = None
    started_at: _dt.datetime | None = None
    finished_at: _dt.datetime | None = None
    claimed_by: str | None = None
    """The worker running (or that last ran) it."""
    heartbeat_at: _dt.datetime | None = None
    attempts: int | None = None
    """How many times a worker claimed it (a job whose worker died is claimed again)."""


@dataclasses.dataclass(frozen=True)
class Prediction:
    value: dict[str, Any]
    score: float | None
    model_version: str


@dataclasses.dataclass(frozen=True)
class TaskItem:
    """What an annotator sees of an item: its data (never whether it is gold)."""

    id: int
    data: dict[str, Any]
    meta: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Task:
    """A lease on one item for the calling annotator; submit or skip it before ``expires_at``."""

    id: int
    project_id: int
    state: str
    item: TaskItem
    predictions: list[Prediction] = dataclasses.field(default_factory=list)
    """Pre-labels to start from."""
    leased_at: _dt.datetime | None = None
    expires_at: _dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class TaskState:
    """One of the caller's tasks as it stands (what :meth:`Client.skip` answers)."""

    id: int
    project_id: int
    item_id: int
    state: str
    leased_at: _dt.datetime | None = None
    expires_at: _dt.datetime | None = None
    finished_at: _dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class Annotation:
    """The caller's stored annotation (what :meth:`Client.submit` answers)."""

    id: int
    item_id: int
    value: dict[str, Any]
    status: str
    task_id: int | None = None
    lead_seconds: float | None = None
    created_at: _dt.datetime | None = None
    updated_at: _dt.datetime | None = None


class ConsensusLabel(TypedDict):
    """An item's aggregated label, as in the JSONL export."""

    value: dict[str, Any]
    confidence: float | None
    method: str
    auto: bool


# -- serialisation ---------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    """Make numpy, pandas and datetime values JSON, the way a person would expect."""
    if hasattr(value, "item") and type(value).__module__ == "numpy":  # numpy scalars
        value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            return None if math.isnan(value) else _not_json(value)
        return value
    if hasattr(value, "tolist"):  # numpy arrays, pandas arrays
        return value.tolist()
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return _not_json(value)
    module = type(value).__module__
    if module.startswith("pandas") and str(value) in ("<NA>", "NaT"):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return _not_json(value)


def _not_json(value: Any) -> Any:
    raise TypeError(f"a value of type {type(value).__name__} ({value!r:.60}) is not JSON")


def _dumps(obj: Any, what: str) -> bytes:
    try:
        return json.dumps(
            obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_json_default
        ).encode()
    except (TypeError, ValueError) as exc:
        reason = str(exc)
        if "Out of range float" in reason:
            reason = "NaN or Infinity is not valid JSON (use None for a missing value)"
        raise ValueError(f"{what}: {reason}") from None


def _clean_missing(value: Any) -> Any:
    """Missing values of a table (NaN, NA, NaT) are JSON null; everything else is kept."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__module__.startswith(("numpy", "pandas")):
        try:
            if value != value:  # NaN-like scalars
                return None
        except (TypeError, ValueError):  # arrays compare elementwise
            return value
        if str(value) in ("<NA>", "NaT"):
            return None
    return value


def _external_id(value: Any) -> Any:
    """A table's id column may have become float (1.0) when it has gaps; send 1, not 1.0."""
    value = _clean_missing(value)
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class _RowMapper:
    """Table rows as import lines by the column convention and options of
    :mod:`labelmill.formats.columns` (the same code the server reads CSV files with)."""

    def __init__(self, columns: ColumnMap) -> None:
        self.columns = columns
        self.plans: dict[tuple[str, ...], ColumnPlan] = {}
        self.keys_seen: set[str] = set()

    def line(self, row: Mapping[str, Any], position: int, *, require: bool) -> dict[str, Any]:
        from labelmill.formats.records import FormatError

        keys = tuple(str(k) for k in row)
        try:
            plan = self.plans.get(keys)
            if plan is None:
                plan = self.plans[keys] = self.columns.plan(keys, "items", position, require=require)
                self.keys_seen.update(keys)
            rec = plan.record([_plain(v) for v in row.values()], "items", position)
        except FormatError as exc:
            field = f"{exc.field}: " if exc.field else ""
            raise ValueError(f"item {position}: {field}{exc.reason}") from None
        line: dict[str, Any] = {"data": rec.data}
        if rec.external_id is not None:
            line["external_id"] = rec.external_id
        for key in ("meta", "gold"):
            if getattr(rec, key):
                line[key] = getattr(rec, key)
        if rec.annotations:
            line["annotations"] = rec.annotations
        return line

    def check_all_seen(self) -> None:
        for column, option in self.columns.named_columns():
            if column not in self.keys_seen:
                raise ValueError(f"no item has the column {column!r} (named by {option})")


def _plain(value: Any) -> Any:
    value = _clean_missing(value)
    if hasattr(value, "item") and type(value).__module__ == "numpy":
        return value.item()
    return value


def _iter_import_lines(items: Any, columns: ColumnMap | None = None) -> Iterator[dict[str, Any]]:
    """Import lines from a list of dicts, a pandas DataFrame or a Hugging Face dataset.

    Rows of a DataFrame or dataset follow the column convention (and ``columns``' options); so do
    flat dicts when options are given (without, the server applies the same convention to them).
    The optional libraries are looked up in ``sys.modules``: if pandas was never imported the
    object cannot be a DataFrame, so this never pays for importing them.
    """
    from labelmill.formats.columns import ColumnMap

    mapper = _RowMapper(columns or ColumnMap())
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(items, pd.DataFrame):
        names = [str(c) for c in items.columns]
        for start in range(0, len(items), 10_000):
            chunk = items.iloc[start : start + 10_000]
            for i, values in enumerate(chunk.itertuples(index=False, name=None), start):
                yield mapper.line(dict(zip(names, values, strict=True)), i, require=True)
        return
    hf = sys.modules.get("datasets")
    if hf is not None and isinstance(items, hf.Dataset | hf.IterableDataset):
        for i, row in enumerate(items):
            yield mapper.line(row, i, require=False)
        mapper.check_all_seen()
        return
    if isinstance(items, Mapping | str | bytes):
        raise TypeError("items must be an iterable of dicts, a pandas DataFrame or a datasets.Dataset")
    for i, line in enumerate(items):
        if not isinstance(line, Mapping):
            raise TypeError(f"item {i}: expected a dict, got {type(line).__name__}")
        flat = not isinstance(line.get("data"), Mapping)
        yield mapper.line(line, i, require=False) if flat and mapper.columns.explicit else dict(line)
    if mapper.columns.explicit:
        mapper.check_all_seen()


def _batches(lines: Iterable[bytes], max_items: int, max_bytes: int) -> Iterator[list[bytes]]:
    batch: list[bytes] = []
    size = 0
    for line in lines:
        if batch and (len(batch) >= max_items or size + len(line) > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 1
    if batch:
        yield batch


# -- the client ------------------------------------------------------------------------------------

ProjectRef = int | str | Project
TaskRef = int | Task


class Client:
    """A connection to one labelmill server as one user (the owner of ``token``).

    ``url`` is the server's base address (``http://host:8080``; a trailing ``/api/v1`` is
    accepted too). ``transport`` is handed to httpx, for tests or custom networking. A 503
    (the server's database stayed busy; nothing was done) is sent again up to ``busy_retries``
    times, after the Retry-After the server asks for. Use the
    client as a context manager, or call :meth:`close`, to release its connections.

    Wherever a method takes a ``project`` it accepts the id, the name, or a :class:`Project`;
    names are resolved through :meth:`projects` once and remembered for the client's life.
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
        busy_retries: int = 5,
    ) -> None:
        base = url.rstrip("/")
        if base.endswith(API_PREFIX):
            base = base[: -len(API_PREFIX)]
        self.url = base
        self._http = httpx.Client(
            base_url=base + API_PREFIX,
            headers={"Authorization": f"Token {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self._project_ids: dict[str, int] = {}
        self.busy_retries = busy_retries

    # -- plumbing ----------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        # A 503 means the server's database stayed locked and nothing was done: the request
        # is sent again after the Retry-After the server asked for (bodies that can be sent
        # again only: not open files or generators).
        replayable = "files" not in kwargs and isinstance(kwargs.get("content", b""), bytes | str)
        attempt = 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                raise LabelmillConnectionError(self.url + API_PREFIX + path, _reason(exc)) from exc
            if response.status_code != 503 or not replayable or attempt >= self.busy_retries:
                break
            attempt += 1
            time.sleep(retry_after(response, attempt))
        if response.status_code >= 400:
            raise _error_from(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self._request(method, path, **kwargs).json()

    def _stream_lines(self, path: str, params: Mapping[str, Any]) -> Iterator[bytes]:
        """Lines of a streamed response, read as they arrive (constant memory)."""
        try:
            with self._http.stream("GET", path, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                pending = b""
                for chunk in response.iter_bytes():
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    yield from (line for line in lines if line.strip())
                if pending.strip():
                    yield pending
        except httpx.TransportError as exc:
            raise LabelmillConnectionError(self.url + API_PREFIX + path, _reason(exc)) from exc

    def _project_id(self, project: ProjectRef) -> int:
        if isinstance(project, Project):
            return project.id
        if isinstance(project, bool) or not isinstance(project, int | str):
            raise TypeError(f"project must be an id, a name or a Project, not {type(project).__name__}")
        if isinstance(project, int):
            return project
        if project not in self._project_ids:
            for p in self.projects():
                self._project_ids[p.name] = p.id
        if project in self._project_ids:
            return self._project_ids[project]
        if project.isdigit():  # "12" from a command line: an id when no project has that name
            return int(project)
        raise NotFoundError(404, f"no project named {project!r} that you can see", "project", "not_found")

    # -- users -------------------------------------------------------------------------------------

    def me(self) -> User:
        """The user this client acts as (a cheap way to check the token)."""
        return _build(User, self._json("GET", "/me"))

    def set_user_role(self, user: int | str | User, role: Literal["admin", "creator", "member"]) -> User:
        """Change a user's global role (admin only): ``creator`` lets a member create projects."""
        if isinstance(user, User):
            uid = user.id
        elif isinstance(user, int):
            uid = user
        else:
            found = [u for u in self._json("GET", "/users")["results"] if u["name"] == user]
            if not found:
                raise NotFoundError(404, f"no user {user!r}", "user", "not_found")
            uid = int(found[0]["id"])
        return _build(User, self._json("PATCH", f"/users/{uid}", json={"role": role}))

    # -- projects ----------------------------------------------------------------------------------

    def projects(self) -> list[Project]:
        """Projects the caller is a member of (all of them for an admin's own projects)."""
        body = self._json("GET", "/projects")
        projects = [_project(p) for p in body["results"]]
        self._project_ids.update({p.name: p.id for p in projects})
        return projects

    def project(self, project: ProjectRef) -> Project:
        """One project with its schema, settings and (for managers) item count."""
        return _project(self._json("GET", f"/projects/{self._project_id(project)}"))

    def create_project(
        self,
        name: str,
        schema: Mapping[str, Any],
        *,
        settings: Mapping[str, Any] | None = None,
        instructions: str = "",
        description: str = "",
    ) -> Project:
        """Create a project; the caller becomes its manager. A taken name raises :class:`ConflictError`,
        an invalid schema or setting :class:`ValidationError`."""
        body = {
            "name": name,
            "schema": dict(schema),
            "settings": dict(settings or {}),
            "instructions": instructions,
            "description": description,
        }
        created = _project(self._json("POST", "/projects", content=_dumps(body, "project"), headers=_JSON))
        self._project_ids[created.name] = created.id
        return created

    def update_settings(self, project: ProjectRef, **settings: Any) -> Project:
        """Change quality settings (``overlap=3``, ``gold_rate=0.05``, ...); they merge into the
        current ones and unknown names are refused with :class:`ValidationError`."""
        pid = self._project_id(project)
        body = _dumps({"settings": settings}, "settings")
        return _project(self._json("PATCH", f"/projects/{pid}", content=body, headers=_JSON))

    def delete_project(self, project: ProjectRef) -> None:
        """Delete a project and everything in it."""
        pid = self._project_id(project)
        self._request("DELETE", f"/projects/{pid}")
        self._project_ids = {k: v for k, v in self._project_ids.items() if v != pid}

    # -- members -----------------------------------------------------------------------------------

    def members(self, project: ProjectRef) -> list[Member]:
        body = self._json("GET", f"/projects/{self._project_id(project)}/members")
        return [_build(Member, m) for m in body["results"]]

    def add_member(self, project: ProjectRef, user: int | str | User, role: Role) -> Member:
        """Add a user (id, name or :class:`User`) to a project, or change their role."""
        target = user.id if isinstance(user, User) else user
        body = {"user": target, "role": role}
        pid = self._project_id(project)
        return _build(Member, self._json("POST", f"/projects/{pid}/members", json=body))

    def pause_member(self, project: ProjectRef, user: int | str | User, reason: str | None = None) -> Member:
        """Pause an annotator (manager only). The decision sticks: automatic pausing never
        changes it, and only a manager's :meth:`resume_member` undoes it."""
        return self._patch_member(project, user, {"paused": True, "pause_reason": reason})

    def resume_member(self, project: ProjectRef, user: int | str | User) -> Member:
        """Resume a paused annotator (manager only). The decision sticks: spammer detection and
        falling gold accuracy no longer pause them until a manager pauses them again."""
        return self._patch_member(project, user, {"paused": False})

    def _patch_member(self, project: ProjectRef, user: int | str | User, body: dict[str, Any]) -> Member:
        pid = self._project_id(project)
        if isinstance(user, User):
            uid = user.id
        elif isinstance(user, int):
            uid = user
        else:
            found = [m for m in self.members(pid) if m.name == user]
            if not found:
                raise NotFoundError(404, f"{user!r} is not a member of project {pid}", field="user")
            uid = found[0].user_id
        return _build(Member, self._json("PATCH", f"/projects/{pid}/members/{uid}", json=body))

    # -- items -------------------------------------------------------------------------------------

    def import_items(
        self,
        project: ProjectRef,
        items: Iterable[Mapping[str, Any]] | pandas.DataFrame | Any,
        *,
        on_duplicate: OnDuplicate = "reject",
        wait: bool = True,
        gold_columns: Mapping[str, str] | None = None,
        annotation_columns: Mapping[str, str] | None = None,
        meta_columns: Mapping[str, str] | Iterable[str] | None = None,
        drop_columns: Iterable[str] | None = None,
        id_column: str | None = None,
    ) -> Job:
        """Import items, all or nothing, and return the import :class:`Job`.

        ``items`` is one of:

        - an iterable of dicts, each an import line (``{"data": {...}, "external_id"?,
          "predictions"?, "gold"?, "meta"?}``) or a flat dict taken whole as ``data`` (a flat
          ``external_id`` key is the id);
        - a pandas DataFrame: each row is ``data``, an ``external_id`` column the id, and
          missing values (NaN, NA, NaT) become null;
        - a Hugging Face ``datasets.Dataset`` or ``IterableDataset``, read row by row like a
          DataFrame (so a dataset bigger than memory streams).

        The items are written to one JSONL file (spooled to disk past 64 MiB) and uploaded as
        one import job, which the server stores all or nothing: on any bad item nothing is
        stored, and the error names the item by its position in ``items``. The upload must fit
        the server's upload limit (512 MiB by default). ``on_duplicate`` says what an existing
        external id does: ``reject`` (nothing stored), ``update`` or ``skip``. With ``wait``
        (the default) this returns the finished job (its ``result`` holds the counts and any
        ``warnings``); with ``wait=False`` it returns the queued job at once (poll :meth:`job`).

        Columns (of a DataFrame or dataset, or keys of flat dicts) follow the column convention
        of table imports (README "Import formats"): ``external_id`` (else ``id``), ``meta.KEY``,
        ``gold.CONTROL``, ``annotation.ANNOTATOR.CONTROL``; everything else is data, which
        annotators see. The options name other columns: ``gold_columns={"label": "label"}``
        (control -> column) makes the ``label`` column gold answers rather than data,
        ``annotation_columns={"crowd.label": "label"}`` one annotator's answers,
        ``meta_columns={"source": "src"}`` (or a list of column names) meta, ``drop_columns``
        leaves columns out and ``id_column`` names the external ids. An empty cell carries no label.

        Changed: this used to take ``batch_size`` and return one job per batch, and a failing
        batch left the batches before it stored; the whole upload is now one job.
        """
        from labelmill.formats.columns import parse_column_options

        columns = parse_column_options(
            gold=gold_columns,
            annotations=annotation_columns,
            meta=meta_columns
            if meta_columns is None or isinstance(meta_columns, Mapping)
            else list(meta_columns),
            drop=drop_columns,
            id_column=id_column,
        )
        pid = self._project_id(project)
        with tempfile.SpooledTemporaryFile(max_size=64 * 1024 * 1024) as upload:
            for i, line in enumerate(_iter_import_lines(items, columns)):  # streamed: never held whole
                upload.write(_dumps(line, f"item {i}") + b"\n")
            upload.seek(0)
            try:
                response = self._request(
                    "POST",
                    f"/projects/{pid}/imports",
                    files=[("files", ("items.jsonl", upload, "application/x-ndjson"))],
                    data={
                        "format": "jsonl",
                        "on_duplicate": on_duplicate,
                        "wait": "true" if wait else "false",
                    },
                )
            except LabelmillAPIError as exc:
                if exc.line is not None:
                    exc.message = f"item {exc.line - 1} (line {exc.line}): {exc.message}"
                    exc.args = (exc.message,)
                raise
        job = _build(Job, response.json())
        if wait and job.status not in _FINISHED:  # the server stopped waiting first
            job = self.wait_for_job(job)
            if job.status == "failed":
                raise LabelmillAPIError(422, job.error or "the import failed", "files", "job_failed")
        return job

    def job(self, job: int | Job) -> Job:
        """A job as it stands now (its status, progress and result)."""
        job_id = job.id if isinstance(job, Job) else job
        return _build(Job, self._json("GET", f"/jobs/{job_id}"))

    def wait_for_job(self, job: int | Job, *, timeout: float | None = None) -> Job:
        """Poll a job until it is done or failed (or ``timeout`` seconds pass) and return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.1
        current = self.job(job)
        while current.status not in _FINISHED:
            if deadline is not None and time.monotonic() >= deadline:
                break
            time.sleep(pause)
            pause = min(pause * 1.5, 2.0)
            current = self.job(current)
        return current

    def items(
        self,
        project: ProjectRef,
        *,
        is_gold: bool | None = None,
        has_consensus: bool | None = None,
        min_annotations: int | None = None,
        max_annotations: int | None = None,
        external_id: str | None = None,
        page_size: int = 1000,
    ) -> Iterator[Item]:
        """Every item matching the filters, oldest first, fetched a page at a time (lazily: stop
        iterating and no more pages are asked for). ``is_gold`` and gold answers are for managers."""
        pid = self._project_id(project)
        params: dict[str, Any] = {"limit": page_size}
        for key, value in (
            ("is_gold", is_gold),
            ("has_consensus", has_consensus),
            ("min_annotations", min_annotations),
            ("max_annotations", max_annotations),
            ("external_id", external_id),
        ):
            if value is not None:
                params[key] = ("true" if value else "false") if isinstance(value, bool) else value
        cursor: str | None = None
        while True:
            query = {**params, "cursor": cursor} if cursor else params
            page = self._json("GET", f"/projects/{pid}/items", params=query)
            for row in page["results"]:
                yield _build(Item, row)
            cursor = page.get("next_cursor")
            if not cursor or not page["results"]:
                return

    def add_predictions(
        self, project: ProjectRef, predictions: Iterable[Mapping[str, Any]], *, batch_size: int = 5000
    ) -> int:
        """Attach model predictions (pre-labels) to existing items and return how many were stored.

        Each prediction is ``{"external_id": str, "value": {...}, "score": float | None,
        "model_version": str}``, with ``value`` shaped as an annotation value. Batches are sent
        one request each (kept under the server's body limit); a batch is all or nothing.
        """
        pid = self._project_id(project)
        created = 0
        encoded = (_dumps(_prediction(p), f"prediction {i}") for i, p in enumerate(predictions))
        offset = 0
        for batch in _batches(encoded, batch_size, _MAX_JSON_BODY):
            body = b'{"predictions":[' + b",".join(batch) + b"]}"
            try:
                answer = self._json("POST", f"/projects/{pid}/predictions", content=body, headers=_JSON)
            except LabelmillAPIError as exc:
                _renumber(exc, "predictions", offset)
                raise
            created += int(answer.get("created", 0))
            offset += len(batch)
        return created

    # -- the annotator loop ------------------------------------------------------------------------

    def next_task(self, project: ProjectRef) -> Task | None:
        """Lease the caller's next task, or get their live lease back; None when nothing is left."""
        response = self._request("POST", f"/projects/{self._project_id(project)}/tasks/next")
        if response.status_code == 204:
            return None
        return _task(response.json()["task"])

    def submit(
        self, task: TaskRef, value: Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Annotation:
        """Submit a task's annotation value (keyed by control name). With an ``idempotency_key``,
        a retried submit (after a timeout, say) returns the first annotation instead of failing."""
        task_id = task.id if isinstance(task, Task) else task
        headers = dict(_JSON)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        body = _dumps({"value": dict(value)}, "value")
        return _build(
            Annotation, self._json("POST", f"/tasks/{task_id}/submit", content=body, headers=headers)
        )

    def skip(self, task: TaskRef) -> TaskState:
        """Give the task back; the item goes to someone else."""
        task_id = task.id if isinstance(task, Task) else task
        return _build(TaskState, self._json("POST", f"/tasks/{task_id}/skip"))

    # -- quality -----------------------------------------------------------------------------------

    def stats(self, project: ProjectRef) -> dict[str, Any]:
        """Progress, ETA, consensus quality and per-annotator statistics (as ``labelmill stats``)."""
        result: dict[str, Any] = self._json("GET", f"/projects/{self._project_id(project)}/stats")
        return result

    def refresh_consensus(self, project: ProjectRef) -> Job:
        """Recompute consensus, confidence and annotator skill now and wait for it (the server
        also does this by itself shortly after annotations arrive)."""
        return _build(Job, self._json("POST", f"/projects/{self._project_id(project)}/consensus/refresh"))

    # -- export ------------------------------------------------------------------------------------

    def export_rows(self, project: ProjectRef) -> Iterator[dict[str, Any]]:
        """The JSONL export, one parsed line (one item) at a time: ``{"external_id", "data",
        "annotations", "predictions", "consensus"}``. Streams, so any project size fits; the
        consensus is brought up to date first (see :meth:`export`)."""
        pid = self._project_id(project)
        for line in self._stream_lines(f"/projects/{pid}/export", {"format": "jsonl"}):
            row: dict[str, Any] = json.loads(line)
            yield row

    def consensus(self, project: ProjectRef) -> dict[str, ConsensusLabel]:
        """``external_id -> {"value", "confidence", "method", "auto"}`` for every item that has a
        consensus (items without one are left out). Read from the streamed export."""
        out: dict[str, ConsensusLabel] = {}
        for row in self.export_rows(project):
            consensus = row.get("consensus")
            if consensus:
                out[str(row["external_id"])] = ConsensusLabel(
                    value=consensus["value"],
                    confidence=consensus.get("confidence"),
                    method=consensus.get("method", ""),
                    auto=bool(consensus.get("auto", False)),
                )
        return out

    def export(
        self,
        project: ProjectRef,
        path: str | os.PathLike[str],
        *,
        format: str = "jsonl",
        **options: str | bool,
    ) -> Path:
        """Download the export to ``path``, streamed to disk, and return the path.

        ``format`` is any format the server knows (``GET /api/v1/export-formats``); formats that
        write a folder arrive as a zip. ``options`` are passed to the server as query parameters
        (``labels="annotations"``, ``include_predictions=True``, ``has_consensus=True``, ...).
        The file appears only once the download is complete, so a failed export never leaves a
        truncated file behind. The export holds every label stored before it began: the server
        first runs a consensus refresh that is still pending, and answers :class:`ConflictError`
        (409) if that refresh fails rather than export without it.
        """
        pid = self._project_id(project)
        target = Path(path)
        partial = target.with_name(target.name + ".part")
        route = f"/projects/{pid}/export"
        params: dict[str, str] = {"format": format}
        for key, value in options.items():
            params[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        try:
            with self._http.stream("GET", route, params=params) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                with partial.open("wb") as out:
                    for chunk in response.iter_bytes(1024 * 1024):
                        out.write(chunk)
            partial.replace(target)
        except httpx.TransportError as exc:
            raise LabelmillConnectionError(self.url + API_PREFIX + route, _reason(exc)) from exc
        finally:
            partial.unlink(missing_ok=True)
        return target

    def export_dataframe(self, project: ProjectRef) -> pandas.DataFrame:
        """The project as a table, one row per item: ``external_id``, the data fields, the
        consensus value of each control (a column named after the control; None where there is no
        consensus), then ``confidence``, ``method``, ``auto`` and ``annotations`` (how many).

        A data field whose name clashes with one of those columns is renamed ``data.<name>``.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("export_dataframe needs pandas: pip install 'labelmill[pandas]'") from None

        info = self.project(project)
        controls = info.controls
        label_columns = ["external_id", *controls, "confidence", "method", "auto", "annotations"]
        reserved = set(label_columns)
        records: list[dict[str, Any]] = []
        data_columns: dict[str, None] = {}  # insertion-ordered set
        for row in self.export_rows(info):
            record: dict[str, Any] = {"external_id": row.get("external_id")}
            for key, value in (row.get("data") or {}).items():
                column = f"data.{key}" if key in reserved else key
                data_columns[column] = None
                record[column] = value
            consensus = row.get("consensus") or {}
            value = consensus.get("value") or {}
            for control in controls:
                record[control] = value.get(control)
            record["confidence"] = consensus.get("confidence")
            record["method"] = consensus.get("method")
            record["auto"] = consensus.get("auto")
            record["annotations"] = len(row.get("annotations") or [])
            records.append(record)
        columns = ["external_id", *data_columns, *label_columns[1:]]
        return pd.DataFrame.from_records(records, columns=columns)


_JSON = {"Content-Type": "application/json"}
_FINISHED = ("done", "failed", "cancelled")


#: The longest wait between two tries of a 503, whatever Retry-After says.
MAX_RETRY_WAIT = 30.0


def retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait before trying a 503 again: the server's Retry-After (seconds, or an
    HTTP date), else a doubling backoff, at most :data:`MAX_RETRY_WAIT`."""
    header = response.headers.get("retry-after", "").strip()
    wait: float | None = None
    if header.isdigit():
        wait = float(header)
    elif header:
        try:
            when = email.utils.parsedate_to_datetime(header)
            wait = (when - _dt.datetime.now(_dt.UTC)).total_seconds()
        except (TypeError, ValueError):
            wait = None
    if wait is None:
        wait = 0.5 * 2 ** (attempt - 1)
    return min(max(wait, 0.0), MAX_RETRY_WAIT)


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({text})"
    return text


def _project(body: Mapping[str, Any]) -> Project:
    return _build(Project, body, schema=body.get("schema", body.get("label_schema", {})))


def _prediction(p: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(p)
    if "external_id" in out:  # ids from a table are often numbers; the API wants the string
        out["external_id"] = _external_id(out["external_id"])
        if isinstance(out["external_id"], int):
            out["external_id"] = str(out["external_id"])
    return out


def _renumber(exc: LabelmillAPIError, name: str, offset: int) -> None:
    """Make ``predictions[3]`` of a later batch read as the position in the caller's input."""
    if not offset:
        return

    def shift(text: str | None, anywhere: bool) -> str | None:
        if text is None:
            return None
        pattern = re.compile(rf"{name}\[(\d+)\]")
        return pattern.sub(lambda m: f"{name}[{int(m.group(1)) + offset}]", text, count=0 if anywhere else 1)

    exc.field = shift(exc.field, False)
    exc.message = shift(exc.message, True) or exc.message
    exc.args = (exc.message,)


def _task(body: Mapping[str, Any]) -> Task:
    return _build(
        Task,
        body,
        item=_build(TaskItem, body["item"]),
        predictions=[_build(Prediction, p) for p in body.get("predictions", [])],
    )
