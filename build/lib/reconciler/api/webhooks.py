"""`POST /v1/source/webhook`: a signed call that schedules an immediate fetch.

Accepted signatures, both HMAC-SHA256 of the raw body with a source's `webhook_secret`:
GitHub's `X-Hub-Signature-256: sha256=<hex>` and the generic `X-Signature: sha256=<hex>`
(Flux's generic-hmac receiver). Unsigned or wrongly signed calls get 401, bodies over
1 MiB 413 (the body is read with that cap, never whole). The payload is never parsed
or trusted: whatever it says, the call only asks the sources whose secret signed it to
fetch now. A burst of calls causes one fetch, because SourceLoop coalesces hints.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler._core.metrics import NULL, Recorder
from reconciler.api.errors import ApiError, ORJSONResponse, request_id
from reconciler.api.inputs import read_body

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/v1/source/webhook"
MAX_BODY = 1024 * 1024
SIGNATURE_HEADERS = ("x-hub-signature-256", "x-signature")
_PREFIX = "sha256="

# Called when a correctly signed webhook arrives; schedules a fetch (e.g. loop.hint(None)).
Trigger = Callable[[], object]


def _signature(request: Request) -> bytes:
    """The hex digest the caller claims; 401 when there is none in a known form."""
    for header in SIGNATURE_HEADERS:
        value = request.headers.get(header)
        if value is None:
            continue
        value = value.strip()
        if not value.lower().startswith(_PREFIX):
            raise ApiError(401, f"the {header} header must have the form sha256=<hex digest>")
        return value[len(_PREFIX) :].strip().lower().encode("utf-8", "surrogateescape")
    raise ApiError(
        401,
        "the webhook is not signed: send X-Hub-Signature-256 or X-Signature with "
        "sha256=<hex HMAC-SHA256 of the body keyed with the source's webhook_secret>",
    )


def _too_large() -> ApiError:
    return ApiError(413, f"the webhook body is larger than {MAX_BODY} bytes")


def webhook_routes(
    triggers: Mapping[str, Trigger] | Callable[[], Mapping[str, Trigger]],
    *,
    path: str = WEBHOOK_PATH,
    max_body: int = MAX_BODY,
    recorder: Recorder = NULL,
) -> list[Route]:
    """Routes for the webhook; `triggers` maps each webhook secret to what it schedules.
    A call runs every trigger whose secret signed it. No secrets: no routes. A callable
    is asked on every call (the sources may change at a reload): the route is always
    there, and answers 404 while no source has a secret."""
    if callable(triggers):
        current = triggers
    elif any(triggers):
        fixed = dict(triggers)
        current = lambda: fixed  # noqa: E731
    else:
        return []

    def keys() -> list[tuple[bytes, Trigger]]:
        found = [(secret.encode(), trigger) for secret, trigger in current().items() if secret]
        if not found:
            raise ApiError(404, "no task source has a webhook_secret")
        return found

    async def webhook(request: Request) -> Response:
        try:
            matched = await signed_by(request)
        except ApiError:
            recorder.webhook(False)
            raise
        recorder.webhook(True)
        for trigger in matched:
            trigger()
        log.debug("webhook: fetch scheduled for %d source(s)", len(matched))
        return ORJSONResponse({"scheduled": len(matched), "request_id": request_id(request)}, 202)

    async def signed_by(request: Request) -> list[Trigger]:
        secrets = keys()
        claimed = _signature(request)
        body = await read_body(request, max_body, _too_large)
        matched = [
            trigger
            for key, trigger in secrets
            if hmac.compare_digest(
                hmac.new(key, body, hashlib.sha256).hexdigest().encode(), claimed
            )
        ]
        if not matched:
            raise ApiError(401, "the webhook signature does not match the body")
        return matched

    return [Route(path, webhook, methods=["POST"])]
