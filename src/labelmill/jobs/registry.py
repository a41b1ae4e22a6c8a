"""The one registry of job kinds: what each kind runs, how often a lost run is tried again, and
whether two may run for one project at once. Executors, the reaper and the routes all read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from labelmill.store.engine import Database
from labelmill.store.models import Job

#: A job kind's body: runs the job (its row, as claimed) and returns its ``result``.
Handler = Callable[[Database, Job], dict[str, Any]]

#: Claims a job may get before a worker that stops answering leaves it failed, not queued.
DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class JobKind:
    name: str
    handler: Handler
    #: Claims before a reaped job fails instead of being queued again.
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    #: At most one job of this kind runs per project (a consensus refresh reads and rewrites
    #: the whole project's consensus; two at once would only race).
    exclusive: bool = False
    #: Called with the job's params once it can never run again (done, failed, or abandoned by
    #: the reaper), to remove what it left behind (an import's uploaded files).
    cleanup: Callable[[dict[str, Any] | None], None] | None = None
    #: A polling worker leaves a queued job of this kind for a project resting for ``rest``
    #: times as long as the kind's last run there took (0: never). A refresh that refits the
    #: whole project then takes at most 1/(1 + rest) of a worker while labels keep arriving,
    #: and the requests serving annotators keep the rest of the machine. Jobs asked for by id
    #: (an export's refresh, a manager's "refresh now") never wait.
    rest: float = 0.0


_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    if kind.name in _KINDS and _KINDS[kind.name] != kind:
        raise ValueError(f"job kind {kind.name!r} is registered twice")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> dict[str, JobKind]:
    """Every registered kind (the built-in ones are registered on first use)."""
    _load_builtin()
    return dict(_KINDS)


def get_kind(name: str) -> JobKind:
    _load_builtin()
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(f"no job kind {name!r} (known: {', '.join(sorted(_KINDS))})") from None


def max_attempts(name: str) -> int:
    _load_builtin()
    kind = _KINDS.get(name)
    return kind.max_attempts if kind else DEFAULT_MAX_ATTEMPTS


def exclusive_kinds() -> frozenset[str]:
    _load_builtin()
    return frozenset(name for name, kind in _KINDS.items() if kind.exclusive)


def rest_ratios() -> dict[str, float]:
    """The kinds a polling worker paces (see :attr:`JobKind.rest`), with their ratios."""
    _load_builtin()
    return {name: kind.rest for name, kind in _KINDS.items() if kind.rest > 0}


def _load_builtin() -> None:
    # The handlers import the services that do the work; importing them here, lazily, keeps
    # this module (read by the API at import time) light and free of import cycles.
    import labelmill.jobs.handlers  # noqa: F401
