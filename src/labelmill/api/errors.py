"""Every error answers JSON ``{"detail": message, "code": ..., "field": ...}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from labelmill.formats.records import FormatError
from labelmill.services.errors import LabelmillError


def _body(message: str, code: str, field: str | None, **extra: Any) -> dict[str, Any]:
    return {"detail": message, "code": code, "field": field, **extra}


def _loc(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LabelmillError)
    async def _domain(_: Request, exc: LabelmillError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Token"} if exc.status == 401 else None
        return JSONResponse(_body(exc.message, exc.code, exc.field), status_code=exc.status, headers=headers)

    @app.exception_handler(FormatError)
    async def _format(_: Request, exc: FormatError) -> JSONResponse:
        return JSONResponse(
            _body(str(exc), "invalid_input", exc.field or None, line=exc.line), status_code=422
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors: list[dict[str, Any]] = [dict(e) for e in exc.errors()]
        first: dict[str, Any] = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = _loc(first.get("loc", ()))
        if first.get("type") == "json_invalid":
            message = f"request body is not valid JSON: {first.get('ctx', {}).get('error', first['msg'])}"
        else:
            message = f"{field}: {first['msg']}"
        details = [{"field": _loc(e.get("loc", ())), "message": e["msg"]} for e in errors]
        return JSONResponse(_body(message, "invalid", field, errors=details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code
        headers = dict(getattr(exc, "headers", None) or {})
        message = str(exc.detail)
        if status == 400:
            # FastAPI's "error parsing the body" (e.g. a form where JSON is expected) is invalid input.
            status, message = 422, f"request body could not be parsed: {message}"
        if status == 405:
            # Starlette names only the first matching route's methods; a path served by
            # several routes (GET, PATCH, DELETE /projects/{id}) allows them all.
            headers["Allow"] = ", ".join(sorted(_allowed_methods(app, request.scope)))
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large", 422: "invalid"}.get(
            status, "error"
        )
        return JSONResponse(_body(message, code, None), status_code=status, headers=headers)


def _allowed_methods(app: FastAPI, scope: Any) -> set[str]:
    allowed: set[str] = set()
    for route in app.router.routes:
        match, _ = route.matches({**scope, "method": "GET"})
        if match != Match.NONE:
            allowed |= set(getattr(route, "methods", None) or ())
    return allowed
