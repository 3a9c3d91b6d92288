"""Shared watchers: one long poll per distinct query, however many subscribers ask.

`subscribe(query, callback)` starts a watcher for a query nobody watched yet, or joins
the running one; the last `close()` stops it. Each subscriber may project the watcher's
data (a catalog-services task applies its regexp, a trigger may look at service names
only) and is called only when *its* projection changes, first with the first data seen.
This is what a Consul trigger source needs to hand the run queue "run task X with these
inputs": subscribe each task's queries, and on a callback read every snapshot the task
renders.

With a connection cap (`max_connections`, from `transport { max_conns_per_host }`), the
long polls stay within a budget below it: past the budget, every service watcher switches
to its datacenter's cluster-wide indexes (feed.py) and reads its service only when told it
may have changed, without holding a connection; once the watchers fit in half the budget
again, they go back to one long poll each. The switch keeps each watcher's data and index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.consul.client import ConsulAPI, ConsulError
from reconciler.consul.connection import DEFAULT_WAIT
from reconciler.consul.feed import MODE, IndexedFetch, IndexFeed, Scope, scope_of
from reconciler.consul.queries import HealthServiceQuery, Query
from reconciler.consul.retry import Pacing
from reconciler.consul.watcher import Gate, Watcher, WatchState, WatchStatus

log = logging.getLogger("reconciler.consul")

_UNSET = object()
LONG_POLL = "long poll"


def long_poll_budget(max_connections: int | None) -> int | None:
    """How many long polls may run under a connection cap: the rest of the connections
    serve the short requests (reads in index mode, the leader, registration)."""
    if max_connections is None:
        return None
    return max(0, max_connections - max(2, max_connections // 8))


@dataclass(frozen=True)
class Update:
    query: Query
    data: object  # the subscriber's projection of the watcher's data
    index: int
    first: bool  # the first data this subscriber receives


Callback = Callable[[Update], None]
ErrorCallback = Callable[[Query, ConsulError], None]
Projection = Callable[[object], object]


class Subscription:
    """A handle: `snapshot()` for rendering, `close()` to stop listening."""

    def __init__(
        self,
        owner: ConsulWatchers,
        query: Query,
        callback: Callback,
        project: Projection | None,
        on_error: ErrorCallback | None,
    ) -> None:
        self.query = query
        self._owner = owner
        self._callback = callback
        self._project = project
        self._on_error = on_error
        self._last: object = _UNSET
        self.closed = False

    def project(self, data: object) -> object:
        return self._project(data) if self._project else data

    def snapshot(self) -> object | None:
        """The projection of the latest data, or None before the first answer."""
        watcher = self._owner._watchers.get(self.query)
        if watcher is None or not watcher.has_data:
            return None
        return self.project(watcher.data)

    def state(self) -> WatchState | None:
        return self._owner.state(self.query)

    async def close(self) -> None:
        await self._owner._unsubscribe(self)

    def _deliver(self, watcher: Watcher) -> None:
        if self.closed or not watcher.has_data:
            return
        view = self.project(watcher.data)
        if view == self._last:
            return
        first = self._last is _UNSET
        self._last = view
        try:
            self._callback(Update(self.query, view, watcher.index, first))
        except Exception:  # one subscriber's bug must not stop the others' updates
            log.exception("consul watch %s: subscriber failed", self.query.id)

    def _fail(self, err: ConsulError) -> None:
        if self.closed or self._on_error is None:
            return
        try:
            self._on_error(self.query, err)
        except Exception:
            log.exception("consul watch %s: error handler failed", self.query.id)


class ConsulWatchers:
    """Owned by the event loop; callbacks run in it."""

    def __init__(
        self,
        client: ConsulAPI,
        *,
        pacing: Pacing | None = None,
        gate: Gate | None = None,
        now: Callable[[], float] = time.time,
        max_connections: int | None = None,
        resync: float = DEFAULT_WAIT,
    ) -> None:
        """`max_connections`: the client's connection cap (None: none, one long poll per
        query). `resync`: in index mode, how often a service is read with nothing marked."""
        self.client = client
        self._pacing = pacing
        self._gate = gate
        self._now = now
        self._watchers: dict[Query, Watcher] = {}
        self._subscribers: dict[Query, list[Subscription]] = {}
        self.budget = long_poll_budget(max_connections)
        self._resync = resync
        self.indexed = False  # services are watched through cluster-wide indexes
        self.feeds: dict[Scope, IndexFeed] = {}
        self._over_budget_warned = False

    def subscribe(
        self,
        query: Query,
        callback: Callback,
        *,
        project: Projection | None = None,
        on_error: ErrorCallback | None = None,
    ) -> Subscription:
        sub = Subscription(self, query, callback, project, on_error)
        subs = self._subscribers.setdefault(query, [])
        subs.append(sub)
        watcher = self._watchers.get(query)
        if watcher is not None and watcher.status is WatchStatus.FAILED:
            # Consul rejected this query (a 400). A new subscriber is a new question:
            # ask again rather than hand it the old rejection.
            del self._watchers[query]
            watcher = None
        if watcher is None:
            fetch, mode = self._fetch_for(query)
            watcher = Watcher(
                query,
                self.client,
                on_change=self._changed,
                on_failure=self._failed,
                pacing=self._pacing,
                gate=self._gate,
                now=self._now,
                fetch=fetch,
                mode=mode,
            )
            self._watchers[query] = watcher
            watcher.start()
            self._rebalance()
        elif watcher.has_data:
            # Joining a running watcher: the first data is already there; hand it over
            # from the loop, as every other notification is, not from inside subscribe().
            asyncio.get_running_loop().call_soon(sub._deliver, watcher)
        return sub

    async def _unsubscribe(self, sub: Subscription) -> None:
        if sub.closed:
            return
        sub.closed = True
        subs = self._subscribers.get(sub.query, [])
        if sub in subs:
            subs.remove(sub)
        if not subs:
            self._subscribers.pop(sub.query, None)
            watcher = self._watchers.pop(sub.query, None)
            if watcher is not None:
                await watcher.stop()
                await self._rebalance_down()

    # --- the connection budget ---------------------------------------------------------

    def _fetch_for(self, query: Query) -> tuple[IndexedFetch | None, str]:
        if not (self.indexed and isinstance(query, HealthServiceQuery)):
            return None, LONG_POLL
        scope = scope_of(query)
        feed = self.feeds.get(scope)
        if feed is None:
            feed = IndexFeed(
                self.client, scope, pacing=self._pacing, gate=self._gate, now=self._now
            )
            self.feeds[scope] = feed
            feed.start()
        return IndexedFetch(feed, query, self.client, resync=self._resync), MODE

    def long_polls(self) -> int:
        """Long polls running (each holds a connection)."""
        if not self.indexed:
            return len(self._watchers)
        others = sum(not isinstance(q, HealthServiceQuery) for q in self._watchers)
        return others + 2 * len(self.feeds)

    def _rebalance(self) -> None:
        """A watcher was added: past the budget, switch the service watchers to indexes."""
        if self.budget is None or self.indexed or len(self._watchers) <= self.budget:
            return
        self.indexed = True
        services = [w for q, w in self._watchers.items() if isinstance(q, HealthServiceQuery)]
        log.info(
            "consul: %d watched queries exceed %d long polls (transport.max_conns_per_host);"
            " %d services are watched through the cluster-wide indexes",
            len(self._watchers),
            self.budget,
            len(services),
        )
        for watcher in services:
            watcher.set_fetch(*self._fetch_for(watcher.query))
        if self.long_polls() > self.budget and not self._over_budget_warned:
            self._over_budget_warned = True
            log.warning(
                "consul: %d long polls (KV and catalog queries, two per datacenter for the"
                " indexes) exceed %d: requests queue for a connection; raise"
                " transport.max_conns_per_host",
                self.long_polls(),
                self.budget,
            )

    async def _rebalance_down(self) -> None:
        """A watcher was removed: back to one long poll each once they fit in half the
        budget (the margin keeps a task added and removed at the edge from flapping)."""
        if not self.indexed:
            return
        assert self.budget is not None
        if len(self._watchers) <= self.budget // 2:
            self.indexed = False
            for query, watcher in self._watchers.items():
                if isinstance(query, HealthServiceQuery):
                    watcher.set_fetch(None, LONG_POLL)
            log.info("consul: %d watched queries: one long poll each again", len(self._watchers))
        # The feeds no service watcher reads any more (all of them, back to long polls).
        used = {
            scope_of(q)
            for q in self._watchers
            if self.indexed and isinstance(q, HealthServiceQuery)
        }
        for scope in [s for s in self.feeds if s not in used]:
            await self.feeds.pop(scope).stop()

    def _changed(self, watcher: Watcher) -> None:
        for sub in list(self._subscribers.get(watcher.query, ())):
            sub._deliver(watcher)

    def _failed(self, watcher: Watcher, err: ConsulError) -> None:
        for sub in list(self._subscribers.get(watcher.query, ())):
            sub._fail(err)

    def snapshot(self, query: Query) -> object | None:
        """The latest data of a watched query, or None (not watched, or no answer yet)."""
        watcher = self._watchers.get(query)
        return watcher.data if watcher is not None and watcher.has_data else None

    def state(self, query: Query) -> WatchState | None:
        watcher = self._watchers.get(query)
        return watcher.state() if watcher is not None else None

    def states(self) -> list[WatchState]:
        return sorted((w.state() for w in self._watchers.values()), key=lambda s: s.query)

    def __len__(self) -> int:
        """How many watchers (long polls) run."""
        return len(self._watchers)

    async def aclose(self) -> None:
        watchers = list(self._watchers.values())
        self._watchers.clear()
        for subs in self._subscribers.values():
            for sub in subs:
                sub.closed = True
        self._subscribers.clear()
        feeds = list(self.feeds.values())
        self.feeds.clear()
        await asyncio.gather(*(w.stop() for w in watchers), *(f.stop() for f in feeds))
