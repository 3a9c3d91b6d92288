"""Consul conditions as a trigger source: the condition kinds whose `trigger` is "consul"
(`services`, `catalog-services` and `consul-kv`).

For each task with such a condition the source subscribes the queries of what its kind
says it reads (`services`, `catalog_services` or `consul_kv`, see
reconciler.taskfiles.conditions.base) to the shared watchers (one long poll per distinct
query, whoever asks) and fires a trigger when what the task looks at changes:

- `services` by names: the instances of each named service (passing only unless the
  filter names `Checks.Status`, as the query itself decides);
- `services` by regexp: the instances of every service whose name matches, kept current
  by `RegexpServicesWatch`;
- `catalog-services`: only the *names* matching the regexp: a service appearing or
  disappearing triggers, a new instance or new tags do not (CTS);
- `consul-kv`: the key, or every key under it with `recurse`.

`module_input` blocks never trigger: the executor reads their data through the catalog
when the task runs.

The trigger carries no inputs: the run reads the latest data through `ConsulCatalog`
when it starts, so changes that arrive while a task runs merge into one more run that
sees the latest data.

The first answer of a task's queries is its start: the task runs once with the data it
watches (at daemon start, or when the task appears). The daemon therefore leaves these
tasks out of its own start-up run (`owns_start`): a task never runs on data that has not
arrived yet, e.g. while Consul is still electing a leader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reconciler.consul.client import ConsulError
from reconciler.consul.queries import (
    Query,
    catalog_services_query,
    health_queries,
    kv_query,
)
from reconciler.consul.regexp import RegexpServicesWatch
from reconciler.consul.watcher import WatchState
from reconciler.consul.watchers import ConsulWatchers, Subscription, Update
from reconciler.registry.store import LiveTask
from reconciler.runner.inputs import legacy_services
from reconciler.settings.model import ServiceSettings
from reconciler.taskfiles.conditions import Condition, kind_of
from reconciler.taskfiles.goregexp import compile_regexp
from reconciler.taskfiles.model import ServicesCondition, ServicesInput, TaskSpec
from reconciler.triggers.sources import Fire, ReportError, Trigger

log = logging.getLogger("reconciler.consul")


def consul_condition(spec: TaskSpec) -> Condition | None:
    """The task's condition if this source fires it (its kind's trigger is "consul"); the
    deprecated `services` list without a condition block acts as a services condition, as
    in CTS (its entries resolved by `legacy_services`)."""
    c = spec.condition
    if c is not None:
        return c if kind_of(c).trigger == "consul" else None
    if spec.services:
        return ServicesCondition(names=spec.services)
    return None


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat() if t is not None else None


@dataclass
class _TaskWatch:
    """What one task's condition is subscribed to."""

    condition: Condition
    # The deprecated services list: one query per entry, shaped by the service blocks.
    legacy: tuple[ServicesInput, ...] = ()
    subscriptions: list[Subscription] = field(default_factory=list)
    regexp: RegexpServicesWatch | None = None
    # Ids of the queries that have not answered yet: the task's start waits for all.
    waiting: set[str] = field(default_factory=set)
    started: bool = False
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def queries(self) -> list[Query]:
        out = [s.query for s in self.subscriptions]
        if self.regexp is not None:
            out.extend(self.regexp.queries())
        return out

    async def close(self) -> None:
        for sub in self.subscriptions:
            await sub.close()
        if self.regexp is not None:
            await self.regexp.close()


def _names(data: object, pattern: str | None) -> object:
    """catalog-services triggers on the set of matching names only (not tags)."""
    assert isinstance(data, tuple)
    rx = compile_regexp(pattern or "")
    return tuple(sorted(name for name, _tags in data if rx.search(name)))


class ConsulSource:
    """Runs in the event loop."""

    name = "consul"

    def __init__(
        self, watchers: ConsulWatchers, service_blocks: Sequence[ServiceSettings] = ()
    ) -> None:
        self._watchers = watchers
        self._service_blocks = tuple(service_blocks)
        self._fire: Fire | None = None
        self._report: ReportError | None = None
        self._tasks: dict[str, _TaskWatch] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False

    def owns_start(self, spec: TaskSpec) -> bool:
        """The task's start-up run comes from this source (its first answers)."""
        return consul_condition(spec) is not None

    def start(self, fire: Fire, report: ReportError) -> None:
        self._fire, self._report = fire, report

    # --- tasks ---------------------------------------------------------------------------

    def track(self, task: LiveTask) -> None:
        name, condition = task.spec.name, consul_condition(task.spec)
        current = self._tasks.get(name)
        if current is not None and current.condition == condition:
            return  # (the service blocks change only with a restart)
        self.forget(name)
        if condition is None or self._closed:
            return
        legacy: tuple[ServicesInput, ...] = ()
        if task.spec.condition is None:
            legacy = legacy_services(task.spec, self._service_blocks)
        watch = self._tasks[name] = _TaskWatch(condition, legacy)
        self._subscribe(name, watch)

    def _subscribe(self, name: str, watch: _TaskWatch) -> None:
        # What the condition reads, as its kind describes it.
        kind, c = kind_of(watch.condition), watch.condition
        services, catalog, kv = kind.services(c), kind.catalog_services(c), kind.consul_kv(c)
        on_error = self._on_error(name, watch)
        if services is not None and services.names is None:
            watch.regexp = RegexpServicesWatch(
                self._watchers,
                services.regexp or "",
                lambda _instances: self._changed(name, watch, None),
                datacenter=services.datacenter or "",
                namespace=services.namespace or "",
                filter=services.filter or "",
                on_error=on_error,
            )
            watch.waiting.add(_REGEXP)
            watch.regexp.start()
            return
        queries: list[tuple[Query, Callable[[object], object] | None]] = []
        if watch.legacy:
            unique = {q: None for entry in watch.legacy for q in health_queries(entry)}
            queries = [(q, None) for q in unique]
        elif services is not None:
            queries = [(q, None) for q in health_queries(services)]
        elif catalog is not None:
            regexp = catalog.regexp
            queries = [(catalog_services_query(catalog), lambda data: _names(data, regexp))]
        elif kv is not None:
            queries = [(kv_query(kv), None)]
        for query, projection in queries:
            watch.waiting.add(query.id)
            watch.subscriptions.append(
                self._watchers.subscribe(
                    query,
                    lambda update: self._changed(name, watch, update),
                    project=projection,
                    on_error=on_error,
                )
            )

    def _on_error(self, name: str, watch: _TaskWatch) -> Callable[[Query, ConsulError], None]:
        def failed(query: Query, err: ConsulError) -> None:
            if self._tasks.get(name) is not watch:
                return
            watch.errors[query.id] = str(err)
            if self._report is not None:
                self._report(name, f"consul: {err}")

        return failed

    def _changed(self, name: str, watch: _TaskWatch, update: Update | None) -> None:
        if self._tasks.get(name) is not watch or self._closed:
            return  # a late answer for a subscription being closed
        if update is None:
            answered = _REGEXP
            watch.errors.clear()  # every service matching the regexp has answered
        else:
            answered = update.query.id
            watch.errors.pop(answered, None)
        if not watch.errors and self._report is not None:
            self._report(name, None)
        watch.waiting.discard(answered)
        if watch.waiting:
            return  # the task starts once every query it watches has answered
        first = not watch.started
        watch.started = True
        if self._fire is not None:
            reason = "start" if first else f"{_what(update)} changed"
            self._fire(Trigger(name, reason, buffered=not first, start=first))

    def forget(self, name: str) -> None:
        watch = self._tasks.pop(name, None)
        if watch is None:
            return
        if watch.errors and self._report is not None:
            self._report(name, None)
        task = asyncio.get_running_loop().create_task(watch.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # --- views ---------------------------------------------------------------------------

    def watching(self) -> dict[str, str]:
        return {name: ", ".join(q.id for q in watch.queries) for name, watch in self._tasks.items()}

    def describe(self, name: str) -> Mapping[str, object] | None:
        watch = self._tasks.get(name)
        if watch is None:
            return None
        queries: list[dict[str, object]] = []
        for query in watch.queries:
            state: WatchState | None = self._watchers.state(query)
            entry: dict[str, object] = {"query": query.id}
            if state is not None:
                entry.update(
                    status=str(state.status),
                    mode=state.mode,
                    index=state.index,
                    last_change=_iso(state.last_change),
                    last_contact=_iso(state.last_contact),
                )
                if state.error:
                    entry["error"] = state.error
            queries.append(entry)
        return {"condition": watch.condition.type, "started": watch.started, "queries": queries}

    async def close(self) -> None:
        self._closed = True
        watches = list(self._tasks.values())
        self._tasks.clear()
        for watch in watches:
            await watch.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


_REGEXP = "services(regexp)"  # a regexp services watch among a task's pending queries


def _what(update: Update | None) -> str:
    return "services" if update is None else update.query.id


NO_CONSUL = (
    "no consul block is configured: nothing triggers this task's "
    '"{type}" condition (it runs at start and on run=now only)'
)


class NoConsulSource:
    """Stands in for Consul when none is configured: every task with a Consul condition
    says in its status (`waiting_on`) that nothing will trigger it. Not an error: the task
    still runs at start and on run=now."""

    name = "consul"

    def __init__(self) -> None:
        self._tasks: dict[str, str] = {}

    def start(self, fire: Fire, report: ReportError) -> None:
        pass

    def owns_start(self, spec: TaskSpec) -> bool:
        return False

    def track(self, task: LiveTask) -> None:
        condition = consul_condition(task.spec)
        if condition is None:
            self._tasks.pop(task.spec.name, None)
        else:
            self._tasks[task.spec.name] = condition.type

    def forget(self, name: str) -> None:
        self._tasks.pop(name, None)

    def watching(self) -> dict[str, str]:
        return {name: "nothing (no consul block)" for name in self._tasks}

    def describe(self, name: str) -> Mapping[str, object] | None:
        if name not in self._tasks:
            return None
        return {"condition": self._tasks[name], "note": NO_CONSUL.format(type=self._tasks[name])}

    async def close(self) -> None:
        self._tasks.clear()
