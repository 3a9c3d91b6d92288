"""The HTTP API application: an explicit route list over an explicit context.

`create_app` does no I/O and starts nothing: the daemon builds the core (registry,
reconciler, source loops, write-back, run scheduler, task commands: reconciler.daemon.core)
in its own event loop, passes it in as an `ApiContext`, and serves the app with uvicorn's
Server running as a task in that loop (reconciler.daemon.runtime), so requests and the
source loops share one loop and lock. Handlers decode requests and call the task
commands; every typed failure is mapped to a status once (reconciler.api.errors).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Lifespan

from reconciler._core.errors import ReconcilerError
from reconciler.api.auth import TokenAuth
from reconciler.api.context import ApiContext, HealthCheck
from reconciler.api.errors import (
    ApiError,
    RequestContext,
    api_error_handler,
    http_exception_handler,
    reconciler_error_handler,
)
from reconciler.api.leader import FollowerRedirect
from reconciler.api.metrics import RequestMetrics
from reconciler.api.openapi import OPENAPI_PATH, OpenApiEndpoint
from reconciler.api.status import StatusEndpoints
from reconciler.api.tasks import TaskEndpoints

Endpoint = Callable[[Request], Awaitable[Response]]

__all__ = ["ApiContext", "HealthCheck", "create_app", "routes"]


def _by_method(handlers: dict[str, Endpoint]) -> Endpoint:
    """One route per path, so that a 405 lists every method the path supports."""

    async def endpoint(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return endpoint


def routes(context: ApiContext) -> list[Route]:
    tasks = TaskEndpoints(context)
    status = StatusEndpoints(context)
    openapi = OpenApiEndpoint(context)

    def route(path: str, handlers: dict[str, Endpoint]) -> Route:
        return Route(path, _by_method(handlers), methods=list(handlers))

    return [
        route("/v1/tasks", {"GET": tasks.list_tasks, "POST": tasks.create_task}),
        route(
            "/v1/tasks/{name}",
            {
                "GET": tasks.get_task,
                "PATCH": tasks.update_task,
                "DELETE": tasks.delete_task,
            },
        ),
        route("/v1/status", {"GET": status.overall}),
        route("/v1/status/tasks", {"GET": status.task_statuses}),
        route("/v1/status/tasks/{name}", {"GET": status.task_status}),
        route("/v1/status/cluster", {"GET": status.cluster}),
        route("/v1/health", {"GET": status.health}),
        route(OPENAPI_PATH, {"GET": openapi.document}),
    ]


def create_app(
    context: ApiContext,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    lifespan: Lifespan[Any] | None = None,
    debug: bool = False,
) -> Starlette:
    """The app, its routes fixed here: the API's, then `extra_routes` (what the daemon
    serves besides the API: the webhook, /metrics)."""
    app = Starlette(
        debug=debug,
        routes=[*routes(context), *extra_routes],
        middleware=[
            Middleware(RequestMetrics, recorder=context.recorder),
            Middleware(RequestContext),
            Middleware(TokenAuth, token=context.token, open_paths=context.open_paths),
            *(
                [Middleware(FollowerRedirect, redirect=context.redirect)]
                if context.redirect is not None
                else []
            ),
        ],
        exception_handlers={
            ApiError: api_error_handler,
            ReconcilerError: reconciler_error_handler,
            HTTPException: http_exception_handler,
        },
        lifespan=lifespan,
    )
    # `/v1/tasks/` is a 404 in our error shape, not a redirect that replays a POST.
    app.router.redirect_slashes = False
    app.state.context = context
    return app
