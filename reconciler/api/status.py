"""/v1/status, /v1/status/tasks[/{name}] and /v1/health (cts-spec 3.2 and 5).

A task's status comes from its last 5 run events (reconciler.registry.status). Beyond CTS,
each task status says where the task comes from (`source`: file, line, revision), what is
wrong with that file now (`file_errors`: a task whose file is broken keeps running its last
good definition, and this is where that shows), whether a run is in progress (`active`),
whether it is deleted and waits for that run to end (`deleting`), why its workspace
failed to initialise or its trigger cannot fire (`init_error`), and the revision its files
want next to the revisions its runs last attempted and applied (`desired_revision`,
`last_attempted_revision`, `last_applied_revision`), and for a task of the configuration
files changed through the API, how it differs from its file (`override`); /v1/status adds
each source's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from reconciler.api.context import ApiContext
from reconciler.api.errors import ApiError, ORJSONResponse, bad_request, request_id
from reconciler.api.inputs import single_query
from reconciler.reconcile.engine import Reconciler, SourceStatus
from reconciler.registry.status import STATUSES, status_of
from reconciler.registry.store import LiveTask


def source_problems(reconciler: Reconciler) -> list[str]:
    """What makes the daemon unhealthy: a source that cannot be read, or a source whose
    prune guard is holding tasks the files no longer define."""
    problems: list[str] = []
    for name, status in sorted(reconciler.sources.items()):
        if status.error is not None:
            problems.append(f"source {name!r} is unavailable: {status.error}{_retry(status)}")
        if status.guard is not None:
            problems.append(f"source {name!r}: {status.guard}")
        if status.problems is not None:
            problems.extend(f"source {name!r}: {p}" for p in status.problems())
    return problems


def _utc(unix: float | None) -> str | None:
    if unix is None:
        return None
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _retry(status: SourceStatus) -> str:
    if status.next_retry is None:
        return ""
    return (
        f" ({status.failures} failed attempt{'s' if status.failures != 1 else ''}; "
        f"next attempt at {_utc(status.next_retry)})"
    )


def _include_events(request: Request) -> bool:
    value = single_query(request, "include")
    if value is None:
        return False
    if value != "events":
        raise bad_request(
            "unsupported ?include parameter value. only supporting "
            f"'include=events' but got 'include={value}'"
        )
    return True


def _status_filter(request: Request) -> str | None:
    value = single_query(request, "status")
    if value is None:
        return None
    lowered = value.lower()
    if lowered not in STATUSES:
        raise bad_request(
            "unsupported status parameter value. only supporting status "
            f"values successful, errored, critical, and unknown but got {value}"
        )
    return lowered


class StatusEndpoints:
    def __init__(self, context: ApiContext) -> None:
        self.ctx = context

    def _task_status(
        self, live: LiveTask, problems: dict[str, list[str]], include_events: bool
    ) -> dict[str, Any]:
        spec, where = live.spec, live.provenance
        events = self.ctx.status.events(spec.name)
        if events:
            # As CTS: the union over what the events ran with.
            providers = sorted({p for e in events for p in e.config.providers})
            services = sorted({s for e in events for s in e.config.services})
        else:
            providers, services = list(spec.providers or ()), list(spec.services or ())
        runs = self.ctx.runs
        state = runs.state(spec.name) if runs is not None else None
        out: dict[str, Any] = {
            "task_name": spec.name,
            "status": status_of(events),
            "enabled": spec.is_enabled,
            "events_url": f"/v1/status/tasks/{spec.name}?include=events" if events else "",
            "providers": providers,
            "services": services,
            "source": {"file": where.file, "line": where.line, "revision": where.revision},
            "file_errors": list(problems.get(where.file, ())),
            "active": state.active if state else False,
            "deleting": state.deleting if state else False,
            "init_error": state.init_error if state else None,
            # Flux's pair: what the files want now, what the newest run tried and what
            # the newest successful run applied (file digest or commit sha).
            "desired_revision": where.revision,
            "last_attempted_revision": self.ctx.status.last_attempted_revision(spec.name),
            "last_applied_revision": self.ctx.status.last_applied_revision(spec.name),
            # What would make it run: its queries, buffer deadline or next cron time.
            "waiting_on": runs.waiting_on(spec.name) if runs is not None else {},
            # A configuration task changed through the API: how it differs from its file.
            "override": self.ctx.commands.override(spec.name),
        }
        if include_events:
            out["events"] = [e.to_json() for e in events]
        return out

    def _statuses(self, request: Request, tasks: Sequence[LiveTask]) -> Response:
        wanted = _status_filter(request)
        events = _include_events(request)
        problems = self.ctx.reconciler.problems()
        out = {}
        for live in sorted(tasks, key=lambda t: t.spec.name):
            status = self._task_status(live, problems, events)
            if wanted is None or status["status"] == wanted:
                out[live.spec.name] = status
        return ORJSONResponse(out)

    async def task_statuses(self, request: Request) -> Response:
        return self._statuses(request, self.ctx.tasks())

    async def task_status(self, request: Request) -> Response:
        name = request.path_params["name"]
        live = self.ctx.task(name)
        if live is None:
            # Parameters are checked first, as in CTS.
            _status_filter(request)
            _include_events(request)
            raise ApiError(
                404, f"a task with the name '{name}' does not exist or has not been initialized yet"
            )
        return self._statuses(request, [live])

    async def overall(self, request: Request) -> Response:
        counts = dict.fromkeys(STATUSES, 0)
        enabled = {"true": 0, "false": 0}
        for live in self.ctx.tasks():
            counts[self.ctx.status.status(live.spec.name)] += 1
            enabled["true" if live.spec.is_enabled else "false"] += 1
        runs = self.ctx.runs
        body: dict[str, Any] = {
            "task_summary": {"status": counts, "enabled": enabled},
            "sources": self._sources(),
        }
        if runs is not None:
            body["runs"] = runs.progress()
        return ORJSONResponse(body)

    def _sources(self) -> dict[str, Any]:
        reconciler = self.ctx.reconciler
        files: dict[str, dict[str, Any]] = {}
        for (source, _), entry in sorted(reconciler.files.items()):
            # Files whose newest revision is not the one applied (broken, or in conflict).
            if entry.errors:
                files.setdefault(source, {})[entry.display] = {
                    "errors": list(entry.errors),
                    "last_attempted_revision": entry.attempted_revision,
                    "last_applied_revision": entry.good_revision,
                }
        out: dict[str, Any] = {}
        for name, status in sorted(reconciler.sources.items()):
            out[name] = {
                "error": status.error,
                "failed_attempts": status.failures,
                "next_attempt_at": _utc(status.next_retry),
                "prune_guard": status.guard,
                "revision": status.revision,
                "files_with_problems": files.get(name, {}),
            }
            if status.describe is not None:
                out[name]["details"] = status.describe()
        return out

    async def health(self, request: Request) -> Response:
        check = self.ctx.health
        problems = list(check() if check is not None else source_problems(self.ctx.reconciler))
        if problems:
            raise ApiError(503, "; ".join(problems))
        if self.ctx.role is not None:
            return ORJSONResponse({"high_availability": dict(self.ctx.role())})
        return ORJSONResponse({})

    async def cluster(self, request: Request) -> Response:
        if self.ctx.cluster is None:
            raise ApiError(405, "this endpoint is only available with high availability configured")
        body = {**self.ctx.cluster(), "request_id": request_id(request)}
        return ORJSONResponse(body)
