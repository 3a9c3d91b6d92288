"""`GET /v1/openapi.json`: an OpenAPI 3.0 document of the routes this daemon serves.

One catalog (`OPERATIONS`) describes every operation the daemon can serve; the bodies'
schemas are in reconciler.api.schemas. The served document is that catalog cut to the
routes of the app answering the request, and secured the way that app is: the webhook
appears only when a source has a `webhook_secret`, and the bearer token (with the 401s it
brings) only when `api_token` is set, on every route but the open ones. A client or a
generator thus sees exactly what it can call. A route the catalog does not describe is
left out of the document; tests/api/test_api_openapi.py fails for it.

The document is behind the token like the rest of the API (as Kubernetes serves
/openapi/v2): it tells nothing secret, but nothing needs it unauthenticated either.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from reconciler import __version__
from reconciler.api.auth import CHALLENGE, OPEN_PATHS
from reconciler.api.context import ApiContext
from reconciler.api.errors import ORJSONResponse
from reconciler.api.inputs import MAX_BODY_BYTES, RUN_VALUES
from reconciler.api.metrics import METRICS_PATH
from reconciler.api.schemas import SCHEMAS, Schema, ref
from reconciler.api.webhooks import MAX_BODY as WEBHOOK_MAX_BODY
from reconciler.api.webhooks import WEBHOOK_PATH
from reconciler.registry.status import STATUSES
from reconciler.taskfiles.conditions import KINDS

OPENAPI_PATH = "/v1/openapi.json"
SCHEME = "bearerToken"
# HEAD is answered wherever GET is (without a body), as HTTP defines it: not listed.
METHODS = ("get", "post", "patch", "delete")

Operation = dict[str, Any]

# --- reusable responses and parameters -----------------------------------------------------


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _json(ref("ErrorResponse")), **extra}


UNAUTHORIZED = "Unauthorized"  # only in the document of a daemon with a token
RESPONSES: dict[str, dict[str, Any]] = {
    "BadRequest": _error(
        "The request is malformed (a parameter, the body or its Content-Type: the message "
        "names what and the fix), the task is invalid or its name is taken, or Terraform "
        "refused the task's module (run=inspect: the plan failed). With high "
        "availability, a follower answers every /v1/tasks request with 400 and the leader to "
        "ask instead (\"redirect requests to leader '<id>' at <address>\")."
    ),
    UNAUTHORIZED: _error(
        "No bearer token, or a wrong one.",
        headers={
            "WWW-Authenticate": {
                "description": CHALLENGE["WWW-Authenticate"],
                "schema": {"type": "string"},
            }
        },
    ),
    "NotFound": _error("No task has this name."),
    "Conflict": _error(
        "The task cannot be changed now: its source is read-only, its file is broken or "
        "changed during the request, or its run is in progress (PATCH)."
    ),
    "PayloadTooLarge": _error(f"The body is over {MAX_BODY_BYTES} bytes."),
    "InternalError": _error(
        "The daemon's own failure: Terraform failed or crashed (run=now: the failed apply's "
        "error), a workspace could not be written, or an unexpected error (its traceback "
        "is in the log under the request_id)."
    ),
    "Unavailable": _error(
        "The task's source is unavailable: its directory is gone or its git remote out of reach."
    ),
    "InsufficientStorage": _error(
        "The disk or quota is full: nothing was changed; retry once space is freed."
    ),
}
_CODES = {
    "400": "BadRequest",
    "404": "NotFound",
    "409": "Conflict",
    "413": "PayloadTooLarge",
    "500": "InternalError",
    "503": "Unavailable",
    "507": "InsufficientStorage",
}

PARAMETERS: dict[str, dict[str, Any]] = {
    "TaskName": {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "The task's name.",
        "schema": {"type": "string"},
        "example": "task_a",
    },
    "Run": {
        "name": "run",
        "in": "query",
        "required": False,
        "description": '"inspect": plan the change and report it, changing nothing; '
        '"now": make the change, then run the task at once instead of at its next trigger. '
        "Case-insensitive; at most once.",
        "schema": {"type": "string", "enum": list(RUN_VALUES)},
    },
    "Destroy": {
        "name": "destroy",
        "in": "query",
        "required": False,
        "description": '"true": run `terraform destroy` first, then delete the task, its '
        "workspace and its state; with run=inspect, answer the destroy plan and change "
        "nothing. A destroy that fails deletes nothing. Not in CTS.",
        "schema": {"type": "string", "enum": ["true", "false"]},
    },
    "Include": {
        "name": "include",
        "in": "query",
        "required": False,
        "description": '"events": add each task\'s last runs. At most once.',
        "schema": {"type": "string", "enum": ["events"]},
    },
    "Status": {
        "name": "status",
        "in": "query",
        "required": False,
        "description": "Only tasks with this status. Case-insensitive; at most once.",
        "schema": {"type": "string", "enum": list(STATUSES)},
    },
    "HubSignature": {
        "name": "X-Hub-Signature-256",
        "in": "header",
        "required": False,
        "description": "GitHub's signature: sha256=<hex HMAC-SHA256 of the body keyed "
        "with a source's webhook_secret>.",
        "schema": {"type": "string"},
    },
    "Signature": {
        "name": "X-Signature",
        "in": "header",
        "required": False,
        "description": "The same signature under a generic name (Flux's generic-hmac); "
        "read when X-Hub-Signature-256 is absent.",
        "schema": {"type": "string"},
    },
}


def _param(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/parameters/{name}"}


def _ok(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": _json(ref(schema))}


def _responses(success: dict[str, Any], *errors: str) -> dict[str, Any]:
    out = dict(success)
    for code in errors:
        out[code] = {"$ref": f"#/components/responses/{_CODES[code]}"}
    return out


def _body(schema: str, description: str, examples: dict[str, Any]) -> dict[str, Any]:
    content = {"schema": ref(schema), "examples": {k: {"value": v} for k, v in examples.items()}}
    return {"required": True, "description": description, "content": {"application/json": content}}


# One per condition kind, in the table's order.
CREATE_EXAMPLES: dict[str, Any] = {k.api_name: {"task": k.example} for k in KINDS}


# --- the operations ------------------------------------------------------------------------

# Path -> its operations by method, and the parameters they share.
OPERATIONS: dict[str, dict[str, Any]] = {
    "/v1/tasks": {
        "get": {
            "operationId": "getAllTasks",
            "tags": ["tasks"],
            "summary": "List every task",
            "responses": _responses({"200": _ok("Every task.", "TasksResponse")}),
        },
        "post": {
            "operationId": "createTask",
            "tags": ["tasks"],
            "summary": "Create a task",
            "description": "Validates the task and initialises its workspace, then writes "
            "<source path>/<name>.hcl (committed and pushed for a git source) with exactly "
            "the fields sent, and answers once the task is live. Nothing is written when "
            "any step fails. The body must be sent as application/json.",
            "parameters": [_param("Run")],
            "requestBody": _body("TaskRequest", "The task to create.", CREATE_EXAMPLES),
            "responses": _responses(
                {
                    "200": _ok(
                        "run=inspect: the plan; nothing was created.",
                        "TaskResponse",
                    ),
                    "201": _ok("Created (run=now: and applied once).", "TaskResponse"),
                },
                "400",
                "409",
                "413",
                "500",
                "503",
                "507",
            ),
        },
    },
    "/v1/tasks/{name}": {
        "parameters": [_param("TaskName")],
        "get": {
            "operationId": "getTaskByName",
            "tags": ["tasks"],
            "summary": "Get a task",
            "responses": _responses({"200": _ok("The task.", "TaskResponse")}, "404"),
        },
        "patch": {
            "operationId": "updateTask",
            "tags": ["tasks"],
            "summary": "Change a task",
            "description": "Changes the fields sent in the file that defines the task, "
            "only where their values change (comments and the other tasks stay). "
            "run=inspect plans the task as it would be against its current state and "
            "changes nothing; run=now writes, then applies.",
            "parameters": [_param("Run")],
            "requestBody": _body(
                "TaskUpdateRequest",
                "The fields to change.",
                {
                    "disable": {"enabled": False},
                    "enable": {"enabled": True},
                    "variables": {"variables": {"size": "3"}},
                },
            ),
            "responses": _responses(
                {"200": _ok("Done; with run=inspect, the plan.", "TaskUpdateResponse")},
                "400",
                "404",
                "409",
                "413",
                "500",
                "503",
                "507",
            ),
        },
        "delete": {
            "operationId": "deleteTaskByName",
            "tags": ["tasks"],
            "summary": "Delete a task",
            "description": "Removes the task's block from its file at once and answers "
            "202. A task whose run is in progress stays visible (with `deleting: true` in "
            "its status) until the run ends. Nothing the task's module created is "
            "destroyed, and its workspace and state stay.",
            "parameters": [_param("Destroy"), _param("Run")],
            "responses": _responses(
                {
                    "200": _ok(
                        "destroy=true: destroyed and deleted; with run=inspect, the destroy plan.",
                        "TaskDestroyResponse",
                    ),
                    "202": _ok(
                        "Deleted (or its deletion was already under way).", "TaskDeleteResponse"
                    ),
                },
                "400",
                "404",
                "409",
                "500",
                "503",
                "507",
            ),
        },
    },
    "/v1/status": {
        "get": {
            "operationId": "getOverallStatus",
            "tags": ["status"],
            "summary": "Count tasks by status; the state of each source",
            "responses": _responses({"200": _ok("The overall status.", "OverallStatus")}),
        }
    },
    "/v1/status/tasks": {
        "get": {
            "operationId": "getTaskStatuses",
            "tags": ["status"],
            "summary": "The status of every task",
            "parameters": [_param("Status"), _param("Include")],
            "responses": _responses(
                {"200": _ok("Task name -> status ({} when there are none).", "TaskStatuses")},
                "400",
            ),
        }
    },
    "/v1/status/tasks/{name}": {
        "parameters": [_param("TaskName")],
        "get": {
            "operationId": "getTaskStatus",
            "tags": ["status"],
            "summary": "The status of one task",
            "parameters": [_param("Status"), _param("Include")],
            "responses": _responses(
                {
                    "200": _ok(
                        "The task's status keyed by its name ({} when `status` filters it out).",
                        "TaskStatuses",
                    )
                },
                "400",
                "404",
            ),
        },
    },
    "/v1/status/cluster": {
        "get": {
            "operationId": "getClusterStatus",
            "tags": ["status"],
            "summary": "The members of the high-availability cluster",
            "description": "Every member answers, leader or follower (CTS Enterprise's route).",
            "responses": {
                "200": _ok("The cluster and its members.", "ClusterStatusResponse"),
                "405": _error("High availability is not configured (CTS OSS answers the same)."),
            },
        }
    },
    "/v1/health": {
        "get": {
            "operationId": "getHealth",
            "tags": ["health"],
            "summary": "Whether the daemon is healthy",
            "description": "Unhealthy while a source cannot be read, its prune guard holds "
            "tasks, commits wait to be pushed, or Consul has no leader. Never needs the token.",
            "responses": {
                "200": _ok("Healthy.", "HealthResponse"),
                "503": _error("Unhealthy: the message lists every problem."),
            },
        }
    },
    WEBHOOK_PATH: {
        "post": {
            "operationId": "receiveSourceWebhook",
            "tags": ["sources"],
            "summary": "Ask the sources to fetch now",
            "description": "Served when a source has a `webhook_secret`. The call must be "
            "signed with HMAC-SHA256 of the raw body; every source whose secret signed it "
            "fetches now (a burst of calls causes one fetch). The payload is never parsed. "
            "Never needs the bearer token: the signature is the credential.",
            "parameters": [_param("HubSignature"), _param("Signature")],
            "requestBody": {
                "required": False,
                "description": f"Any payload (a push event, say) of at most "
                f"{WEBHOOK_MAX_BODY} bytes.",
                "content": _json({}),
            },
            "responses": {
                "202": _ok("Fetches scheduled.", "WebhookResponse"),
                "400": {"$ref": "#/components/responses/BadRequest"},
                "401": _error("Unsigned, or signed with no source's secret."),
                "413": _error(f"The body is over {WEBHOOK_MAX_BODY} bytes."),
            },
        }
    },
    METRICS_PATH: {
        "get": {
            "operationId": "getMetrics",
            "tags": ["metrics"],
            "summary": "Prometheus metrics",
            "description": "Prometheus's text exposition format. Behind the token unless "
            "`metrics_token = false`.",
            "responses": {
                "200": {
                    "description": "The metrics.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    OPENAPI_PATH: {
        "get": {
            "operationId": "getOpenAPIDocument",
            "tags": ["meta"],
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "The OpenAPI document of the routes this daemon serves.",
                    "content": _json({"type": "object"}),
                }
            },
        }
    },
}

TAGS = [
    {"name": "tasks", "description": "The CTS Tasks API: every change is written to a file."},
    {"name": "status", "description": "Task and daemon status (CTS's, with more fields)."},
    {"name": "health", "description": "The health check."},
    {"name": "sources", "description": "The task sources."},
    {"name": "metrics", "description": "Prometheus metrics."},
    {"name": "meta", "description": "This document."},
]

DESCRIPTION = f"""\
The API of reconciler, a daemon that keeps Consul-Terraform-Sync (CTS) tasks from HCL files
(a directory or a git repository) and serves CTS's documented `/v1/tasks` API, writing every
change back into those files.

**Errors.** Every 4xx and 5xx answer of these routes is an `ErrorResponse` with a
`request_id`, also for paths that do not exist (404 "no such endpoint") and for a method a
path does not serve (405, with an `Allow` header; `OPTIONS` included). `HEAD` is answered
wherever `GET` is.

**HTTP limits.** Some answers come from the server before a request reaches these routes,
with an empty `text/plain` body: 431 for a request line and headers over 64 KiB, 408 for a
body that arrives too slowly, 503 when too many requests are in flight. A body over
{MAX_BODY_BYTES} bytes is a 413 `ErrorResponse`.

**Token.** With `api_token` set, every route but `/v1/health` and the webhook (and
`/metrics` with `metrics_token = false`) needs `Authorization: Bearer <token>`; this document
then says so for each operation.
"""


def _info() -> dict[str, Any]:
    return {
        "title": "reconciler API",
        "version": __version__,
        "description": DESCRIPTION,
        "license": {"name": "MPL-2.0", "url": "https://www.mozilla.org/en-US/MPL/2.0/"},
    }


# --- the document --------------------------------------------------------------------------


def served_operations(routes: Iterable[BaseRoute]) -> dict[str, set[str]]:
    """Path -> the methods (lower-case, HEAD left out) the routes serve."""
    out: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, Route):
            methods = {m.lower() for m in route.methods or ()} - {"head"}
            out.setdefault(route.path, set()).update(methods)
    return out


def _secured(operation: Operation) -> Operation:
    responses = {
        **operation["responses"],
        "401": {"$ref": f"#/components/responses/{UNAUTHORIZED}"},
    }
    return {**operation, "responses": dict(sorted(responses.items()))}


def openapi_document(
    routes: Iterable[BaseRoute], *, token: bool, open_paths: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """The document of the operations `routes` serve and the catalog describes; `token`:
    whether the API token is set; `open_paths`: served without it, besides OPEN_PATHS."""
    open_paths = OPEN_PATHS | open_paths
    paths: dict[str, Any] = {}
    for path, methods in served_operations(routes).items():
        catalog = OPERATIONS.get(path, {})
        item: dict[str, Any] = {k: v for k, v in catalog.items() if k not in METHODS}
        for method in METHODS:
            if method not in methods or method not in catalog:
                continue
            operation = catalog[method]
            if token:
                open_ = path in open_paths
                operation = {**operation, "security": []} if open_ else _secured(operation)
            item[method] = operation
        if any(m in item for m in METHODS):
            paths[path] = item
    responses = RESPONSES if token else {k: v for k, v in RESPONSES.items() if k != UNAUTHORIZED}
    components: dict[str, Any] = {
        "schemas": SCHEMAS,
        "responses": responses,
        "parameters": PARAMETERS,
    }
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": _info(),
        "servers": [{"url": "/"}],
        "tags": TAGS,
        "paths": paths,
        "components": components,
    }
    if token:
        components["securitySchemes"] = {
            SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "The daemon's api_token (api_token, api_token_file or "
                "api_token_env).",
            }
        }
        doc["security"] = [{SCHEME: []}]
    return doc


class OpenApiEndpoint:
    def __init__(self, context: ApiContext) -> None:
        self.ctx = context

    async def document(self, request: Request) -> Response:
        # Built per request (some 50 microseconds): the app's routes are complete only once
        # the daemon has added the webhook and /metrics, and a reload may set the token.
        doc = openapi_document(
            request.app.router.routes,
            token=bool(self.ctx.token()),
            open_paths=self.ctx.open_paths,
        )
        return ORJSONResponse(doc)
