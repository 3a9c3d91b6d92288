"""The Terraform work of one request: initialise the workspace, apply with retries, plan.

Each Terraform step holds a slot of the global pool, taken through `slot` after the
task's own lock (the run queue's order): a task that waits for its own lock never holds a
slot, and the backoff sleep between retries of a failed apply gives its slot back, so a
failing task cannot starve the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from pathlib import Path

from reconciler._core.backoff import Backoff, Spread
from reconciler._core.errors import ReconcilerError
from reconciler.registry.status import Event, EventConfig, now
from reconciler.runner.driver import Driver, Plan, Priority, RunError
from reconciler.runner.inputs import (
    Catalog,
    EmptyCatalog,
    InputsError,
    ModuleInputs,
    gather_inputs,
)
from reconciler.runner.workspace import Workspace, Workspaces, copy_local_state
from reconciler.runs.requests import Request, TaskBusyError, TaskRuns
from reconciler.settings.model import ServiceSettings
from reconciler.taskfiles.model import TaskSpec

# The scheduler's logger: a task's run is logged under one name whichever module does it.
log = logging.getLogger("reconciler.runs.scheduler")

# CTS retries a triggered apply twice (controller/daemon.go), after 1 s and 2 s, each up to
# 50% longer so that the retries of many tasks that failed together spread out.
APPLY_RETRY = Backoff(first=1.0, cap=math.inf, jitter=0.5, spread=Spread.ABOVE, retries=2)
DISABLED_PLAN = "Task is disabled, inspection was skipped."

Slot = Callable[[], AbstractAsyncContextManager[None]]


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class Executor:
    def __init__(
        self,
        workspaces: Workspaces,
        driver: Driver,
        *,
        catalog: Catalog | None = None,
        retry_delay: Callable[[int], float] = APPLY_RETRY.delay,
        service_blocks: Sequence[ServiceSettings] = (),
    ) -> None:
        """`retry_delay(n)`: the wait before retrying an apply that failed n times in a
        row."""
        self.workspaces = workspaces
        self.driver = driver
        self.catalog: Catalog = catalog or EmptyCatalog()
        self.service_blocks = tuple(service_blocks)
        self.retry_delay = retry_delay
        # Set when the daemon stops: a run waiting to retry ends with the failure it has.
        self.stopping = asyncio.Event()

    async def workspace(self, st: TaskRuns) -> Workspace:
        """The task's workspace, its state placed (raises StateError)."""
        return await self.workspaces.prepare(st.spec, st.base_dir)

    async def ensure_init(
        self,
        st: TaskRuns,
        ws: Workspace,
        *,
        force: bool = False,
        priority: Priority = Priority.BACKGROUND,
    ) -> None:
        """Write the root module and init it unless it is initialised as it is. The
        caller holds a slot."""
        identity = self.driver.identity
        try:
            ws.write()
            if force or not ws.is_initialized(identity):
                ws.forget_initialized()
                await self.driver.init(ws, priority=priority)
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
        st.initialized = True

    def event(
        self, st: TaskRuns, spec: TaskSpec, start: datetime, error: str | None, *, ran: bool
    ) -> Event:
        """`ran`: the definition was applied (or found applied); a disabled task's event
        applies nothing, so it names no revision."""
        return Event(
            task_name=spec.name,
            success=error is None,
            start_time=start,
            end_time=now(),
            error=error,
            config=EventConfig(
                tuple(spec.providers or ()), tuple(spec.services or ()), spec.module or ""
            ),
            revision=st.revision if ran else "",
        )

    async def _inputs(self, spec: TaskSpec, given: ModuleInputs | None) -> ModuleInputs:
        if given is not None:
            return given
        return await gather_inputs(spec, self.catalog, self.service_blocks)

    async def execute(self, st: TaskRuns, request: Request, slot: Slot) -> Event | None:
        """Do what the request asks; the caller holds the task's lock."""
        spec = st.spec
        async with slot():
            # The run starts when it has its slot: time queued behind other tasks' runs is
            # not the run's own duration.
            started = now()
            try:
                ws = await self.workspace(st)
                await self.ensure_init(st, ws, force=request.force_init, priority=request.priority)
            except ReconcilerError as exc:
                if not isinstance(exc, RunError):
                    st.init_error = exc.message
                    log.error("task %s: %s", st.name, exc.message)
                if request.run and (spec.is_enabled or request.record_disabled):
                    return self.event(st, spec, started, exc.message, ran=spec.is_enabled)
                return None
            if not request.run:
                return None
            if not spec.is_enabled:
                if request.record_disabled:
                    return self.event(st, spec, started, None, ran=False)
                return None
            try:
                inputs = await self._inputs(spec, request.inputs)
            except InputsError as exc:
                log.error("task %s: %s", st.name, exc.message)
                return self.event(st, spec, started, exc.message, ran=True)
            digest = _digest(
                ws.digest(self.driver.identity),
                ws.write_inputs(inputs),
                # Off the loop: it reads the module's files, which may be many or hostile.
                await asyncio.to_thread(ws.module_digest),
                ws.secret_digest,
            )
            if request.only_if_changed and st.applied == digest:
                return self.event(st, spec, started, None, ran=True)
            if request.skip_unchanged and st.applied == digest:
                log.info(
                    "task %s: %s: nothing changed since its last apply, not run",
                    st.name,
                    request.reason or "triggered",
                )
                return None
            attempts = 1 + (APPLY_RETRY.retries if request.retry else 0)
            error = await self._apply(st, ws, 0, attempts, request.priority)
        for attempt in range(1, attempts):
            if error is None:
                break
            # The slot is free while waiting: other tasks run meanwhile.
            if not await self._backoff(self.retry_delay(attempt)):
                break
            try:
                async with slot():
                    error = await self._apply(st, ws, attempt, attempts, request.priority)
            except TaskBusyError:  # the daemon stops: the failure so far is the result
                break
        if error is None:
            st.applied = digest
            log.info("task %s: applied (%s)", st.name, request.reason or "requested")
        else:
            st.applied = None
        event = self.event(st, spec, started, error, ran=True)
        return dataclasses.replace(event, digest=digest) if error is None else event

    async def _backoff(self, delay: float) -> bool:
        """Wait `delay` seconds before a retry; False when the daemon stops meanwhile."""
        try:
            async with asyncio.timeout(delay):
                await self.stopping.wait()
        except TimeoutError:
            return True
        return False

    async def _apply(
        self, st: TaskRuns, ws: Workspace, attempt: int, of: int, priority: Priority
    ) -> str | None:
        try:
            await self.driver.apply(ws, priority=priority)
        except RunError as exc:
            log.error("task %s: apply failed (attempt %d of %d)", st.name, attempt + 1, of)
            return exc.message
        return None

    async def plan(self, st: TaskRuns) -> Plan:
        """Plan the task as it is (for a command: API priority); the caller holds its
        lock."""
        ws = await self.workspace(st)
        await self.ensure_init(st, ws, priority=Priority.API)
        ws.write_inputs(await gather_inputs(st.spec, self.catalog, self.service_blocks))
        return await self.driver.plan(ws, priority=Priority.API)

    async def destroy(self, st: TaskRuns, *, plan_only: bool = False) -> Plan | None:
        """`terraform destroy` in the task's workspace (with plan_only: the destroy plan,
        changing nothing); the caller holds its lock. Raises RunError."""
        ws = await self.workspace(st)
        await self.ensure_init(st, ws, priority=Priority.API)
        ws.write_inputs(await gather_inputs(st.spec, self.catalog, self.service_blocks))
        if plan_only:
            return await self.driver.plan_destroy(ws, priority=Priority.API)
        await self.driver.destroy(ws, priority=Priority.API)
        st.applied = None
        log.info("task %s: destroyed what it built", st.name)
        return None

    async def plan_update(self, st: TaskRuns, new: TaskSpec) -> Plan:
        """Plan the task as `new` would make it, against its current state, in a
        throwaway workspace: its own workspace, files and state stay as they are. The
        caller holds its lock."""
        if not new.is_enabled:
            return Plan(False, DISABLED_PLAN)
        live = await self.workspace(st)
        ws = await self.workspaces.prepare(new, st.base_dir, throwaway=True)
        try:
            ws.write()
            # A local state is copied in (a backend such as Consul is read where it is).
            await asyncio.to_thread(copy_local_state, live.directory, ws.directory)
            await self.driver.init(ws, priority=Priority.API)
            ws.write_inputs(await gather_inputs(new, self.catalog, self.service_blocks))
            return await self.driver.plan(ws, priority=Priority.API)
        finally:
            await asyncio.to_thread(ws.remove)

    async def plan_new(self, spec: TaskSpec, base_dir: Path | None, slot: Slot) -> Plan:
        """Plan a task that does not exist in a throwaway workspace: nothing of it remains
        afterwards."""
        if not spec.is_enabled:
            return Plan(False, DISABLED_PLAN)
        ws = await self.workspaces.prepare(spec, base_dir, throwaway=True)
        try:
            async with slot():
                ws.write()
                await self.driver.init(ws, priority=Priority.API)
                ws.write_inputs(await gather_inputs(spec, self.catalog, self.service_blocks))
                return await self.driver.plan(ws, priority=Priority.API)
        finally:
            await asyncio.to_thread(ws.remove)
