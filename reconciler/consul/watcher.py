"""One blocking-query loop per distinct query (hcat view.go `poll` and `fetch`).

The loop, rule by rule as hcat has it (consul-client.md section 2):

- the index is omitted while the last index is 0, so the first answer comes at once;
- the same index as before (the wait ran out): query again;
- an index lower than before: "wrong index order, resetting" to 0, and query again;
- after the first data, an answer that came in under 100 ms is followed by a sleep for the
  rest of the 100 ms plus 0-20 ms (the minimum gap between queries). hcat sleeps before
  handing the new data on; here the data goes out first and the sleep delays only the next
  query: the same load on Consul, up to 120 ms less latency per change;
- data equal to the previous data: no notification (Consul bumps indexes for changes
  that do not concern this query);
- a 400 is not retried: the query is wrong and stays wrong, so the watcher stops and
  reports the error;
- a 500 resets the index to 0 (Consul may have restarted with other indexes) and retries;
- every other error retries while the retry count is at most 8, waiting
  2^n s + [0, 2^n/2) s (capped at 15 minutes); any successful answer resets the count.

Two deliberate departures, both about staying alive as a daemon:

- A lost connection also resets the index. A Consul restarted with a lower index would
  otherwise hold our old, higher index for a whole wait before answering (CTS issue 233).
- When the retries run out, CTS exits. The watcher instead reports the error to its
  subscribers and keeps retrying at the growing (capped) interval.

An answer without X-Consul-Index cannot block; hcat would spin on it without ever
delivering the data. The watcher delivers the data and polls every `no_index_poll`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from reconciler.consul.client import (
    ConsulAPI,
    ConsulError,
    ConsulHTTPError,
    ConsulUnavailable,
)
from reconciler.consul.convert import ConversionError
from reconciler.consul.queries import Answer, Query
from reconciler.consul.retry import MIN_GAP, Pacing, min_gap_sleep

log = logging.getLogger("reconciler.consul")


class WatchStatus(StrEnum):
    STARTING = "starting"  # no answer yet (perhaps waiting for a Consul leader)
    WATCHING = "watching"  # has data, polling
    RETRYING = "retrying"  # the last request failed; retrying with backoff
    FAILING = "failing"  # the retries ran out; still retrying, the error is reported
    FAILED = "failed"  # Consul rejected the query (400): stopped
    STOPPED = "stopped"


@dataclass(frozen=True)
class WatchState:
    """A snapshot for status pages: what the watcher waits on and how it fares."""

    query: str
    status: WatchStatus
    index: int
    last_change: float | None  # wall-clock time the data last changed
    last_contact: float | None  # wall-clock time of the last successful answer
    error: str
    retries: int
    blocking: bool  # False while Consul answers without X-Consul-Index
    mode: str = "long poll"  # or "cluster index": woken by feed.py, then fetched


Changed = Callable[["Watcher"], None]
Failed = Callable[["Watcher", ConsulError], None]
Gate = Callable[[], Awaitable[None]]
# One request for the watcher's data, given its current index: a blocking query by default.
Fetch = Callable[[int], Awaitable[Answer]]


class Watcher:
    """Runs as one asyncio task in the event loop, which owns all of its state."""

    def __init__(
        self,
        query: Query,
        client: ConsulAPI,
        *,
        on_change: Changed,
        on_failure: Failed,
        pacing: Pacing | None = None,
        gate: Gate | None = None,
        now: Callable[[], float] = time.time,
        fetch: Fetch | None = None,
        mode: str = "long poll",
        every_index: bool = False,
    ) -> None:
        """`fetch`: how to ask (default: the query's own blocking query). `every_index`:
        call `on_change` for every new index, even with equal data (the feeds need to
        know that an index moved)."""
        self.query = query
        self._client = client
        self._fetch = fetch
        self.mode = mode
        self._every_index = every_index
        self._on_change = on_change
        self._on_failure = on_failure
        self._pacing = pacing or Pacing()
        self._gate = gate
        self._now = now
        self.index = 0
        self.data: object = None
        self.has_data = False
        self.last_change: float | None = None
        self.last_contact: float | None = None
        self.status = WatchStatus.STARTING
        self.error: ConsulError | None = None
        self.retries = 0
        self.blocking = True
        self.recovered = False  # this answer is the first after failures
        self._task: asyncio.Task[None] | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    def start(self, *, gated: bool = True) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._run(gated), name=f"consul watch {self.query.id}"
        )

    def set_fetch(self, fetch: Fetch | None, mode: str) -> None:
        """Ask another way from now on, keeping the data and the index: the request in
        flight is dropped and the next one goes out at once."""
        self._fetch, self.mode = fetch, mode
        task = self._task
        if task is None or task.done():
            return
        task.cancel()
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        self.start(gated=False)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for old in list(self._retiring):
            with contextlib.suppress(asyncio.CancelledError):
                await old
        self.status = WatchStatus.STOPPED

    def state(self) -> WatchState:
        return WatchState(
            query=self.query.id,
            status=self.status,
            index=self.index,
            last_change=self.last_change,
            last_contact=self.last_contact,
            error=str(self.error) if self.error else "",
            retries=self.retries,
            blocking=self.blocking,
            mode=self.mode,
        )

    async def _run(self, gated: bool = True) -> None:
        try:
            if gated and self._gate is not None:
                await self._gate()
            while await self._step():
                pass
        except asyncio.CancelledError:
            raise
        except Exception as err:  # a bug, not a Consul problem: say so, tell subscribers
            log.exception("consul watch %s: stopped by an unexpected error", self.query.id)
            self.status = WatchStatus.FAILED
            self.error = ConsulError(f"{self.query.id}: internal error: {err!r}")
            self._on_failure(self, self.error)

    async def _step(self) -> bool:
        """One request and what follows it; False when the watcher must stop."""
        start = self._pacing.monotonic()
        try:
            if self._fetch is not None:
                answer = await self._fetch(self.index)
            else:
                answer = await self.query.fetch(self._client, self.index)
        except (ConsulError, ConversionError) as err:
            error = err if isinstance(err, ConsulError) else ConsulError(f"{self.query.id}: {err}")
            return await self._failed(error)
        self.retries = 0
        self.error = None
        self.last_contact = self._now()
        # Answers may have been missed while failing: whoever diffs answers (feed.py)
        # must not take the gap for "nothing happened".
        self.recovered = self.status in (WatchStatus.RETRYING, WatchStatus.FAILING)
        if self.recovered:
            log.info("consul watch %s: Consul answers again", self.query.id)
        self.status = WatchStatus.WATCHING if self.has_data else WatchStatus.STARTING
        if not answer.index:
            # No header, or 0, which Consul never sends (it answers at least 1): either
            # way there is nothing to block on.
            return await self._unindexed(answer.data)
        self.blocking = True
        if answer.index == self.index:
            # The wait ran out with nothing new. hcat asks again at once; an answer that
            # came back suspiciously fast still gets the minimum gap, so a misbehaving
            # server cannot make this loop spin.
            await self._gap(start)
            return True
        had_data = self.has_data
        if answer.index < self.index:
            log.debug("consul watch %s: wrong index order, resetting", self.query.id)
            self.index = 0
            if had_data:
                await self._gap(start)
            return True
        self.index = answer.index
        self._take(answer.data)
        if had_data:
            await self._gap(start)
        return True

    def _take(self, data: object) -> None:
        self.status = WatchStatus.WATCHING
        if self.has_data and data == self.data:
            if self._every_index:
                self._on_change(self)
            return
        self.data = data
        self.has_data = True
        self.last_change = self._now()
        self._on_change(self)

    async def _unindexed(self, data: object) -> bool:
        if self.blocking:
            log.warning(
                "consul watch %s: Consul answered without X-Consul-Index; polling every %gs",
                self.query.id,
                self._pacing.no_index_poll,
            )
        self.blocking = False
        self.index = 0
        self._take(data)
        await self._pacing.sleep(self._pacing.no_index_poll)
        return True

    async def _gap(self, start: float) -> None:
        elapsed = self._pacing.monotonic() - start
        if elapsed < MIN_GAP:
            await self._pacing.sleep(min_gap_sleep(elapsed, self._pacing.rnd))

    async def _failed(self, err: ConsulError) -> bool:
        self.error = err
        if isinstance(err, ConsulHTTPError) and err.status == 400:
            # hcat view.go: "400 is not useful to retry".
            log.error("consul watch %s: %s", self.query.id, err)
            self.status = WatchStatus.FAILED
            self._on_failure(self, err)
            return False
        if (isinstance(err, ConsulHTTPError) and err.status == 500) or isinstance(
            err, ConsulUnavailable
        ):
            self.index = 0
        # The waits go on growing once the retries ran out; only the error is reported then.
        failures = self.retries + 1
        wait = self._pacing.retry.delay(failures)
        if not self._pacing.retry.retrying(failures):
            if self.status is not WatchStatus.FAILING:
                log.error(
                    "consul watch %s: still failing after %d retries: %s",
                    self.query.id,
                    self.retries,
                    err,
                )
                self.status = WatchStatus.FAILING
                self._on_failure(self, err)
        else:
            if self.status is not WatchStatus.FAILING:
                self.status = WatchStatus.RETRYING
            log.debug(
                "consul watch %s: %s; retry %d in %.1fs", self.query.id, err, self.retries + 1, wait
            )
        await self._pacing.sleep(wait)
        self.retries += 1
        return True
