"""Watching many services over few connections: Consul's cluster-wide indexes.

A blocking query holds one connection to Consul for up to `wait`, so 2,000 watched
services are 2,000 connections, past Consul's `http_max_conns_per_client` (CTS issue 146).
Above the connection budget (watchers.py), the services of a datacenter are watched
through two long polls instead, and each service is asked for only when one of them says
it may have changed:

- `/v1/health/state/any`: every check of the datacenter. Two answers differ, by status,
  for the services whose health changed: an instance registered or deregistered with its
  checks, a check turning critical or passing again. A node-level check changing on a
  node that stays (its serfHealth, node maintenance) marks every service.
- `/v1/catalog/services`: every service name with its tags. A name appearing or going, or
  its tags changing, marks that name. An index that moved with neither (a re-registration
  with a new port, an instance without checks) is checked against the health index: a
  health change at the same raft index explains it; otherwise no service can be pinned,
  and every service of the datacenter is marked.

A marked service's watcher then asks for the service's instances once, without blocking
(`IndexedFetch`), through the same query and conversion as a long poll. With nothing
marked it still asks once per `resync` (the interval at which its long poll would have
come back anyway): the bound for a change the two indexes attribute wrongly (a
services-only change folded into one catalog answer with a health change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reconciler.consul.client import ConsulAPI, ConsulError
from reconciler.consul.convert import Check, ConversionError
from reconciler.consul.queries import (
    Answer,
    CatalogServicesQuery,
    HealthServiceQuery,
    HealthStateQuery,
    Query,
)
from reconciler.consul.retry import Pacing
from reconciler.consul.watcher import Changed, Gate, Watcher

log = logging.getLogger("reconciler.consul")

MODE = "cluster index"
# How long a service's first request waits for its feed's first answers: past it, the
# service is read anyway (a feed Consul keeps refusing must not keep the data away).
READY_TIMEOUT = 10.0
# Raft indexes at which a health change was seen, kept to explain catalog moves.
EXPLAINED = 4096

Health = dict[str, frozenset[tuple[str, str, str, str]]]  # name -> (node, check, id, status)


@dataclass(frozen=True)
class Scope:
    datacenter: str
    namespace: str


def scope_of(query: HealthServiceQuery) -> Scope:
    return Scope(query.datacenter, query.namespace)


def _group(checks: tuple[Check, ...]) -> tuple[Health, Health]:
    """Checks by service name, and node-level checks by node; statuses, not outputs (an
    output changes often and no module input shows it)."""
    services: dict[str, set[tuple[str, str, str, str]]] = {}
    nodes: dict[str, set[tuple[str, str, str, str]]] = {}
    for node, check_id, service, service_id, status, _ in checks:
        into = services.setdefault(service, set()) if service else nodes.setdefault(node, set())
        into.add((node, check_id, service_id, status))
    return (
        {k: frozenset(v) for k, v in services.items()},
        {k: frozenset(v) for k, v in nodes.items()},
    )


def _differ(a: Health, b: Health) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}


class IndexFeed:
    """One datacenter (and namespace). Owned by the event loop."""

    def __init__(
        self,
        client: ConsulAPI,
        scope: Scope,
        *,
        pacing: Pacing | None = None,
        gate: Gate | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.scope = scope
        self._client = client
        dc, ns = scope.datacenter, scope.namespace

        def index_watcher(query: Query, on_change: Changed) -> Watcher:
            return Watcher(
                query,
                client,
                on_change=on_change,
                on_failure=self._failed,
                pacing=pacing,
                gate=gate,
                now=now,
                every_index=True,
            )

        self._health = index_watcher(
            HealthStateQuery(dc, ns), lambda w: self._take_health(w.index, w.data)
        )
        self._catalog = index_watcher(CatalogServicesQuery(dc, ns), self._take_catalog)
        self._tick = 0
        self._marked: dict[str, int] = {}
        self._all = 0
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._ready = asyncio.Event()
        self._services: Health | None = None
        self._nodes: Health = {}
        self._health_index = 0
        self._explained: deque[int] = deque(maxlen=EXPLAINED)
        self._catalog_entries: dict[str, tuple[str, ...]] | None = None
        self._catalog_index = 0
        self._explaining: set[asyncio.Task[None]] = set()
        self.marked_all = 0  # how often every service had to be asked (for tests)

    def start(self) -> None:
        self._health.start()
        self._catalog.start()

    async def stop(self) -> None:
        for task in list(self._explaining):
            task.cancel()
        await asyncio.gather(
            self._health.stop(), self._catalog.stop(), *self._explaining, return_exceptions=True
        )
        self._release(list(self._waiters))

    # --- what IndexedFetch waits on ---------------------------------------------------

    def generation(self, name: str) -> int:
        """Grows whenever `name` may have changed."""
        return max(self._marked.get(name, 0), self._all)

    async def ready(self, timeout: float) -> None:
        """Both indexes have answered once (or `timeout` passed): a service read after this
        misses nothing that the feed does not report."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()

    async def changed(self, name: str, seen: int, timeout: float) -> None:
        """Return once `name` may have changed since generation `seen`, or after `timeout`."""
        if self.generation(name) > seen:
            return
        future = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(name, set())
        waiters.add(future)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            waiters.discard(future)
            if not waiters and self._waiters.get(name) is waiters:
                del self._waiters[name]

    # --- marking ----------------------------------------------------------------------

    def _release(self, names: Iterable[str]) -> None:
        for name in names:
            for future in self._waiters.pop(name, ()):
                if not future.done():
                    future.set_result(None)

    def _mark(self, names: set[str]) -> None:
        self._tick += 1
        for name in names:
            self._marked[name] = self._tick
        self._release(names)

    def _mark_all(self, why: str) -> None:
        log.debug("consul %s: every service is read again: %s", self._catalog.query.id, why)
        self.marked_all += 1
        self._tick += 1
        self._all = self._tick
        self._release(list(self._waiters))

    def _check_ready(self) -> None:
        if self._services is not None and self._catalog_entries is not None:
            self._ready.set()

    # --- the two indexes --------------------------------------------------------------

    def _take_health(self, index: int, data: object) -> None:
        if index == self._health_index and self._services is not None:
            return  # already taken (an explaining read came first)
        assert isinstance(data, tuple)
        services, nodes = _group(data)
        if self._services is not None:
            changed = _differ(services, self._services)
            # A node that came or went brings or takes its instances, whose own checks
            # (or the catalog) say so; a node check changing on a node that stays
            # concerns every instance on it, which the checks do not all name.
            kept = nodes.keys() & self._nodes.keys()
            if any(nodes[n] != self._nodes[n] for n in kept):
                self._mark_all("a node's health changed")
                self._explained.append(index)
            elif changed:
                self._mark(changed)
                self._explained.append(index)
                # The raft index of each changed check: a catalog answer at one of them
                # is the same registration.
                self._explained.extend(
                    c[5] for c in data if c[2] in changed and c[5] > self._health_index
                )
        self._services, self._nodes, self._health_index = services, nodes, index
        self._check_ready()

    def _take_catalog(self, watcher: Watcher) -> None:
        index = watcher.index
        data = watcher.data
        assert isinstance(data, tuple)
        entries = dict(data)
        previous, previous_index = self._catalog_entries, self._catalog_index
        self._catalog_entries, self._catalog_index = entries, index
        if previous is None:
            self._check_ready()
            return
        if watcher.recovered or index < previous_index:
            self._mark_all("the service catalog's index after a gap or a reset")
            return
        if index == previous_index:
            return
        changed = {k for k in entries.keys() | previous.keys() if entries.get(k) != previous.get(k)}
        if changed:
            self._mark(changed)
        elif index not in self._explained:
            self._explain(index)

    def _explain(self, index: int) -> None:
        if self._health_index >= index:
            self._mark_all(f"the service catalog moved to {index} with no health change")
            return
        task = asyncio.get_running_loop().create_task(self._explain_later(index))
        self._explaining.add(task)
        task.add_done_callback(self._explaining.discard)

    async def _explain_later(self, index: int) -> None:
        """The health long poll may not have answered yet: read the health index once."""
        try:
            answer = await self._health.query.fetch(self._client, 0)
        except (ConsulError, ConversionError) as err:
            self._mark_all(f"the health index could not be read: {err}")
            return
        if answer.index:
            self._take_health(answer.index, answer.data)
        if index not in self._explained:
            self._mark_all(f"the service catalog moved to {index} with no health change")

    def _failed(self, watcher: Watcher, err: ConsulError) -> None:
        log.warning(
            "consul %s: changes are seen only every resync interval while this fails: %s",
            watcher.query.id,
            err,
        )


class IndexedFetch:
    """A service watcher's requests while its datacenter is watched through a feed: wait
    until the feed marks the service (or `resync` passes), then one non-blocking read."""

    def __init__(
        self,
        feed: IndexFeed,
        query: HealthServiceQuery,
        client: ConsulAPI,
        *,
        resync: float,
        rnd: random.Random | None = None,
    ) -> None:
        self.feed = feed
        self._query = query
        self._client = client
        self._resync = resync
        self._rnd = rnd or random.Random()
        self._seen: int | None = None

    async def __call__(self, index: int) -> Answer:
        if index > 0 and self._seen is not None:
            # Consul's own jitter of wait/16, so that resyncs spread out over time.
            timeout = self._resync * (1 + self._rnd.random() / 16)
            await self.feed.changed(self._query.name, self._seen, timeout)
        else:
            await self.feed.ready(READY_TIMEOUT)
        # Taken before the read: a change marked while the read is in flight wakes the
        # next wait at once.
        self._seen = self.feed.generation(self._query.name)
        return await self._query.fetch(self._client, 0)
