"""Every API failure as one JSON shape: `{"error": {"message": ...}, "request_id": ...}`.

CTS sends that shape from its generated endpoints but plain text (unknown routes) or a body
without `request_id` (legacy endpoints) elsewhere; a client of ours can rely on the one
shape for every 4xx and 5xx, Starlette's own 404/405 and unexpected exceptions included.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler._core.errors import (
    ConflictError,
    DuplicateTaskError,
    InvalidTaskError,
    NotFoundError,
    ReadOnlySourceError,
    ReconcilerError,
    SourceError,
    StorageFullError,
)
from reconciler._core.logcontext import enter_request, leave_request
from reconciler.commands.errors import (
    ForbiddenError,
    InspectFailedError,
    NotAllowedNowError,
    RunsUnavailableError,
)
from reconciler.runner.driver import ModuleError
from reconciler.runner.inputs import InputsError
from reconciler.runner.state import StateError

log = logging.getLogger(__name__)

_JSON_OPTIONS = orjson.OPT_APPEND_NEWLINE


class ORJSONResponse(Response):
    """A JSON response serialised with orjson (about 15x faster than the stdlib on big
    task lists, libs.md section 5). Bytes are sent as they are: pre-serialised bodies."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content, option=_JSON_OPTIONS)


class PartsResponse(Response):
    """A JSON body sent as several pre-serialised parts, so that a large cached part (the
    task list: megabytes at 10,000 tasks) goes out without being copied per request."""

    media_type = "application/json"

    def __init__(self, parts: list[bytes], status_code: int = 200) -> None:
        self.parts = parts
        super().__init__(b"", status_code)
        self.headers["content-length"] = str(sum(len(p) for p in parts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        last = len(self.parts) - 1
        for i, part in enumerate(self.parts):
            await send({"type": "http.response.body", "body": part, "more_body": i < last})


class ApiError(Exception):
    """An expected failure with the status and message the client should see."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


# The one mapping of the core's typed failures to status codes, most specific first.
# 4xx: the request or the state of the task (the client can act); 5xx: the daemon's own
# failure (a run that failed, the disk, Terraform crashing, a source out of reach).
_STATUS: tuple[tuple[type[ReconcilerError], int], ...] = (
    (InvalidTaskError, 400),
    (DuplicateTaskError, 400),  # CTS answers 400 for an existing name
    (ModuleError, 400),  # Terraform's diagnostics of the task's module
    (InspectFailedError, 400),  # CTS: a failed inspection of a new task is a 400
    (NotFoundError, 404),
    (ForbiddenError, 403),
    (ReadOnlySourceError, 409),
    (ConflictError, 409),
    (StateError, 409),  # the task's Terraform state is in two places: an operator decides
    (RunsUnavailableError, 501),
    (StorageFullError, 507),  # WebDAV's Insufficient Storage: retry once space is freed
    (NotAllowedNowError, 503),
    (SourceError, 503),
    (InputsError, 503),  # Consul does not answer: retry once it does
)


def status_for(exc: ReconcilerError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 500


def new_request_id() -> str:
    """A random (version 4) UUID string; formatted by hand, as uuid.UUID's validation costs
    a tenth of a small request's time."""
    h = bytearray(os.urandom(16))
    h[6] = (h[6] & 0x0F) | 0x40
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def request_id(request: Request) -> str:
    """The id of this request (set by RequestContext; created here when it did not run)."""
    # The scope's state dict directly: Request.state builds a State object per call.
    state = request.scope.setdefault("state", {})
    rid = state.get("request_id")
    if not isinstance(rid, str):
        rid = state["request_id"] = new_request_id()
    return rid


def error_body(message: str, rid: str) -> dict[str, Any]:
    return {"error": {"message": message}, "request_id": rid}


def error_response(
    request: Request, status: int, message: str, headers: Mapping[str, str] | None = None
) -> ORJSONResponse:
    return ORJSONResponse(error_body(message, request_id(request)), status, headers=headers)


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(request, exc.status, exc.message, exc.headers)


async def reconciler_error_handler(request: Request, exc: Exception) -> Response:
    """A typed failure of the core (a task command, write-back, a run) as its status."""
    assert isinstance(exc, ReconcilerError)
    return error_response(request, status_for(exc), exc.message)


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own HTTPExceptions (no route, wrong method) in our error shape."""
    assert isinstance(exc, HTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"no such endpoint: {request.url.path}"
    elif exc.status_code == 405:
        allowed = sorted(m.strip() for m in headers.get("Allow", "").split(",") if m.strip())
        headers["Allow"] = ", ".join(allowed)
        message = (
            f"'{request.method}' is an unsupported method for {request.url.path}; "
            f"supported: {', '.join(allowed)}"
        )
    else:
        message = exc.detail
    return error_response(request, exc.status_code, message, headers)


class RequestContext:
    """Outermost of our middleware: gives each request a fresh id, and turns an unexpected
    exception into a logged traceback and a generic 500 in the error shape.

    Catching here, inside Starlette's ServerErrorMiddleware, means the exception is not
    re-raised into the server, so it is logged once, by us, with the request id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = new_request_id()
        state = scope.get("state")
        scope["state"] = {**state, "request_id": rid} if state else {"request_id": rid}
        token = enter_request(rid)  # every log line of this request carries it
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception(
                "unexpected error handling %s %s (request_id %s)",
                scope.get("method"),
                scope.get("path"),
                rid,
            )
            if started:
                raise  # too late for an error body; let the server drop the connection
            body = error_body(
                f"internal error; the server log has the details under request_id {rid}", rid
            )
            await ORJSONResponse(body, 500)(scope, receive, send)
        finally:
            leave_request(token)
