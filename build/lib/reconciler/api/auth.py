"""The API token: `Authorization: Bearer <token>` on every route but the health check
and the webhook (which carries its own HMAC signature).

A pure ASGI middleware inside RequestContext, so that a 401 has the request id and the
one error shape. The token is compared in constant time and never logged; a refused
request is logged with its path and the request id only.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from reconciler.api.errors import ORJSONResponse, error_body
from reconciler.api.webhooks import WEBHOOK_PATH

log = logging.getLogger("reconciler.api")

OPEN_PATHS = frozenset({"/v1/health", WEBHOOK_PATH})
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="reconciler"'}


def bearer(header: bytes) -> bytes | None:
    """The token of an `Authorization: Bearer <token>` header (the scheme is
    case-insensitive, RFC 7235), or None."""
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return None
    token = token.strip()
    return token or None


class TokenAuth:
    def __init__(
        self, app: ASGIApp, token: Callable[[], str], open_paths: frozenset[str] = frozenset()
    ) -> None:
        """`token`: the current token ("" = none), asked per request in the event loop.
        `open_paths`: more paths served without it (/metrics with metrics_token = false)."""
        self.app = app
        self._token = token
        self._open = OPEN_PATHS | open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = self._token()
        if not expected or scope["type"] != "http" or scope.get("path") in self._open:
            await self.app(scope, receive, send)
            return
        header = dict(scope.get("headers") or ()).get(b"authorization", b"")
        given = bearer(header) if header else None
        if given is not None and hmac.compare_digest(given, expected.encode()):
            await self.app(scope, receive, send)
            return
        rid = scope.get("state", {}).get("request_id", "")
        why = "no bearer token" if given is None else "a wrong token"
        log.warning(
            "refused %s %s: %s (request_id %s)", scope.get("method"), scope.get("path"), why, rid
        )
        message = (
            "this API requires a token: send Authorization: Bearer <token>"
            if given is None
            else "the token is not valid"
        )
        await ORJSONResponse(error_body(message, rid), 401, headers=CHALLENGE)(scope, receive, send)
