"""The scheduler: connects the registry and the trigger sources to the run queue.

The registry drives it: a created, changed or moved task gets its workspace
(re)initialised (a no-op when its root module is unchanged) and is shown to every trigger
source; a deleted task is dropped from the sources and the queue at once (the queue holds
it as "deleting" while a job of it still runs). A trigger from any source becomes a
request in the task's queue. The registry itself stays equal to the files (one way in).

The task commands (reconciler.commands) and the daemon's one-shot modes ask it for work
directly: run now, plan, and the reservations that let a task be initialised (and
applied) before its file is written.

Deleting a task never destroys what its module created.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from pathlib import Path

from reconciler._core.errors import DuplicateTaskError, NotFoundError
from reconciler._core.metrics import NULL, Recorder
from reconciler.registry.status import Event, StatusStore
from reconciler.registry.store import LiveTask, Registry, RegistryChange
from reconciler.runner.driver import Driver, Plan, Priority
from reconciler.runner.inputs import Catalog
from reconciler.runner.workspace import Workspaces, holds_state
from reconciler.runs.execute import APPLY_RETRY, DISABLED_PLAN, Executor
from reconciler.runs.queue import Gate, RunQueue
from reconciler.runs.requests import Request, RunState, TaskBusyError, TaskRuns
from reconciler.settings.model import ServiceSettings
from reconciler.taskfiles.model import TaskSpec
from reconciler.triggers.schedule import Clock, CronSource, local_now
from reconciler.triggers.sources import Trigger, TriggerSource

log = logging.getLogger(__name__)

__all__ = ["DISABLED_PLAN", "Request", "RunState", "Scheduler", "TaskBusyError"]


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
        retry_delay: Callable[[int], float] = APPLY_RETRY.delay,
        clock: Clock = local_now,
        eager_init: bool = True,
        sources: Sequence[TriggerSource] | None = None,
        gate: Gate | None = None,
        apply_on_start: str = "changed",
        recorder: Recorder = NULL,
        service_blocks: Sequence[ServiceSettings] = (),
    ) -> None:
        """`eager_init`: initialise a task's workspace as soon as the task appears or
        changes (the daemon); off, workspaces are initialised when first used.
        `sources`: the trigger sources (default: cron schedules). `gate`: asked before
        any job starts (None lets everything through). `apply_on_start`: "changed" (a
        task whose definition and inputs equal its last successful apply is not applied at
        start) or "always" (CTS). `service_blocks`: the deprecated `service` blocks that
        shape the queries of tasks with a `services` list."""
        self.registry = registry
        self.status = status
        self.executor = Executor(
            workspaces,
            driver,
            catalog=catalog,
            retry_delay=retry_delay,
            service_blocks=service_blocks,
        )
        self.queue = RunQueue(self.executor, status, workers=workers, gate=gate, recorder=recorder)
        self.eager_init = eager_init
        self.apply_on_start = apply_on_start
        self.sources: list[TriggerSource] = (
            list(sources) if sources is not None else [CronSource(clock=clock)]
        )
        for source in self.sources:
            source.start(self._fire, self._trigger_error)
        self._stopped = asyncio.Event()
        registry.subscribe(self._on_change)

    @property
    def _tasks(self) -> dict[str, TaskRuns]:
        return self.queue.tasks

    @property
    def deletions_version(self) -> int:
        return self.queue.deletions_version

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

    def _track(self, live: LiveTask) -> None:
        if self.queue.closed:
            return
        for source in self.sources:
            source.track(live)

    def _created(self, live: LiveTask) -> None:
        st = self._tasks.get(live.spec.name)
        if st is not None:
            self.queue.undelete(st)
        else:
            st = self._tasks[live.spec.name] = TaskRuns(live.spec, None)
            # What the task's last successful apply was, across restarts.
            st.applied = self.status.applied_digest(live.spec.name)
        st.adopt(live)
        if self.eager_init:
            self.queue.request(st, Request(init=True))
        self._track(live)

    def _updated(self, old: LiveTask, new: LiveTask) -> None:
        st = self._tasks.get(new.spec.name)
        if st is None:
            self._created(new)
            return
        st.adopt(new)
        enabling = not old.spec.is_enabled and new.spec.is_enabled
        if self.eager_init:
            self.queue.request(st, Request(init=True, force_init=enabling))
        self._track(new)

    def _moved(self, live: LiveTask) -> None:
        st = self._tasks.get(live.spec.name)
        if st is None:
            self._created(live)
            return
        before, revision = st.base_dir, st.revision
        st.adopt(live)
        # A file in another directory changes where a relative module path points; a new
        # revision of the same file (every commit, for git) changes nothing to run, so
        # what was applied is applied at the new revision as well.
        if st.base_dir != before:
            if self.eager_init:
                self.queue.request(st, Request(init=True))
        else:
            self.status.carry_applied(st.name, revision, st.revision)

    def _deleted(self, live: LiveTask) -> None:
        for source in self.sources:
            source.forget(live.spec.name)
        st = self._tasks.get(live.spec.name)
        if st is None:
            self.status.forget(live.spec.name)
            return
        self.queue.delete(st)

    # --- triggers --------------------------------------------------------------------------

    def _fire(self, trigger: Trigger) -> None:
        st = self._tasks.get(trigger.task)
        if st is None or st.deleting or st.provisional or not st.spec.is_enabled:
            return
        if trigger.only_if_changed and st.current is not None and st.current.run:
            # As CTS: a scheduled run that finds the task still running is skipped.
            log.warning(
                "task %s: %s run skipped, the previous run is still active",
                trigger.task,
                trigger.reason,
            )
            return
        self.queue.request(
            st,
            Request(
                run=True,
                retry=trigger.retry,
                only_if_changed=trigger.only_if_changed,
                skip_unchanged=trigger.skip_unchanged
                and not (trigger.start and self.apply_on_start == "always"),
                reason=trigger.reason,
                inputs=trigger.inputs,
            ),
        )

    def _trigger_error(self, name: str, error: str | None) -> None:
        st = self._tasks.get(name)
        if st is not None:
            st.trigger_error = error

    def trigger(self, name: str, *, retry: bool = True) -> bool:
        """Run the task soon (a condition fired). False when there is no such task."""
        st = self._tasks.get(name)
        if st is None or st.provisional or st.deleting:
            return False
        self.queue.request(st, Request(run=True, retry=retry))
        return True

    def trigger_all(
        self,
        *,
        retry: bool = False,
        reason: str = "start",
        everything: bool = False,
        only: Collection[str] | None = None,
    ) -> None:
        """Run every enabled task (or those named in `only`) once (the daemon's start, as
        CTS's once-mode), except the tasks whose first run comes from a trigger source when
        their data arrives (unless `everything`: a new leader runs those too, with the data
        there is now)."""
        for st in list(self._tasks.values()):
            if only is not None and st.name not in only:
                continue
            if not everything and any(source.owns_start(st.spec) for source in self.sources):
                continue
            if st.live is not None and not st.deleting and st.spec.is_enabled:
                request = Request(
                    run=True,
                    retry=retry,
                    reason=reason,
                    skip_unchanged=self.apply_on_start != "always",
                )
                self.queue.request(st, request)

    # --- asked for by the task commands and the daemon ---------------------------------

    def _live(self, name: str) -> TaskRuns:
        st = self._tasks.get(name)
        if st is None or st.provisional or st.deleting:
            raise NotFoundError(f"a task with the name '{name}' does not exist")
        return st

    def _idle(self, name: str, action: str) -> TaskRuns:
        """The live task, for a command that needs it idle (nothing running or queued)."""
        st = self._live(name)
        if st.busy:
            raise TaskBusyError(f"task '{name}' is active and cannot be {action} at this time")
        return st

    async def run_now(self, name: str) -> Event | None:
        """Apply the task now, after anything it is already doing; no retry. The event
        is recorded (for a disabled task: a success without running, as CTS)."""
        st = self._live(name)
        request = Request(
            init=True, run=True, record_disabled=True, reason="run=now", priority=Priority.API
        )
        return await self.queue.wait_for(st, request)

    async def inspect(self, name: str, *, enabled: bool | None = None) -> Plan:
        """Plan the task as it is (or as it would be with `enabled`), changing nothing."""
        st = self._idle(name, "updated")
        if not (st.spec.is_enabled if enabled is None else enabled):
            return Plan(False, DISABLED_PLAN)
        async with self.queue.exclusive(st):
            return await self.executor.plan(st)

    async def destroy(self, name: str, remove: Callable[[], Awaitable[None]]) -> None:
        """Destroy what the task built, then `remove` it (its file change), then its
        workspace and state: under the task's lock throughout, so that no run can build
        anything again in between. A failed destroy raises and removes nothing."""
        st = self._idle(name, "deleted")
        directory = self.executor.workspaces.directory_for(st.spec, st.base_dir)
        async with self.queue.exclusive(st):
            await self.executor.destroy(st)
            await remove()
        if name not in self._tasks or self._tasks[name] is not st:
            await asyncio.to_thread(shutil.rmtree, directory, True)

    async def plan_destroy(self, name: str) -> Plan:
        """What destroying the task would remove; changes nothing."""
        st = self._idle(name, "deleted")
        async with self.queue.exclusive(st):
            plan = await self.executor.destroy(st, plan_only=True)
        assert plan is not None
        return plan

    async def inspect_update(self, name: str, new: TaskSpec) -> Plan:
        """Plan the task as the definition `new` would make it, changing nothing."""
        st = self._idle(name, "updated")
        async with self.queue.exclusive(st):
            return await self.executor.plan_update(st, new)

    def _reserve(self, spec: TaskSpec, base_dir: Path | None) -> TaskRuns:
        """Claim the name for a task being created (the claim, not a second check: a
        command running concurrently may have claimed it since it checked)."""
        if spec.name in self._tasks:
            raise DuplicateTaskError(f"task with name {spec.name} already exists")
        st = self._tasks[spec.name] = TaskRuns(spec, base_dir, provisional=True)
        directory = self.executor.workspaces.directory_for(spec, base_dir)
        if not directory.exists():
            st.fresh_workspace = directory
        return st

    def release(self, name: str) -> None:
        """Forget a task reserved by `prepare`/`create_run` whose file was not written, and
        the workspace it made, unless Terraform wrote state there (an apply that failed
        half-way: the state is what knows the resources it made)."""
        st = self._tasks.get(name)
        if st is None or not st.provisional:
            return
        del self._tasks[name]
        directory = st.fresh_workspace
        if directory is not None and not holds_state(directory):
            shutil.rmtree(directory, ignore_errors=True)

    async def prepare(self, spec: TaskSpec, base_dir: Path | None) -> None:
        """Initialise a task that is about to be created: its workspace is ready and
        validated before its file is written. Raises RunError; call `release` if the
        file is then not written."""
        st = self._reserve(spec, base_dir)
        try:
            async with self.queue.exclusive(st):
                await self.executor.ensure_init(
                    st, await self.executor.workspace(st), priority=Priority.API
                )
        except BaseException:
            self.release(spec.name)
            raise

    async def create_run(self, spec: TaskSpec, base_dir: Path | None) -> Event | None:
        """Initialise and apply a task that is about to be created, no retry. A failed
        init raises (RunError, ModuleError for the module's own problems), as `prepare`;
        the apply's event is returned, not recorded: it belongs to the task only once its
        file is written (then `record` it). On failure `release` the name."""
        st = self._reserve(spec, base_dir)
        try:
            async with st.lock:
                try:
                    slot = self.queue.slot(st, Priority.API)
                    async with slot():
                        await self.executor.ensure_init(
                            st, await self.executor.workspace(st), priority=Priority.API
                        )
                    request = Request(run=True, priority=Priority.API)
                    return await self.executor.execute(st, request, slot)
                finally:
                    st.working = False
        except BaseException:
            self.release(spec.name)
            raise

    def record(self, event: Event, revision: str | None = None) -> None:
        """Record an event of `create_run` once the task's file exists; `revision`: the
        revision the file was written at (the run applied exactly that definition)."""
        if revision is not None:
            event = dataclasses.replace(event, revision=revision)
        self.status.record(event)

    async def inspect_new(self, spec: TaskSpec, base_dir: Path | None) -> Plan:
        """Plan a task that does not exist in a throwaway workspace: nothing of it
        remains afterwards."""
        return await self.executor.plan_new(spec, base_dir, self.queue.free_slot)

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
        return RunState(st.active, st.deleting, st.init_error or st.trigger_error)

    def schedules(self) -> dict[str, str]:
        """Task name -> cron expression of every running schedule."""
        out: dict[str, str] = {}
        for source in self.sources:
            if isinstance(source, CronSource):
                out.update(source.watching())
        return out

    def waiting_on(self, name: str) -> dict[str, Mapping[str, object]]:
        """Source name -> what the task waits on there (its status)."""
        out: dict[str, Mapping[str, object]] = {}
        for source in self.sources:
            described = source.describe(name)
            if described is not None:
                out[source.name] = described
        return out

    def adopt_applied(self, applied: Mapping[str, str]) -> int:
        """What the cluster last applied, task by task (a new leader learns it from etcd):
        a task whose definition and inputs are unchanged since is not applied again.
        Returns how many tasks it concerned."""
        count = 0
        for name, digest in applied.items():
            st = self._tasks.get(name)
            if st is not None and not st.provisional:
                st.applied = digest
                count += 1
        return count

    def resize(self, workers: int) -> None:
        """At most `workers` Terraform runs at once from now on (a reload)."""
        self.queue.resize(workers)

    def progress(self) -> dict[str, int]:
        """How far the tasks are (a start-up of many tasks runs in the background):
        initialised since start, applied (now or at an earlier start), and with work
        queued or running."""
        out = {"tasks": 0, "initialised": 0, "applied": 0, "pending": 0, "init_errors": 0}
        for st in self._tasks.values():
            if st.provisional or st.deleting:
                continue
            out["tasks"] += 1
            out["initialised"] += st.initialized
            out["applied"] += st.applied is not None
            out["pending"] += st.pending is not None or st.current is not None
            out["init_errors"] += st.init_error is not None
        return out

    def busy(self, name: str) -> bool:
        st = self._tasks.get(name)
        return st is not None and st.busy

    @property
    def active(self) -> int:
        return self.queue.active

    async def idle(self) -> None:
        """Wait until no task has pending or running work (tests, -once mode)."""
        await self.queue.idle()

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self, *, run_all: bool = True) -> None:
        """The daemon's root task: run every enabled task once (as CTS does at start),
        then keep the trigger sources going until shutdown."""
        if run_all:
            self.trigger_all(retry=False)
        await self._stopped.wait()

    async def shutdown(self, grace: float, force: asyncio.Event | None = None) -> None:
        """Stop the trigger sources and the queue (running jobs get `grace` seconds)."""
        self._stopped.set()
        self.queue.closed = True
        self.executor.stopping.set()
        await asyncio.gather(*(source.close() for source in self.sources))
        await self.queue.drain(grace, force)
        await self.status.flush()
