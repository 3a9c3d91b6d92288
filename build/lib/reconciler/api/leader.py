"""With high availability, a follower answers every `/v1/tasks` request with 400 and the
leader to ask instead (CTS's wording), before anything reads or changes a task.

A pure ASGI middleware inside RequestContext, like the token check, so that the 400 carries
the request id in the one error shape. The leader's own gate (the task commands and the
run queue ask it too) still refuses a write that races a lost election.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from reconciler.api.errors import ORJSONResponse, error_body

TASKS_PATH = "/v1/tasks"


class FollowerRedirect:
    def __init__(self, app: ASGIApp, redirect: Callable[[], str | None]) -> None:
        """`redirect`: None on the leader, else the message to answer with."""
        self.app = app
        self._redirect = redirect

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == TASKS_PATH or path.startswith(TASKS_PATH + "/")):
            message = self._redirect()
            if message is not None:
                rid = scope.get("state", {}).get("request_id", "")
                await ORJSONResponse(error_body(message, rid), 400)(scope, receive, send)
                return
        await self.app(scope, receive, send)
