"""How a job's failure is recorded and given back: a caller that waited for a job (an import
request) answers with the same error, file, line and field as if it had done the work itself."""

from __future__ import annotations

from typing import Any

from labelmill.formats.records import FormatError
from labelmill.services.errors import Conflict, Invalid, LabelmillError
from labelmill.store.models import Job


class JobFailed(LabelmillError):
    """A job failed for a reason that is not the caller's input (a bug, a lost database)."""

    status = 500
    code = "job_failed"


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, FormatError | LabelmillError | ValueError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def error_info(exc: BaseException) -> dict[str, Any]:
    """What :func:`raise_job_error` needs to rebuild the error: stored in the failed job's result."""
    if isinstance(exc, FormatError):
        return {
            "type": "format",
            "source": exc.source,
            "line": exc.line,
            "field": exc.field,
            "reason": exc.reason,
        }
    if isinstance(exc, LabelmillError):
        return {"type": "domain", "status": exc.status, "message": exc.message, "field": exc.field}
    if isinstance(exc, ValueError):  # a reader refusing a file as a whole (unknown format, ...)
        return {"type": "invalid", "message": one_line(exc)}
    return {"type": "internal", "message": one_line(exc)}


def raise_job_error(job: Job, *, field: str | None = None) -> None:
    """Raise the error a failed ``job`` recorded (nothing when it did not fail)."""
    if job.status != "failed":
        return
    info = (job.result or {}).get("error") or {}
    message = job.error or "the job failed"
    kind = info.get("type")
    if kind == "format":
        raise FormatError(info["source"], int(info["line"]), info.get("field") or "", info["reason"])
    if kind == "domain":
        status = int(info.get("status") or 400)
        cls = {409: Conflict, 422: Invalid}.get(status, JobFailed)
        raise cls(info.get("message") or message, field=info.get("field") or field)
    if kind == "invalid":
        raise Invalid(info.get("message") or message, field=field)
    raise JobFailed(f"job {job.id} ({job.kind}) failed: {message}", field=field)
