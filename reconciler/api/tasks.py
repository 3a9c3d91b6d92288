"""The documented /v1/tasks endpoints (tasks-api.md), as changes to task files.

Reads come from the registry. Writes go through WriteBack: the file is changed first and
the change reaches the registry through the same reconcile path as a hand edit ("one way
in"), so a 2xx means the file on disk and the registry agree.

Running (cts-spec 3.5): POST initialises the task's workspace before its file is written
(a module that does not init or validate is a 500 and nothing is written); `?run=now`
applies it first (a failed apply is a 500 and nothing is written); `?run=inspect` plans it
in a throwaway workspace and writes nothing. PATCH `?run=inspect` plans without changing
anything; `?run=now` writes, then applies.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response

from reconciler._core.errors import (
    ConflictError,
    NotFoundError,
    ReconcilerError,
    SourceError,
    StorageFullError,
)
from reconciler.api.decoding import decode_task_request, validation_message
from reconciler.api.errors import ApiError, ORJSONResponse, PartsResponse, bad_request, request_id
from reconciler.api.inputs import (
    parse_json,
    read_body,
    require_json,
    run_not_available,
    run_option,
)
from reconciler.api.representation import task_object
from reconciler.config.model import TaskSpec
from reconciler.reconcile.writeback import DuplicateTaskError, ReadOnlySourceError
from reconciler.registry.status import Event
from reconciler.registry.store import LiveTask
from reconciler.triggers.scheduler import Scheduler, TaskBusyError

if TYPE_CHECKING:
    from reconciler.api.app import ApiContext

# Go's strconv.ParseBool, which CTS's weakly typed PATCH decoding uses for strings.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False", ""})


def not_found(name: str) -> ApiError:
    return ApiError(
        404, f"a task with the name '{name}' does not exist or has not been initialized yet"
    )


def _map_write_error(exc: Exception) -> ApiError:
    """WriteBack's expected failures -> status codes."""
    if isinstance(exc, NotFoundError):
        return ApiError(404, exc.message)
    if isinstance(exc, DuplicateTaskError):
        return bad_request(exc.message)
    if isinstance(exc, (ConflictError, ReadOnlySourceError)):
        return ApiError(409, exc.message)
    if isinstance(exc, StorageFullError):
        return ApiError(507, exc.message)  # WebDAV's Insufficient Storage: retry later
    if isinstance(exc, SourceError):
        return ApiError(503, exc.message)  # the directory or remote is away: retry later
    if isinstance(exc, ReconcilerError):
        return ApiError(500, exc.message)
    # ValueError/KeyError from the file editor: the file changed under us (a hand edit
    # that broke it, or removed the task, not reconciled yet).
    return ApiError(
        409,
        f"the task's file changed during the request and cannot be "
        f"edited now: {exc}; retry once it loads again",
    )


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


def decode_patch(body: bytes) -> bool:
    """The PATCH body (cts-spec 3.5): a JSON object holding only `enabled`."""
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
    unsupported = sorted(k for k in data if k != "enabled")
    if unsupported:
        raise bad_request(
            "request body's JSON contains unsupported keys: " + ", ".join(unsupported)
        )
    if data.get("enabled") is None:
        raise bad_request(
            "/v1/tasks/:task_name currently only supports the 'enabled' field. "
            "Missing 'enabled' from the request body"
        )
    return weak_bool(data["enabled"])


class TaskEndpoints:
    def __init__(self, context: ApiContext) -> None:
        self.ctx = context
        self._list_version: tuple[int, int] = (-1, -1)
        self._list_json = b"[]"
        # name -> (the LiveTask it was built from, its serialised task object). A changed
        # task is a new LiveTask object, so the identity check is the invalidation.
        self._one_json: dict[str, tuple[LiveTask, bytes]] = {}

    def _task_json(self, live: LiveTask) -> dict[str, object]:
        return task_object(live.spec, self.ctx.defaults)

    def _runs(self, run: str) -> Scheduler:
        if self.ctx.runs is None:
            raise run_not_available(run)
        return self.ctx.runs

    def _tasks_json(self) -> bytes:
        """The serialised task list, rebuilt only when the registry (or the set of tasks
        whose deletion waits for their run) changed."""
        registry, runs = self.ctx.registry, self.ctx.runs
        version = (registry.version, runs.deletions_version if runs is not None else 0)
        if self._list_version != version:
            tasks = sorted(self.ctx.tasks(), key=lambda t: t.spec.name)
            self._list_json = orjson.dumps([self._task_json(t) for t in tasks])
            self._list_version = version
        return self._list_json

    async def list_tasks(self, request: Request) -> Response:
        rid = orjson.dumps(request_id(request))
        return PartsResponse([b'{"request_id":' + rid + b',"tasks":', self._tasks_json(), b"}\n"])

    async def get_task(self, request: Request) -> Response:
        name = request.path_params["name"]
        live = self.ctx.task(name)
        if live is None:
            raise not_found(name)
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
        # validate_task checks the name first (identifier, length): the name becomes a
        # file name, so nothing is written for a name that fails.
        problem = validation_message(spec)
        if problem is not None:
            raise bad_request(problem)
        runs = self._runs(run) if run is not None else self.ctx.runs
        rid = request_id(request)
        if spec.name in self.ctx.registry or (runs is not None and runs.known(spec.name)):
            raise bad_request(f"task with name {spec.name} already exists")
        if runs is None:
            live = await self._create(spec, rid)
            return ORJSONResponse({"request_id": rid, "task": self._task_json(live)}, 201)
        try:
            path = self.ctx.writeback.new_task_path(spec.name)
        except ReconcilerError as exc:
            raise _map_write_error(exc) from None
        base_dir = path.parent if path is not None else None
        if run == "inspect":
            try:
                plan = await runs.inspect_new(spec, base_dir)
            except ReconcilerError as exc:
                raise bad_request(exc.message) from None  # CTS: inspect errors are 400
            return ORJSONResponse(
                {
                    "request_id": rid,
                    "task": task_object(spec, self.ctx.defaults),
                    "run": {"plan": plan.text, "changes_present": plan.changes_present},
                },
                200,
            )
        event: Event | None = None
        try:
            if run == "now":
                event = await runs.create_run(spec, base_dir)
                if event is not None and not event.success:
                    raise ApiError(500, event.error or "the run failed")
            else:
                await runs.prepare(spec, base_dir)
            live = await self._create(spec, rid)
        except TaskBusyError:
            raise bad_request(f"task with name {spec.name} already exists") from None
        except ReconcilerError as exc:  # init/validate failed, or the workspace cannot be made
            raise ApiError(500, exc.message) from None
        finally:
            runs.release(spec.name)  # a no-op once the task exists
        if event is not None:
            runs.record(event)
        return ORJSONResponse({"request_id": rid, "task": self._task_json(live)}, 201)

    async def _create(self, spec: TaskSpec, rid: str) -> LiveTask:
        try:
            return await self.ctx.writeback.create(spec, request_id=rid)
        except ValueError as exc:
            # checked_render: the task would not read back from its file as sent.
            raise bad_request(
                f'task "{spec.name}" cannot be written as a task file: {exc}'
            ) from None
        except ReconcilerError as exc:
            raise _map_write_error(exc) from None

    async def update_task(self, request: Request) -> Response:
        name = request.path_params["name"]
        run = run_option(request)
        enabled = decode_patch(await read_body(request))
        if name not in self.ctx.registry:
            raise not_found(name)
        if run is None:
            await self._write(
                self.ctx.writeback.set_enabled(name, enabled, request_id=request_id(request))
            )
            return ORJSONResponse({})
        runs = self._runs(run)
        try:
            if run == "inspect":
                # Plans the task as it would be; nothing is written (CTS issue 465).
                plan = await runs.inspect(name, enabled=enabled)
                return ORJSONResponse(
                    {"inspect": {"changes_present": plan.changes_present, "plan": plan.text}}
                )
            if runs.busy(name):
                raise TaskBusyError(f"task '{name}' is active and cannot be updated at this time")
            await self._write(
                self.ctx.writeback.set_enabled(name, enabled, request_id=request_id(request))
            )
            event = await runs.run_now(name)
        except TaskBusyError as exc:
            raise ApiError(409, exc.message) from None
        except NotFoundError:
            raise not_found(name) from None
        except ReconcilerError as exc:
            raise ApiError(500, exc.message) from None
        if event is not None and not event.success:
            raise ApiError(500, event.error or "the run failed")
        return ORJSONResponse({})

    async def delete_task(self, request: Request) -> Response:
        """202 at once. A task whose run is in progress leaves its file now and the
        registry when the run ends; until then GET still shows it. Nothing its module
        created is destroyed."""
        name = request.path_params["name"]
        if name not in self.ctx.registry:
            if self.ctx.runs is not None and self.ctx.runs.deleting(name) is not None:
                return ORJSONResponse({"request_id": request_id(request)}, 202)
            raise not_found(name)
        await self._write(self.ctx.writeback.delete(name, request_id=request_id(request)))
        return ORJSONResponse({"request_id": request_id(request)}, 202)

    @staticmethod
    async def _write(change: Awaitable[object]) -> None:
        try:
            await change
        except (ReconcilerError, ValueError, KeyError) as exc:
            raise _map_write_error(exc) from None
