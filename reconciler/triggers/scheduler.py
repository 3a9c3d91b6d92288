"""When tasks run: one queue and worker per task, a global cap on concurrent Terraform.

kopf-style: each task has at most one pending request and at most one worker. Requests that
arrive while the task is busy are merged into the pending one (the latest definition and
data win, nothing is lost: CTS issue 732), and the worker takes it once the current job
ends. Every job holds a slot of a pool of `workers` (default 4) and the task's own lock, so
a task never runs twice at once and at most `workers` Terraform jobs run at all.

The registry drives it: a created, changed or moved task gets its workspace (re)initialised
(a no-op when its root module is unchanged); a deleted task loses its pending work and
schedule at once, but while a job of it is still running it is held here as "deleting":
the API keeps showing it until the job ends, then it and its events are gone. The registry
itself stays equal to the files (one way in): the hold lives where the running job is.

Deleting a task never destroys what its module created.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from reconciler._core.errors import ConflictError, NotFoundError, ReconcilerError
from reconciler.config.model import ScheduleCondition, TaskSpec
from reconciler.registry.status import Event, EventConfig, StatusStore, now
from reconciler.registry.store import LiveTask, Registry, RegistryChange
from reconciler.runner.driver import Driver, Plan, RunError
from reconciler.runner.inputs import Catalog, EmptyCatalog, gather_inputs
from reconciler.runner.workspace import Workspace, Workspaces
from reconciler.triggers.schedule import Clock, local_now, run_schedule

log = logging.getLogger(__name__)

TRIGGERED_RETRIES = 2  # CTS retries a triggered apply twice (controller/daemon.go)
DISABLED_PLAN = "Task is disabled, inspection was skipped."


class TaskBusyError(ConflictError):
    reason = "TaskActive"


class TaskGoneError(NotFoundError):
    reason = "TaskDeleted"


def exponential_backoff(attempt: int) -> float:
    """1 s, 2 s, ... with up to 50% random extra so that retries of many tasks spread."""
    return float(2**attempt) * random.uniform(1.0, 1.5)


@dataclass
class Request:
    """Work asked of a task; requests for the same task merge into one."""

    init: bool = False
    force_init: bool = False  # init even when the root module did not change (enable)
    run: bool = False
    retry: bool = False
    only_if_changed: bool = False  # schedule ticks: apply only if inputs changed
    record_disabled: bool = False  # record an event even when the task is disabled
    waiters: list[asyncio.Future[Event | None]] = field(default_factory=list)

    def merge(self, other: Request) -> None:
        self.init |= other.init
        self.force_init |= other.force_init
        if other.run:
            self.only_if_changed = other.only_if_changed and (self.only_if_changed or not self.run)
            self.run = True
            self.retry |= other.retry
            self.record_disabled |= other.record_disabled
        self.waiters.extend(other.waiters)


@dataclass
class TaskRuns:
    """What the scheduler keeps per task."""

    spec: TaskSpec
    base_dir: Path | None
    live: LiveTask | None = None  # None while provisional
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: Request | None = None
    current: Request | None = None  # what the worker is doing now
    worker: asyncio.Task[None] | None = None
    deleting: bool = False
    # Created by the API before its file exists (POST): not visible, not triggered.
    provisional: bool = False
    init_error: str | None = None
    applied: str | None = None  # digest of the inputs of the last successful apply
    cron: asyncio.Task[None] | None = None
    cron_expr: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def active(self) -> bool:
        """Terraform work (init, plan or apply) is in progress."""
        return self.lock.locked()

    @property
    def busy(self) -> bool:
        """A run is in progress or queued. Initialising alone does not count: requests
        that must not overlap it simply wait for the task's lock."""
        return any(r is not None and r.run for r in (self.current, self.pending))

    def adopt(self, live: LiveTask) -> None:
        self.live = live
        self.spec = live.spec
        self.base_dir = Path(live.provenance.path).parent if live.provenance.path else None
        self.provisional = False


@dataclass(frozen=True)
class RunState:
    """What the status API shows about a task's runs."""

    active: bool = False
    deleting: bool = False
    init_error: str | None = None


def _resolve(waiters: Iterable[asyncio.Future[Event | None]], event: Event | None) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(event)


def _fail(waiters: Iterable[asyncio.Future[Event | None]], exc: BaseException) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_exception(exc)


class Scheduler:
    def __init__(
        self,
        registry: Registry,
        status: StatusStore,
        workspaces: Workspaces,
        driver: Driver,
        *,
        catalog: Catalog | None = None,
        workers: int = 4,
        retry_delay: Callable[[int], float] = exponential_backoff,
        clock: Clock = local_now,
        eager_init: bool = True,
    ) -> None:
        """`eager_init`: initialise a task's workspace as soon as the task appears or
        changes (the daemon); off, workspaces are initialised when first used."""
        self.registry = registry
        self.status = status
        self.workspaces = workspaces
        self.driver = driver
        self.catalog: Catalog = catalog or EmptyCatalog()
        self.workers = workers
        self.retry_delay = retry_delay
        self.clock = clock
        self.eager_init = eager_init
        self._stopped = asyncio.Event()
        self._pool = asyncio.Semaphore(workers)
        self._tasks: dict[str, TaskRuns] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.deletions_version = 0  # bumped when the set of deleting tasks changes
        registry.subscribe(self._on_change)

    # --- registry changes ------------------------------------------------------------------

    def _on_change(self, change: RegistryChange) -> None:
        for live in change.deleted:
            self._deleted(live)
        for live in change.created:
            self._created(live)
        for old, new in change.updated:
            self._updated(old, new)
        for live in change.moved:
            self._moved(live)

    def _created(self, live: LiveTask) -> None:
        st = self._tasks.get(live.spec.name)
        if st is not None and st.deleting:
            # Re-created before the old task's job ended: the old one is gone for good.
            st.deleting = False
            self.deletions_version += 1
            self.status.forget(st.name)
        if st is None:
            st = self._tasks[live.spec.name] = TaskRuns(live.spec, None)
        st.adopt(live)
        if self.eager_init:
            self._request(st, Request(init=True))
        self._sync_schedule(st)

    def _updated(self, old: LiveTask, new: LiveTask) -> None:
        st = self._tasks.get(new.spec.name)
        if st is None:
            self._created(new)
            return
        st.adopt(new)
        enabling = not old.spec.is_enabled and new.spec.is_enabled
        if self.eager_init:
            self._request(st, Request(init=True, force_init=enabling))
        self._sync_schedule(st)

    def _moved(self, live: LiveTask) -> None:
        st = self._tasks.get(live.spec.name)
        if st is None:
            self._created(live)
            return
        before = st.base_dir
        st.adopt(live)
        # A file in another directory changes where a relative module path points; a new
        # revision of the same file (every commit, for git) changes nothing to run.
        if self.eager_init and st.base_dir != before:
            self._request(st, Request(init=True))

    def _deleted(self, live: LiveTask) -> None:
        st = self._tasks.get(live.spec.name)
        if st is None:
            self.status.forget(live.spec.name)
            return
        self._stop_schedule(st)
        pending, st.pending = st.pending, None
        if pending is not None:
            _fail(pending.waiters, TaskGoneError(f"task {st.name} was deleted"))
        if st.active:
            st.deleting = True
            self.deletions_version += 1
            log.info("task %s: deleted; it leaves once its running job ends", st.name)
        else:
            self._finish_delete(st)

    def _finish_delete(self, st: TaskRuns) -> None:
        if self._tasks.get(st.name) is not st:
            return
        del self._tasks[st.name]
        if st.deleting:
            st.deleting = False
            self.deletions_version += 1
            log.info("task %s: its job ended; deletion complete", st.name)
        self.status.forget(st.name)

    def _maybe_finish(self, st: TaskRuns) -> None:
        if st.deleting and not st.active and st.pending is None:
            self._finish_delete(st)

    # --- schedules -------------------------------------------------------------------------

    def _sync_schedule(self, st: TaskRuns) -> None:
        c = st.spec.condition
        expr = c.cron if isinstance(c, ScheduleCondition) else None
        if expr == st.cron_expr and (expr is None or (st.cron and not st.cron.done())):
            return
        self._stop_schedule(st)
        if expr and not self._closed:
            name = st.name
            st.cron_expr = expr
            st.cron = asyncio.get_running_loop().create_task(
                run_schedule(name, expr, lambda: self._tick(name), clock=self.clock),
                name=f"schedule:{name}",
            )

    def _stop_schedule(self, st: TaskRuns) -> None:
        if st.cron is not None:
            st.cron.cancel()
        st.cron = None
        st.cron_expr = None

    def _tick(self, name: str) -> None:
        st = self._tasks.get(name)
        if st is None or st.deleting or st.provisional or not st.spec.is_enabled:
            return
        if st.current is not None and st.current.run:
            # As CTS: a scheduled run that finds the task still running is skipped.
            log.warning("task %s: scheduled run skipped, the previous run is still active", name)
            return
        self._request(st, Request(run=True, retry=True, only_if_changed=True))

    # --- requests and workers --------------------------------------------------------------

    def _request(self, st: TaskRuns, request: Request) -> None:
        if self._closed:
            _fail(request.waiters, TaskBusyError("the daemon is shutting down"))
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

    async def _work(self, st: TaskRuns) -> None:
        try:
            while st.pending is not None and not self._closed:
                async with self._pool, st.lock:
                    request, st.pending = st.pending, None
                    if request is None or st.deleting:
                        break
                    st.current = request
                    try:
                        event = await self._execute(st, request)
                    except Exception as exc:
                        log.exception("task %s: unexpected error in its run", st.name)
                        _fail(request.waiters, exc)
                        continue
                    except BaseException:
                        _fail(request.waiters, TaskBusyError("the run was stopped"))
                        raise
                    finally:
                        st.current = None
                    if event is not None and not st.provisional:
                        self.status.record(event)
                    _resolve(request.waiters, event)
        finally:
            self._maybe_finish(st)

    @contextlib.asynccontextmanager
    async def _exclusive(self, st: TaskRuns) -> AsyncIterator[None]:
        """A pool slot and the task's lock, for work done on behalf of an API request."""
        try:
            async with self._pool, st.lock:
                if st.deleting or self._tasks.get(st.name) is not st:
                    raise TaskGoneError(f"task {st.name} was deleted")
                yield
        finally:
            self._maybe_finish(st)

    # --- the work --------------------------------------------------------------------------

    def _workspace(self, st: TaskRuns) -> Workspace:
        return self.workspaces.for_task(st.spec, st.base_dir)

    async def _ensure_init(self, st: TaskRuns, ws: Workspace, *, force: bool = False) -> None:
        """Write the root module and init it unless it is initialised as it is."""
        identity = self.driver.identity
        try:
            ws.write()
            if force or not ws.is_initialized(identity):
                ws.forget_initialized()
                await self.driver.init(ws)
                ws.mark_initialized(identity)
        except RunError as exc:
            st.init_error = exc.message
            log.error("task %s: %s", st.name, exc.message)
            raise
        except OSError as exc:
            st.init_error = f"workspace {ws.directory} cannot be written: {exc}"
            log.error("task %s: %s", st.name, st.init_error)
            raise RunError(st.init_error) from None
        st.init_error = None

    def _event(self, spec: TaskSpec, start: datetime, error: str | None) -> Event:
        return Event(
            task_name=spec.name,
            success=error is None,
            start_time=start,
            end_time=now(),
            error=error,
            config=EventConfig(
                tuple(spec.providers or ()), tuple(spec.services or ()), spec.module or ""
            ),
        )

    async def _execute(self, st: TaskRuns, request: Request) -> Event | None:
        spec = st.spec
        started = now()
        try:
            ws = self._workspace(st)
            await self._ensure_init(st, ws, force=request.force_init)
        except ReconcilerError as exc:
            if not isinstance(exc, RunError):
                st.init_error = exc.message
                log.error("task %s: %s", st.name, exc.message)
            if request.run and (spec.is_enabled or request.record_disabled):
                return self._event(spec, started, exc.message)
            return None
        if not request.run:
            return None
        if not spec.is_enabled:
            return self._event(spec, started, None) if request.record_disabled else None
        inputs = await gather_inputs(spec, self.catalog)
        digest = ws.digest(self.driver.identity) + ws.write_inputs(inputs)
        if request.only_if_changed and st.applied == digest:
            return self._event(spec, started, None)
        attempts = 1 + (TRIGGERED_RETRIES if request.retry else 0)
        error: str | None = None
        for attempt in range(attempts):
            try:
                await self.driver.apply(ws)
            except RunError as exc:
                error = exc.message
                log.error(
                    "task %s: apply failed (attempt %d of %d)", st.name, attempt + 1, attempts
                )
                if attempt + 1 < attempts:
                    await asyncio.sleep(self.retry_delay(attempt))
            else:
                error = None
                break
        if error is None:
            st.applied = digest
            log.info("task %s: applied", st.name)
        return self._event(spec, started, error)

    # --- asked for by the daemon and the API -----------------------------------------------

    def _live(self, name: str) -> TaskRuns:
        st = self._tasks.get(name)
        if st is None or st.provisional or st.deleting:
            raise NotFoundError(f"a task with the name '{name}' does not exist")
        return st

    def trigger(self, name: str, *, retry: bool = True) -> bool:
        """Run the task soon (a condition fired). False when there is no such task."""
        st = self._tasks.get(name)
        if st is None or st.provisional or st.deleting:
            return False
        self._request(st, Request(run=True, retry=retry))
        return True

    def trigger_all(self, *, retry: bool = False) -> None:
        """Run every enabled task once (the daemon's start, as CTS's once-mode)."""
        for st in list(self._tasks.values()):
            if st.live is not None and not st.deleting and st.spec.is_enabled:
                self._request(st, Request(run=True, retry=retry))

    async def run_now(self, name: str) -> Event | None:
        """Apply the task now, after anything it is already doing; no retry. The event
        is recorded (for a disabled task: a success without running, as CTS)."""
        st = self._live(name)
        fut: asyncio.Future[Event | None] = asyncio.get_running_loop().create_future()
        self._request(st, Request(init=True, run=True, record_disabled=True, waiters=[fut]))
        return await fut

    async def inspect(self, name: str, *, enabled: bool | None = None) -> Plan:
        """Plan the task as it is (or as it would be with `enabled`), changing nothing."""
        st = self._live(name)
        if st.busy:
            raise TaskBusyError(f"task '{name}' is active and cannot be updated at this time")
        if not (st.spec.is_enabled if enabled is None else enabled):
            return Plan(False, DISABLED_PLAN)
        async with self._exclusive(st):
            ws = self._workspace(st)
            await self._ensure_init(st, ws)
            ws.write_inputs(await gather_inputs(st.spec, self.catalog))
            return await self.driver.plan(ws)

    def _reserve(self, spec: TaskSpec, base_dir: Path | None) -> TaskRuns:
        if spec.name in self._tasks:
            raise TaskBusyError(f"task with name {spec.name} already exists")
        st = self._tasks[spec.name] = TaskRuns(spec, base_dir, provisional=True)
        return st

    def release(self, name: str) -> None:
        """Forget a task reserved by `prepare`/`create_run` whose file was not written."""
        st = self._tasks.get(name)
        if st is not None and st.provisional:
            del self._tasks[name]

    async def prepare(self, spec: TaskSpec, base_dir: Path | None) -> None:
        """Initialise a task that is about to be created (POST): its workspace is ready
        and validated before its file is written. Raises RunError; call `release` if the
        file is then not written."""
        st = self._reserve(spec, base_dir)
        try:
            async with self._exclusive(st):
                await self._ensure_init(st, self._workspace(st))
        except BaseException:
            self.release(spec.name)
            raise

    async def create_run(self, spec: TaskSpec, base_dir: Path | None) -> Event | None:
        """Initialise and apply a task that is about to be created (POST ?run=now), no
        retry. The event is returned, not recorded: it belongs to the task only once its
        file is written (then `record` it); on failure `release` the name."""
        st = self._reserve(spec, base_dir)
        try:
            async with self._exclusive(st):
                return await self._execute(st, Request(init=True, run=True))
        except BaseException:
            self.release(spec.name)
            raise

    def record(self, event: Event) -> None:
        self.status.record(event)

    async def inspect_new(self, spec: TaskSpec, base_dir: Path | None) -> Plan:
        """Plan a task that does not exist (POST ?run=inspect) in a throwaway workspace:
        nothing of it remains afterwards."""
        if not spec.is_enabled:
            return Plan(False, DISABLED_PLAN)
        ws = self.workspaces.for_task(spec, base_dir, throwaway=True)
        try:
            async with self._pool:
                ws.write()
                await self.driver.init(ws)
                ws.write_inputs(await gather_inputs(spec, self.catalog))
                return await self.driver.plan(ws)
        finally:
            await asyncio.to_thread(ws.remove)

    # --- views -----------------------------------------------------------------------------

    def deleting(self, name: str) -> LiveTask | None:
        st = self._tasks.get(name)
        return st.live if st is not None and st.deleting else None

    def deleting_tasks(self) -> list[LiveTask]:
        return [st.live for st in self._tasks.values() if st.deleting and st.live is not None]

    def known(self, name: str) -> bool:
        """The name is taken: a task, one being deleted, or one being created."""
        return name in self._tasks

    def state(self, name: str) -> RunState:
        st = self._tasks.get(name)
        if st is None:
            return RunState()
        return RunState(st.active, st.deleting, st.init_error)

    def schedules(self) -> dict[str, str]:
        """Task name -> cron expression of every running schedule."""
        return {
            name: st.cron_expr
            for name, st in self._tasks.items()
            if st.cron is not None and not st.cron.done() and st.cron_expr
        }

    def busy(self, name: str) -> bool:
        st = self._tasks.get(name)
        return st is not None and st.busy

    @property
    def active(self) -> int:
        return sum(1 for st in self._tasks.values() if st.active)

    async def idle(self) -> None:
        """Wait until no task has pending or running work (tests, -once mode)."""
        while self._workers:
            await asyncio.gather(*list(self._workers), return_exceptions=True)

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, *, run_all: bool = True) -> None:
        """The daemon's root task: run every enabled task once (as CTS does at start),
        then keep the schedules going until shutdown."""
        if run_all:
            self.trigger_all(retry=False)
        await self._stopped.wait()

    async def shutdown(self, grace: float, force: asyncio.Event | None = None) -> None:
        """Stop taking work; give running jobs `grace` seconds (cut short when `force` is
        set), then cancel them, which stops their Terraform process groups."""
        self._closed = True
        self._stopped.set()
        crons = [st.cron for st in self._tasks.values() if st.cron is not None]
        for st in self._tasks.values():
            self._stop_schedule(st)
            pending, st.pending = st.pending, None
            if pending is not None:
                _fail(pending.waiters, TaskBusyError("the daemon is shutting down"))
        running = [w for w in self._workers if not w.done()]
        if running:
            log.info("waiting up to %.0fs for %d running task(s)", grace, len(running))
            await _wait_all(running, grace, force)
            late = [w for w in running if not w.done()]
            for worker in late:
                log.warning("stopping %s: the shutdown grace period is over", worker.get_name())
                worker.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await asyncio.gather(*crons, return_exceptions=True)
        await self.status.flush()


async def _wait_all(
    tasks: list[asyncio.Task[None]], timeout: float, force: asyncio.Event | None
) -> None:
    """Wait until every task is done, `timeout` passes, or `force` is set."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    forced = asyncio.ensure_future((force or asyncio.Event()).wait())
    try:
        pending = set(tasks)
        while pending and not forced.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            done, _ = await asyncio.wait(
                [*pending, forced], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            pending -= done
    finally:
        forced.cancel()
