"""API request metrics: every answer counted by route template, method and status, with
its duration, through the injected recorder."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from reconciler._core.metrics import Recorder

# Served by the daemon (reconciler.daemon.metrics); named in this layer for the OpenAPI
# document.
METRICS_PATH = "/metrics"


class RequestMetrics:
    def __init__(self, app: ASGIApp, recorder: Recorder) -> None:
        self.app = app
        self._recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            # The template (/v1/tasks/{name}), never the raw path: one series per route.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self._recorder.api_request(
                route, scope.get("method", ""), status, time.perf_counter() - started
            )
