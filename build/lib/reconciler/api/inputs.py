"""Reading what a request carries: a size-capped body, its media type, JSON, and query
parameters that may appear at most once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from reconciler.api.errors import ApiError, bad_request

# A task is a few hundred bytes; a megabyte is generous and keeps a hostile client from
# making us buffer (and parse) arbitrary amounts.
MAX_BODY_BYTES = 1024 * 1024

RUN_VALUES = ("inspect", "now")


def _too_large() -> ApiError:
    return ApiError(413, f"request body is larger than the {MAX_BODY_BYTES} byte limit")


async def read_body(
    request: Request,
    limit: int = MAX_BODY_BYTES,
    too_large: Callable[[], ApiError] = _too_large,
) -> bytes:
    """The whole body, refusing (`too_large`, a 413) as soon as it is known to exceed
    `limit`: from Content-Length when given, else while the chunks of a chunked body
    arrive."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise bad_request(f"invalid Content-Length header {declared!r}")
        if int(declared) > limit:
            raise too_large()
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large()
            chunks.append(chunk)
    except ClientDisconnect:
        # The client went away, or the server closed a body that came too slowly: an
        # expected end, not a server error (nobody is left to read the answer anyway).
        raise bad_request("the connection closed before the request body was complete") from None
    return b"".join(chunks)


def require_json(request: Request) -> None:
    """The body must be declared as application/json (parameters such as charset are fine),
    as CTS's OpenAPI validation demands for POST /v1/tasks."""
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise bad_request(
            f'request body has an error: header Content-Type has unexpected value "{content_type}"'
            '; send "application/json"'
        )


def parse_json(body: bytes) -> Any:
    if not body.strip():
        raise bad_request("request body has an error: value is required but missing")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"error decoding the request: {exc}") from None


def single_query(request: Request, key: str) -> str | None:
    """The value of a query parameter that may be given at most once."""
    values = request.query_params.getlist(key)
    if not values:
        return None
    if len(values) > 1:
        raise bad_request(
            f"cannot support more than one {key} query parameter, got {key} values: "
            + ", ".join(values)
        )
    return values[0]


def run_option(request: Request) -> str | None:
    """`?run=inspect|now` (case-insensitive, as CTS), or None."""
    value = single_query(request, "run")
    if value is None:
        return None
    lowered = value.lower()
    if lowered not in RUN_VALUES:
        raise bad_request(
            "unsupported run parameter value. only supporting run values now and inspect "
            f"but got {value}"
        )
    return lowered
