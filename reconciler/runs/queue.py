"""The run queue: one pending request and one worker per task, a global pool of slots.

Every piece of Terraform work takes the task's own lock first and a slot of the pool of
`workers` second, so a task never runs twice at once, at most `workers` Terraform
commands run at all, and a request that waits behind its own task's job holds no slot
that another task could use. The retry backoff inside a job gives its slot back too
(reconciler.runs.execute).

A deleted task loses its pending work at once, but while a job of it is still running
it is kept here as "deleting" (the API keeps showing it) until the job ends; then it and
its events are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

from reconciler._core.lanes import Lanes
from reconciler._core.metrics import NULL, Recorder
from reconciler.registry.status import Event, StatusStore
from reconciler.runner.driver import Priority
from reconciler.runs.execute import Executor
from reconciler.runs.requests import (
    Request,
    TaskBusyError,
    TaskGoneError,
    TaskRuns,
    fail,
    resolve,
)

# The scheduler's logger: a task's run is logged under one name whichever module does it.
log = logging.getLogger("reconciler.runs.scheduler")

# A gate the queue asks before starting a job (e.g. leadership): None or a message why
# work must not start now. The default lets everything through.
Gate = Callable[[], str | None]


@dataclass(frozen=True)
class Claim:
    """The answer of `Claims` for one run: whether this daemon may run the task now (a
    refusal says why not) and what the cluster last applied for it (None: unknown)."""

    refusal: str | None = None
    applied: str | None = None


# With runs spread over the members of a cluster: held for the whole run, so that no
# other member runs the task meanwhile; `background` is False for a run an API call asked
# for (the task's owner does not matter then, only that nobody else is running it).
Claims = Callable[[str, bool], AbstractAsyncContextManager[Claim]]


_NO_SLOT = contextlib.nullcontext()


class RunQueue:
    def __init__(
        self,
        executor: Executor,
        status: StatusStore,
        *,
        workers: int = 4,
        gate: Gate | None = None,
        recorder: Recorder = NULL,
    ) -> None:
        self.executor = executor
        self.status = status
        self.workers = workers
        self.gate = gate
        self.recorder = recorder
        # Told when what a task has applied changes (the digest, None after a failure):
        # with high availability, the next leader knows what not to apply again.
        self.on_applied: Callable[[str, str | None], None] | None = None
        self.claims: Claims | None = None  # runs spread over a cluster's members
        self.tasks: dict[str, TaskRuns] = {}
        self._pool = Lanes(workers)
        self._workers: set[asyncio.Task[None]] = set()
        self.closed = False
        self.deletions_version = 0  # bumped when the set of deleting tasks changes

    # --- asking for work ----------------------------------------------------------------

    def request(self, st: TaskRuns, request: Request) -> None:
        if self.closed:
            fail(request.waiters, TaskBusyError("the daemon is shutting down"))
            return
        if st.pending is None:
            st.pending = request
        else:
            st.pending.merge(request)
        if st.worker is None or st.worker.done():
            st.worker = asyncio.get_running_loop().create_task(
                self._work(st), name=f"run:{st.name}"
            )
            self._workers.add(st.worker)
            st.worker.add_done_callback(self._workers.discard)

    async def wait_for(self, st: TaskRuns, request: Request) -> Event | None:
        fut: asyncio.Future[Event | None] = asyncio.get_running_loop().create_future()
        request.waiters.append(fut)
        self.request(st, request)
        return await fut

    def resize(self, workers: int) -> None:
        """At most `workers` background runs at once from now on (a reload)."""
        self._pool.resize(workers)
        self.workers = workers

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        await self._pool.acquire()
        try:
            yield
        finally:
            self._pool.release()

    def slot(
        self, st: TaskRuns, priority: Priority = Priority.BACKGROUND
    ) -> Callable[[], AbstractAsyncContextManager[None]]:
        """A pool slot for one Terraform step of the task; the task counts as active
        from its first slot until its worker finishes the request. API work takes no
        slot: it must not queue behind background runs (the Terraform pool serves it
        ahead of them)."""

        @contextlib.asynccontextmanager
        async def take() -> AsyncIterator[None]:
            async with self._slot() if priority is Priority.BACKGROUND else _NO_SLOT:
                # Deleted while waiting for the slot (or between retries): stop here.
                if st.deleting or self.tasks.get(st.name) is not st:
                    raise TaskGoneError(f"task {st.name} was deleted")
                # The daemon stops: running jobs may finish, queued ones do not start.
                if self.closed and priority is Priority.BACKGROUND:
                    raise TaskBusyError("the daemon is shutting down")
                st.working = True
                yield

        return take

    async def _work(self, st: TaskRuns) -> None:
        try:
            while st.pending is not None and not self.closed:
                async with st.lock:
                    request, st.pending = st.pending, None
                    if request is None or st.deleting:
                        break
                    # Only applies are gated: initialising keeps a follower warm.
                    blocked = self.gate() if self.gate is not None and request.run else None
                    if blocked is not None:
                        fail(request.waiters, TaskBusyError(blocked))
                        continue
                    if not request.run or self.claims is None:
                        await self._execute(st, request)
                        continue
                    background = request.priority is Priority.BACKGROUND
                    async with self.claims(st.name, background) as claim:
                        if claim.refusal is not None:
                            fail(request.waiters, TaskBusyError(claim.refusal))
                            continue
                        if background:
                            # What the cluster applied last: a trigger another member
                            # already ran for the same inputs is not run again.
                            st.applied = claim.applied
                            request.skip_unchanged = True
                        await self._execute(st, request)
        finally:
            self.maybe_finish(st)

    async def _execute(self, st: TaskRuns, request: Request) -> None:
        st.current = request
        applied = st.applied
        try:
            slot = self.slot(st, request.priority)
            event = await self.executor.execute(st, request, slot)
        except (TaskGoneError, TaskBusyError) as exc:
            fail(request.waiters, exc)
            return
        except Exception as exc:
            log.exception("task %s: unexpected error in its run", st.name)
            fail(request.waiters, exc)
            return
        except BaseException:
            fail(request.waiters, TaskBusyError("the run was stopped"))
            raise
        finally:
            st.current = None
            st.working = False
        if st.applied != applied and self.on_applied is not None:
            self.on_applied(st.name, st.applied)
        if event is not None and not st.provisional:
            self.status.record(event)
            seconds = (event.end_time - event.start_time).total_seconds()
            self.recorder.run_finished(st.name, event.success, seconds)
        resolve(request.waiters, event)

    @contextlib.asynccontextmanager
    async def exclusive(self, st: TaskRuns) -> AsyncIterator[None]:
        """The task's lock, for work done on behalf of a command (API priority: no pool
        slot)."""
        try:
            async with st.lock, self.slot(st, Priority.API)():
                try:
                    yield
                finally:
                    st.working = False
        finally:
            self.maybe_finish(st)

    def free_slot(self) -> AbstractAsyncContextManager[None]:
        """For API work that belongs to no task (a throwaway plan): no pool slot."""
        return _NO_SLOT

    # --- deletion ------------------------------------------------------------------------

    def delete(self, st: TaskRuns) -> None:
        """The task left its files: drop its pending work; hold it as deleting while a
        job of it runs, else forget it now."""
        pending, st.pending = st.pending, None
        if pending is not None:
            fail(pending.waiters, TaskGoneError(f"task {st.name} was deleted"))
        if st.working:
            st.deleting = True
            self.deletions_version += 1
            log.info("task %s: deleted; it leaves once its running job ends", st.name)
        else:
            self._finish_delete(st)

    def undelete(self, st: TaskRuns) -> None:
        """Re-created before the old task's job ended: the old one is gone for good."""
        if st.deleting:
            st.deleting = False
            self.deletions_version += 1
            self.status.forget(st.name)

    def _finish_delete(self, st: TaskRuns) -> None:
        if self.tasks.get(st.name) is not st:
            return
        del self.tasks[st.name]
        if st.deleting:
            st.deleting = False
            self.deletions_version += 1
            log.info("task %s: its job ended; deletion complete", st.name)
        self.status.forget(st.name)
        self.recorder.task_gone(st.name)

    def maybe_finish(self, st: TaskRuns) -> None:
        if st.deleting and not st.working and st.pending is None:
            self._finish_delete(st)

    # --- waiting and stopping ------------------------------------------------------------

    @property
    def active(self) -> int:
        return sum(1 for st in self.tasks.values() if st.active)

    async def idle(self) -> None:
        """Wait until no task has pending or running work (tests, -once mode)."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)

    async def drain(self, grace: float, force: asyncio.Event | None = None) -> None:
        """Stop taking work; give running jobs `grace` seconds (cut short when `force` is
        set), then cancel them, which stops their Terraform process groups."""
        self.closed = True
        for st in self.tasks.values():
            pending, st.pending = st.pending, None
            if pending is not None:
                fail(pending.waiters, TaskBusyError("the daemon is shutting down"))
        running = [w for w in self._workers if not w.done()]
        if running:
            log.info("waiting up to %.0fs for %d running task(s)", grace, len(running))
            await _wait_all(running, grace, force)
            late = [w for w in running if not w.done()]
            for worker in late:
                log.warning("stopping %s: the shutdown grace period is over", worker.get_name())
                worker.cancel()
            await asyncio.gather(*late, return_exceptions=True)


async def _wait_all(
    tasks: list[asyncio.Task[None]], timeout: float, force: asyncio.Event | None
) -> None:
    """Wait until every task is done, `timeout` passes, or `force` is set."""
    forced = asyncio.ensure_future((force or asyncio.Event()).wait())
    # One future for all of them: waiting on thousands of tasks one FIRST_COMPLETED at a
    # time costs O(n) callbacks per finished task. The gather is never cancelled here: the
    # caller cancels whatever is left.
    every: asyncio.Future[list[object]] = asyncio.gather(*tasks, return_exceptions=True)
    waits: set[asyncio.Future[object]] = {every, forced}  # type: ignore[arg-type]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        forced.cancel()
