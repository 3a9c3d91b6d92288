"""The documented /v1/tasks endpoints (tasks-api.md): decode, call the task commands, answer.

Reads come from the registry (through the task commands' views). Writes are task commands
(reconciler.commands), which sequence validation, Terraform and write-back; a 2xx means
the file on disk and the registry agree. Failures are typed and mapped to status codes in
one place (reconciler.api.errors).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from reconciler.api.context import ApiContext
from reconciler.api.decoding import UPDATE_FIELDS, decode_task_changes, decode_task_request
from reconciler.api.errors import ORJSONResponse, PartsResponse, bad_request, request_id
from reconciler.api.inputs import parse_json, read_body, require_json, run_option, single_query
from reconciler.api.representation import task_object
from reconciler.commands.errors import TaskNotFoundError
from reconciler.registry.store import LiveTask

# Go's strconv.ParseBool, which CTS's weakly typed PATCH decoding uses for strings.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False", ""})


def weak_bool(value: object) -> bool:
    """`enabled` decoded the way CTS's mapstructure (WeaklyTypedInput) does."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    if isinstance(value, str):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise bad_request(f"cannot parse 'enabled' as bool: invalid syntax: {value!r}")
    kind = "array" if isinstance(value, list) else "object"
    raise bad_request(f"'enabled' expected type 'bool', got unconvertible type '{kind}'")


def decode_patch(body: bytes, name: str) -> bool | dict[str, Any]:
    """The PATCH body: a JSON object holding `enabled` alone (cts-spec 3.5, decoded as
    CTS does), or any of the task's fields (`UPDATE_FIELDS`), decoded as a create's
    are: {TaskSpec field: new value}."""
    if not body.strip():
        raise bad_request("error decoding the request: unexpected end of JSON input")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"error decoding the request: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise bad_request(
            'error decoding the request: the body must be a JSON object such as {"enabled": false}'
        )
    unsupported = sorted(k for k in data if k not in UPDATE_FIELDS)
    if unsupported:
        raise bad_request(
            "request body's JSON contains unsupported keys: " + ", ".join(unsupported)
        )
    enabled = None if data.get("enabled") is None else weak_bool(data["enabled"])
    if any(k != "enabled" for k in data):
        return decode_task_changes(data, name, enabled)
    if enabled is None:
        raise bad_request(
            "the request body holds no field to change: send 'enabled' or any of "
            + ", ".join(sorted(UPDATE_FIELDS))
            + " (Missing 'enabled' from the request body)"
        )
    return enabled


class TaskEndpoints:
    def __init__(self, context: ApiContext) -> None:
        self.ctx = context
        self.commands = context.commands
        self._list_version: tuple[int, int] = (-1, -1)
        self._list_json = b"[]"
        # name -> (the LiveTask it was built from, its serialised task object). A changed
        # task is a new LiveTask object, so the identity check is the invalidation.
        self._one_json: dict[str, tuple[LiveTask, bytes]] = {}
        self._defaults = context.defaults()  # what the cached objects were built with

    def _task_json(self, live: LiveTask) -> dict[str, object]:
        return task_object(live.spec, self._defaults)

    def _check_defaults(self) -> None:
        """What tasks inherit changed (a reload): every cached object is stale."""
        defaults = self.ctx.defaults()
        if defaults != self._defaults:
            self._defaults = defaults
            self._list_version = (-1, -1)
            self._one_json.clear()

    def _tasks_json(self) -> bytes:
        """The serialised task list, rebuilt only when the registry (or the set of tasks
        whose deletion waits for their run) changed."""
        self._check_defaults()
        registry, runs = self.ctx.registry, self.ctx.runs
        version = (registry.version, runs.deletions_version if runs is not None else 0)
        if self._list_version != version:
            tasks = sorted(self.commands.tasks(), key=lambda t: t.spec.name)
            self._list_json = orjson.dumps([self._task_json(t) for t in tasks])
            self._list_version = version
        return self._list_json

    async def list_tasks(self, request: Request) -> Response:
        rid = orjson.dumps(request_id(request))
        return PartsResponse([b'{"request_id":' + rid + b',"tasks":', self._tasks_json(), b"}\n"])

    async def get_task(self, request: Request) -> Response:
        name = request.path_params["name"]
        live = self.commands.task(name)
        if live is None:
            raise TaskNotFoundError(name)
        self._check_defaults()
        cached = self._one_json.get(name)
        if cached is None or cached[0] is not live:
            if len(self._one_json) > 2 * max(len(self.ctx.registry), 64):
                self._one_json.clear()  # forget deleted tasks now and then
            cached = self._one_json[name] = (live, orjson.dumps(self._task_json(live)))
        rid = orjson.dumps(request_id(request))
        return ORJSONResponse(b'{"request_id":' + rid + b',"task":' + cached[1] + b"}\n")

    async def create_task(self, request: Request) -> Response:
        run = run_option(request)
        require_json(request)
        spec = decode_task_request(parse_json(await read_body(request)))
        rid = request_id(request)
        result = await self.commands.create(spec, run=run, request_id=rid)
        if result.plan is not None:
            return ORJSONResponse(
                {
                    "request_id": rid,
                    "task": task_object(spec, self.ctx.defaults()),
                    "run": {
                        "plan": result.plan.text,
                        "changes_present": result.plan.changes_present,
                    },
                },
                200,
            )
        assert result.live is not None
        return ORJSONResponse({"request_id": rid, "task": self._task_json(result.live)}, 201)

    async def update_task(self, request: Request) -> Response:
        name = request.path_params["name"]
        run = run_option(request)
        patch = decode_patch(await read_body(request), name)
        if isinstance(patch, bool):
            plan = await self.commands.set_enabled(
                name, patch, run=run, request_id=request_id(request)
            )
        else:
            plan = await self.commands.update(name, patch, run=run, request_id=request_id(request))
        if plan is not None:
            return ORJSONResponse(
                {"inspect": {"changes_present": plan.changes_present, "plan": plan.text}}
            )
        return ORJSONResponse({})

    async def delete_task(self, request: Request) -> Response:
        """202 at once. A task whose run is in progress leaves its file now and the
        registry when the run ends; until then GET still shows it. Nothing its module
        created is destroyed."""
        rid = request_id(request)
        name = request.path_params["name"]
        destroy = single_query(request, "destroy")
        if destroy is not None and destroy.lower() not in ("true", "false"):
            raise bad_request(f"destroy must be true or false, not {destroy!r}")
        if destroy is not None and destroy.lower() == "true":
            # Not in CTS: destroy what the task built first; a failure deletes nothing.
            plan = await self.commands.destroy(name, run=run_option(request), request_id=rid)
            if plan is not None:
                return ORJSONResponse(
                    {"inspect": {"changes_present": plan.changes_present, "plan": plan.text}}
                )
            return ORJSONResponse({"request_id": rid}, 200)
        await self.commands.delete(name, request_id=rid)
        return ORJSONResponse({"request_id": rid}, 202)
