"""Shared watchers: one long poll per distinct query, however many subscribers ask.

`subscribe(query, callback)` starts a watcher for a query nobody watched yet, or joins
the running one; the last `close()` stops it. Each subscriber may project the watcher's
data (a catalog-services task applies its regexp, a trigger may look at service names
only) and is called only when *its* projection changes, first with the first data seen.
This is what a Consul trigger source needs to hand the run queue "run task X with these
inputs": subscribe each task's queries, and on a callback read every snapshot the task
renders.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.triggers.consul.client import ConsulAPI, ConsulError
from reconciler.triggers.consul.queries import Query
from reconciler.triggers.consul.retry import Pacing
from reconciler.triggers.consul.watcher import Gate, Watcher, WatchState, WatchStatus

log = logging.getLogger("reconciler.consul")

_UNSET = object()


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
    ) -> None:
        self.client = client
        self._pacing = pacing
        self._gate = gate
        self._now = now
        self._watchers: dict[Query, Watcher] = {}
        self._subscribers: dict[Query, list[Subscription]] = {}

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
            watcher = Watcher(
                query,
                self.client,
                on_change=self._changed,
                on_failure=self._failed,
                pacing=self._pacing,
                gate=self._gate,
                now=self._now,
            )
            self._watchers[query] = watcher
            watcher.start()
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
        await asyncio.gather(*(w.stop() for w in watchers))
