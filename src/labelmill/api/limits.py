"""The guard in front of every route: authenticate, then cap the body, before reading it.

An anonymous 300 MiB upload used to be read and spooled to disk before the route's 401, and an
anonymous 15 MB JSON body raised the server's memory by 180 MB. This ASGI middleware runs
before anything reads the body:

1. A request that carries a body to ``/api/v1`` (any method but GET, HEAD, OPTIONS; login and
   logout excepted) without credentials answers 401 at once. On the routes that accept large
   bodies (imports, predictions) the token itself is checked here too, so a wrong token
   cannot send megabytes either; elsewhere the body is at most :data:`JSON_MAX_BYTES`, and the
   route checks the token (the annotator loop checks it inside its own statements).
2. The body is capped by route: imports ``max_upload_bytes`` (settings), predictions
   :data:`PREDICTIONS_MAX_BYTES`, anything else :data:`JSON_MAX_BYTES`. A Content-Length over
   the cap is a 413 before a byte is read; a chunked body is counted as it arrives.
3. A JSON body holding ``NaN``, ``Infinity`` or a number too large for a double (``1e309``)
   answers 422 naming the field: Python's JSON parser accepts them, and stored they made every
   later export of the project invalid JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelmill.services.errors import LabelmillError, Unauthorized

MIB = 1024 * 1024
#: Any JSON body but predictions.
JSON_MAX_BYTES = 1 * MIB
#: ``POST /projects/{id}/predictions`` (up to 100,000 predictions in one call).
PREDICTIONS_MAX_BYTES = 16 * MIB
API_PREFIX = "/api/v1"
#: Routes under the API that take a body from a caller not signed in yet.
PUBLIC_BODY_PATHS = frozenset({f"{API_PREFIX}/auth/login", f"{API_PREFIX}/auth/logout"})
NO_BODY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: State key under which the middleware leaves the user it authenticated (see deps.current_user).
USER_STATE_KEY = "labelmill_user"

# Cheap pre-checks (in C) before parsing a JSON body a second time to find a non-finite number:
# the literals Python's parser accepts, and numbers long enough to overflow a double.
_MAYBE_NONFINITE = re.compile(rb"NaN|Infinity|[eE][+]?\d{3}|\d{300}")


def nonfinite_field(body: bytes) -> str | None:
    """The path (``predictions.0.score``) of the first NaN or infinite number in a JSON body,
    or None when there is none (or the body is not JSON: the route says so)."""
    if not _MAYBE_NONFINITE.search(body):
        return None
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return _find_nonfinite(document, [])


def _find_nonfinite(value: Any, path: list[str]) -> str | None:
    stack: list[tuple[Any, list[str]]] = [(value, path)]
    while stack:
        node, where = stack.pop()
        if isinstance(node, float) and not math.isfinite(node):
            return ".".join(where) or "body"
        if isinstance(node, dict):
            stack.extend((v, [*where, str(k)]) for k, v in reversed(list(node.items())))
        elif isinstance(node, list):
            stack.extend((v, [*where, str(i)]) for i, v in reversed(list(enumerate(node))))
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp, *, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    def limit_for(self, path: str) -> int:
        if path.endswith("/imports"):
            return self.max_upload_bytes
        if path.endswith("/predictions"):
            return PREDICTIONS_MAX_BYTES
        return JSON_MAX_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in NO_BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit_for(path)
        if path.startswith(API_PREFIX + "/") and path not in PUBLIC_BODY_PATHS:
            refused = await self._authenticate(scope, check_token=limit > JSON_MAX_BYTES)
            if refused is not None:
                await _error(send, refused.status, refused.message, refused.code, refused.field)
                return
        length = _content_length(scope)
        if length is not None and length > limit:
            await _too_large(send, limit)
            return
        if _is_json(scope):
            await self._json(scope, receive, send, limit)
        else:
            await self._counted(scope, receive, send, limit)

    async def _authenticate(self, scope: Scope, *, check_token: bool) -> LabelmillError | None:
        if not check_token:
            # The common case (the annotator loop's small bodies): a well-formed Authorization
            # header is enough here, read straight from the scope; the route checks the token.
            for name, value in scope.get("headers") or ():
                if name == b"authorization":
                    scheme, _, secret = value.partition(b" ")
                    if scheme.lower() in (b"token", b"bearer") and secret.strip():
                        return None
                    break
        # (imported here: deps imports the services, which need not load with this module)
        from labelmill.api.deps import authenticate, credentials_of

        request = Request(scope)
        try:
            creds = credentials_of(request)  # the full rules: header, or cookie and CSRF header
            if check_token:
                user = await authenticate(scope["app"].state.db, creds)
                scope.setdefault("state", {})[USER_STATE_KEY] = (creds.secret, user)
        except LabelmillError as exc:
            return exc
        return None

    async def _json(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        """Read the whole (capped) body, refuse non-finite numbers, then hand it on: the route
        reads JSON bodies whole anyway."""
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await _too_large(send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        field = nonfinite_field(body)
        if field is not None:
            await _error(
                send,
                422,
                f"{field}: NaN and Infinity are not numbers JSON allows (nor values beyond "
                "±1.8e308); send a finite number or null",
                "invalid",
                field,
            )
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        state = {"seen": 0, "exceeded": False, "started": False}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["seen"] += len(message.get("body", b""))
                if state["seen"] > limit:
                    state["exceeded"] = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["exceeded"]:
                if not state["started"]:
                    state["started"] = True
                    await _too_large(send, limit)
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not state["started"]:
                state["started"] = True
                await _too_large(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _too_large(send: Send, limit: int) -> None:
    await _error(send, 413, f"request body is larger than the limit of {limit} bytes", "too_large", None)


async def _error(send: Send, status: int, message: str, code: str, field: str | None) -> None:
    body = json.dumps({"detail": message, "code": code, "field": field}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        # the body was not read: the connection cannot carry another request
        (b"connection", b"close"),
    ]
    if status == Unauthorized.status:
        headers.append((b"www-authenticate", b"Token"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(Exception):
    pass
