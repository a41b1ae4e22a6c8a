"""Errors that use cases raise: each carries a message a person can act on and, where it
applies, the offending field. The API maps them to HTTP statuses, the CLI to one line."""

from __future__ import annotations


class LabelmillError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def __str__(self) -> str:
        return self.message


class Invalid(LabelmillError):
    status = 422
    code = "invalid"


class NotFound(LabelmillError):
    status = 404
    code = "not_found"


class Conflict(LabelmillError):
    status = 409
    code = "conflict"


class Unauthorized(LabelmillError):
    status = 401
    code = "unauthorized"


class Forbidden(LabelmillError):
    status = 403
    code = "forbidden"


class TooLarge(LabelmillError):
    status = 413
    code = "too_large"
