"""Group commit: the API's writes to one source are made in batches.

A write joins the source's queue; one worker takes the whole queue as a batch, holds the
source's lock once for it, makes each change in the order the API accepted them (each
durable before the next: fsync'd and committed), publishes them together (a git source
pushes once per batch), and then reconciles every file the batch touched in one pass.
Writes that arrive meanwhile go into the next batch. Each caller is answered only once
its own change is durable and live, or with its own change's error; a failed change
costs only its own caller.

Whatever a change needs before it may be written (validation, Terraform init) happens
before it joins the queue, never under the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler._core.errors import ConflictError
from reconciler.reconcile.loop import SourceLoop
from reconciler.sources.base import BatchedCommits, Source

log = logging.getLogger(__name__)

# How long a small batch waits for the writers of a large one to come back: a share of
# the last batch's time (answering them and reading their next requests takes about
# that on a busy loop), capped.
LINGER_SHARE = 0.25
LINGER_MAX_S = 0.05

# A change in two steps, both under the source's lock, after the changes queued before it:
# `check`, in the event loop, that the change still applies (it reads the registry), then
# `make`, in the batch's worker thread, which reads and writes the files (durably) and
# returns the file it touched, or None when it changed nothing. The worker thread runs
# the makes of a whole batch in one hop, in order.
Check = Callable[[], None]
Make = Callable[[], str | None]


@dataclass
class _Job:
    check: Check
    make: Make
    deliberate: tuple[str, ...]
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher:
    """The write queue of one source loop."""

    def __init__(self, loop: SourceLoop) -> None:
        self.loop = loop
        self._queue: list[_Job] = []
        self._worker: asyncio.Task[None] | None = None
        self._last_size = 0  # jobs in the batch made last
        self._last_seconds = 0.0  # how long it took
        self._last_end = 0.0  # when it ended (time.monotonic)
        self._filled = asyncio.Event()  # the queue is as long as the last batch was
        self.batches = 0  # batches made, for tests and metrics
        self.submitted = 0  # changes queued so far, likewise

    async def submit(self, check: Check, make: Make, *, deliberate: tuple[str, ...] = ()) -> None:
        """Make the change in the next batch; returns once it is durable and reconciled.
        `deliberate`: tasks the change deletes on purpose (the prune guard lets them go)."""
        job = _Job(check, make, deliberate)
        # Its error is read here, or by nobody if the caller went away: never left unread.
        job.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(job)
        self.submitted += 1
        if len(self._queue) >= self._last_size:
            self._filled.set()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._drain(), name=f"writes:{self.loop.source.name}"
            )
        # Shielded: a caller that goes away (a closed connection) does not cancel a
        # change that may already be written; the batch finishes it either way.
        await asyncio.shield(job.done)

    async def _drain(self) -> None:
        while self._queue:
            if (
                len(self._queue) < self._last_size
                and time.monotonic() - self._last_end < LINGER_MAX_S
            ):
                # The writers of the last batch were answered a moment ago and are on
                # their way back: a batch made now would hold only the few that were
                # not, and theirs would wait a whole batch more.
                self._filled.clear()
                linger = min(self._last_seconds * LINGER_SHARE, LINGER_MAX_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._filled.wait(), linger)
            batch, self._queue = self._queue, []
            self._last_size = len(batch)
            started = time.monotonic()
            try:
                await self._make(batch)
            except BaseException as exc:
                for job in batch:
                    if not job.done.done():
                        job.done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                log.exception("source %s: a batch of writes failed", self.loop.source.name)
            self._last_end = time.monotonic()
            self._last_seconds = self._last_end - started

    async def _make(self, batch: list[_Job]) -> None:
        async with self.loop.lock:
            ready: list[_Job] = []
            for job in batch:
                try:
                    job.check()
                except Exception as exc:
                    job.done.set_exception(exc)
                else:
                    ready.append(job)
            outcomes = await asyncio.to_thread(
                _make_all, self.loop.source, [job.make for job in ready]
            )
            made: list[_Job] = []
            paths: list[str] = []
            for job, outcome in zip(ready, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    if isinstance(outcome, ConflictError):
                        # Changed upstream: follow it now, not at the next poll.
                        self.loop.hint(None)
                    job.done.set_exception(outcome)
                    continue
                made.append(job)
                if outcome is not None:
                    paths.append(outcome)
            if made:
                deliberate = [name for job in made for name in job.deliberate]
                await self.loop.sync_paths(paths, deliberate=deliberate)
        self.batches += 1
        for job in made:
            if not job.done.done():
                job.done.set_result(None)


def _make_all(source: Source, makes: list[Make]) -> list[str | Exception | None]:
    """The worker thread's part of a batch: each change in order, each failure its own,
    then all made durable at once (one fsync per directory, one push). A change undone
    only because another conflicted upstream is made again, on the new upstream, with
    the others that were undone with it."""
    outcomes: list[str | Exception | None] = [None] * len(makes)
    todo = list(range(len(makes)))
    batched = source if isinstance(source, BatchedCommits) else None
    while todo:
        if batched is not None:
            batched.begin_batch()
        for i in todo:
            outcomes[i] = _made(makes[i])
        if batched is None:
            break
        failed = batched.end_batch()
        again: list[int] = []
        for i in todo:
            rel = outcomes[i]
            if isinstance(rel, str) and rel in failed:
                error = failed[rel]
                if error is None:
                    again.append(i)
                else:
                    outcomes[i] = error
        if len(again) == len(todo):  # nobody's own conflict: never go round forever
            for i in again:
                outcomes[i] = ConflictError("the change kept conflicting upstream; retry")
            break
        todo = again  # each round fails at least the change that conflicted
    return outcomes


def _made(make: Make) -> str | Exception | None:
    try:
        return make()
    except Exception as exc:
        return exc
