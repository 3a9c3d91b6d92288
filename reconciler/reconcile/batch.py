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
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler._core.errors import ConflictError
from reconciler.reconcile.loop import SourceLoop
from reconciler.sources.base import BatchedPushes, Source

log = logging.getLogger(__name__)

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
        self.batches = 0  # batches made, for tests and metrics

    async def submit(self, check: Check, make: Make, *, deliberate: tuple[str, ...] = ()) -> None:
        """Make the change in the next batch; returns once it is durable and reconciled.
        `deliberate`: tasks the change deletes on purpose (the prune guard lets them go)."""
        job = _Job(check, make, deliberate)
        # Its error is read here, or by nobody if the caller went away: never left unread.
        job.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append(job)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(
                self._drain(), name=f"writes:{self.loop.source.name}"
            )
        # Shielded: a caller that goes away (a closed connection) does not cancel a
        # change that may already be written; the batch finishes it either way.
        await asyncio.shield(job.done)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await self._make(batch)
            except BaseException as exc:
                for job in batch:
                    if not job.done.done():
                        job.done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                log.exception("source %s: a batch of writes failed", self.loop.source.name)

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
    then one push. A change undone only because another conflicted upstream is made
    again, on the new upstream, with the others that were undone with it."""
    outcomes: list[str | Exception | None] = [None] * len(makes)
    todo = list(range(len(makes)))
    pushes = source if isinstance(source, BatchedPushes) else None
    while todo:
        if pushes is not None:
            pushes.defer_pushes()
        for i in todo:
            outcomes[i] = _made(makes[i])
        if pushes is None:
            break
        failed = pushes.push_deferred()
        again: list[int] = []
        for i in todo:
            rel = outcomes[i]
            if isinstance(rel, str) and rel in failed:
                error = failed[rel]
                if error is None:
                    again.append(i)
                else:
                    outcomes[i] = error
        # Each round fails at least one change (the one that conflicted), so this ends.
        todo = again if len(again) < len(todo) else []
    return outcomes


def _made(make: Make) -> str | Exception | None:
    try:
        return make()
    except Exception as exc:
        return exc
