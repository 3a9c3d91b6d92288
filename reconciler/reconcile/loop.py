"""One reconcile loop per source, in the event loop.

The watcher's thread only hands path hints to the loop (call_soon_threadsafe). The loop
debounces them (a short quiet period, capped under a steady stream), re-reads the hinted
files in a worker thread, and applies the result. A hint the kernel marks final (the file
was closed after writing, or renamed into place) needs no quiet period: once every hinted
path's latest hint is final, the pass starts at once. API writes take the same per-source
lock, so writes, file edits and reconciles never interleave.

An unavailable source (its directory gone, its remote unreachable) is retried with
exponential backoff (`Backoff`), not on every tick: each attempt may hold the lock for a
whole fetch timeout. A hint (a webhook, SIGHUP, a file event) still makes an attempt at
once; only a full pass that succeeds ends the unavailable state, because a partial one
(an API write's) does not read everything the source holds.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from reconciler._core.backoff import Backoff
from reconciler._core.errors import SourceError
from reconciler._core.metrics import NULL, Recorder
from reconciler.reconcile.configtasks import PreParsed
from reconciler.reconcile.engine import Parsed, Reconciler, Scanned
from reconciler.registry.store import RegistryChange
from reconciler.sources.base import LocalFiles, Source, SourceUpdate, WatchedFiles

log = logging.getLogger(__name__)


class SourceLoop:
    def __init__(
        self,
        source: Source,
        reconciler: Reconciler,
        *,
        allow_empty: bool = False,
        debounce: float = 0.02,
        max_delay: float = 0.2,
        rescan_interval: float = 300.0,
        retry_interval: float = 1.0,
        retry_max: float = 300.0,
        backoff: Backoff | None = None,
        recorder: Recorder = NULL,
    ) -> None:
        """`retry_interval` is the first wait before retrying an unavailable source,
        doubling up to `retry_max` (or `backoff`, when given)."""
        self.source = source
        self.recorder = recorder
        self.reconciler = reconciler
        self.status = reconciler.add_source(source.name, allow_empty=allow_empty)
        self.status.describe = getattr(source, "describe", None)
        self.status.problems = getattr(source, "problems", None)
        self.lock = asyncio.Lock()
        self.debounce = debounce
        self.max_delay = max_delay
        self.rescan_interval = rescan_interval
        if backoff is None:
            backoff = Backoff(first=retry_interval, cap=max(retry_max, retry_interval))
        self.backoff = backoff
        # How often a watched directory's root is checked for being replaced (inotify does
        # not report that for the watched directory itself): cheap, one stat.
        self.root_check_interval = min(1.0, self.backoff.first)
        self._retry_at: float | None = None  # loop time of the next attempt while unavailable
        self._pending: set[str] = set()
        # Hinted paths whose latest hint may be followed by more writes: debounced.
        self._unsettled: set[str] = set()
        self._full = False
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reconciles = 0  # completed reconcile passes, for tests and metrics

    # --- hints -------------------------------------------------------------------------

    def _hint_threadsafe(self, rel: str | None, final: bool) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.hint, rel, final)

    def hint(self, rel: str | None, final: bool = False) -> None:
        """`rel` may have changed (None: anything may have); `final`: the kernel says
        the write to it is finished."""
        if rel is None:
            self._full = True
        else:
            self._pending.add(rel)
            if final:
                self._unsettled.discard(rel)
            else:
                self._unsettled.add(rel)
        self._wakeup.set()

    @property
    def _settled(self) -> bool:
        """Every hint since the last pass was final: nothing to wait for."""
        return not self._full and not self._unsettled

    # --- passes --------------------------------------------------------------------------

    async def initial_load(self) -> None:
        """The first full scan; a source that is unavailable is retried by `run`."""
        self._loop = asyncio.get_running_loop()
        async with self.lock:
            await self._pass(full=True, paths=set())

    async def sync_paths(
        self, paths: Iterable[str], *, deliberate: Iterable[str] = ()
    ) -> RegistryChange:
        """Reconcile the given files now. The caller must hold `self.lock`."""
        return await self._pass(full=False, paths=set(paths), deliberate=deliberate)

    async def _pass(
        self, *, full: bool, paths: set[str], deliberate: Iterable[str] = ()
    ) -> RegistryChange:
        started = time.perf_counter()
        try:
            change = await self._reconcile(full=full, paths=paths, deliberate=deliberate)
        except SourceError as exc:
            self._failed(exc.message)
            self.recorder.source_pass(self.source.name, False, time.perf_counter() - started)
            return RegistryChange()
        self.recorder.source_pass(self.source.name, True, time.perf_counter() - started)
        return change

    async def _reconcile(
        self, *, full: bool, paths: set[str], deliberate: Iterable[str]
    ) -> RegistryChange:
        """One pass: read (a fetch, for git), parse, apply to the registry. Raises
        SourceError when the source cannot be read."""
        source = self.source
        if full:
            update: SourceUpdate = await asyncio.to_thread(source.full_scan)
        else:
            update = await asyncio.to_thread(source.scan_paths, paths)
        if self.status.error is not None:
            if full:
                log.info("source %s is available again", source.name)
                self._recovered()
            else:
                self.hint(None)  # read everything now, and only then call it available
        if update.revision:
            self.status.revision = update.revision
        if not update:
            self.reconciles += 1
            return RegistryChange()
        parsed = await self._parse(update)
        change = self.reconciler.apply(
            source.name,
            update,
            parsed,
            source.display_path,
            deliberate=deliberate,
            locate=self._locate(),
        )
        self.reconciles += 1
        if change:
            log.info(
                "source %s: %d created, %d updated, %d deleted",
                source.name,
                len(change.created),
                len(change.updated),
                len(change.deleted),
            )
        return change

    async def scan(self) -> Scanned:
        """A full read, parsed and not applied: how a source added by a reload is read
        before it replaces anything. Raises SourceError when the source cannot be read."""
        self._loop = asyncio.get_running_loop()
        update = await asyncio.to_thread(self.source.full_scan)
        if update.revision:
            self.status.revision = update.revision
        parsed = await self._parse(update)
        return Scanned(self.source.name, update, parsed, self.source.display_path, self._locate())

    async def _parse(self, update: SourceUpdate) -> Parsed:
        source = self.source
        if isinstance(source, PreParsed):
            return source.parsed(update)
        return await asyncio.to_thread(
            self.reconciler.parse, update, source.display_path, source.name
        )

    def _locate(self) -> Callable[[str], Path] | None:
        return self.source.absolute_path if isinstance(self.source, LocalFiles) else None

    def _failed(self, message: str) -> None:
        status = self.status
        status.failures += 1
        delay = self.backoff.delay(status.failures)
        self._retry_at = asyncio.get_running_loop().time() + delay
        status.next_retry = time.time() + delay
        if status.error != message:
            log.error(
                "source %s unavailable, keeping the last good tasks: %s (next attempt in %.0f s)",
                self.source.name,
                message,
                delay,
            )
        else:
            log.debug(
                "source %s still unavailable; next attempt in %.0f s", self.source.name, delay
            )
        status.error = message

    def _recovered(self) -> None:
        self.status.error = None
        self.status.failures = 0
        self.status.next_retry = None
        self._retry_at = None

    # --- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        watched = self.source if isinstance(self.source, WatchedFiles) else None
        next_rescan = self._loop.time() + self._jitter(self.rescan_interval)
        while True:
            if watched is not None and not watched.watching and self.status.error is None:
                try:
                    watched.start_watching(self._hint_threadsafe)
                except OSError as exc:
                    self._failed(f"cannot watch {watched.files_root()}: {exc}")
            # While unavailable, the backoff decides when to try again, not the polling.
            retry_at = self._retry_at if self.status.error is not None else None
            due = retry_at if retry_at is not None else next_rescan
            timeout = due - self._loop.time()
            if watched is not None:
                timeout = min(timeout, self.root_check_interval)
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                # cancellation that races the wakeup, and this loop would never end.
                async with asyncio.timeout(max(timeout, 0)):
                    await self._wakeup.wait()
            except TimeoutError:
                if watched is not None and watched.root_replaced():
                    await asyncio.to_thread(watched.stop_watching)
                    self._full = True
                elif self._loop.time() >= due:
                    self._full = True
                else:
                    continue
            else:
                await self._settle()
            full, paths = self._full or self.status.error is not None, self._pending
            self._full, self._pending, self._unsettled = False, set(), set()
            if full:
                next_rescan = self._loop.time() + self._jitter(self.rescan_interval)
            async with self.lock:
                await self._pass(full=full, paths=paths)
            if watched is not None and self.status.error is not None:
                # The directory vanished: its inotify watch is dead; re-arm when it is back.
                await asyncio.to_thread(watched.stop_watching)

    async def _settle(self) -> None:
        """Wait until hints stop arriving for `debounce`, at most `max_delay` in all, or
        until every path hinted is final."""
        assert self._loop is not None
        deadline = self._loop.time() + self.max_delay
        while True:
            self._wakeup.clear()
            if self._settled:
                return
            remaining = min(self.debounce, deadline - self._loop.time())
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    await self._wakeup.wait()
            except TimeoutError:
                return

    @staticmethod
    def _jitter(interval: float) -> float:
        return interval * random.uniform(0.9, 1.1)

    def close(self) -> None:
        if isinstance(self.source, WatchedFiles):
            self.source.stop_watching()
        close = getattr(self.source, "close", None)
        if callable(close):
            close()
