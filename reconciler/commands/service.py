"""Task commands, sequenced once: validate -> reserve -> init/apply -> write back ->
reconcile -> record.

One way in still holds: a command never edits the registry. It prepares what the task
will need (its workspace initialised and validated, for `run=now` applied), then writes
the task's file through WriteBack, whose reconcile of that file is what makes the task
live. Whatever fails before the write leaves nothing behind: the name is reserved in the
scheduler only for the duration of the command.

Every failure is a ReconcilerError subclass with a reason (reconciler.commands.errors,
and the errors of write-back, the scheduler and the runner); the caller maps classes to
its own answers. A `gate` (high-availability leadership) is asked before each command
changes anything: it returns None to allow, or the reason it refuses.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler._core.errors import (
    DuplicateTaskError,
    InvalidTaskError,
    NotFoundError,
    ReconcilerError,
)
from reconciler.commands.errors import (
    ForbiddenError,
    InspectFailedError,
    NotAllowedNowError,
    RunFailedError,
    RunsUnavailableError,
    TaskNotFoundError,
)
from reconciler.commands.policy import ApiTaskPolicy
from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.writeback import WriteBack
from reconciler.registry.status import Event, StatusStore
from reconciler.registry.store import LiveTask, Registry
from reconciler.runner.driver import Plan, RunError
from reconciler.runs.scheduler import Scheduler, TaskBusyError
from reconciler.taskfiles.model import TaskSpec
from reconciler.taskfiles.validate import validate_task

log = logging.getLogger(__name__)

# None: go ahead; a string: why this instance must not change anything now.
Gate = Callable[[], str | None]
RUN_OPTIONS = ("now", "inspect")


@dataclass(frozen=True)
class CreateResult:
    """A created task (`live`), or for run=inspect the plan of a task that was not
    created (`live` None)."""

    spec: TaskSpec
    live: LiveTask | None = None
    plan: Plan | None = None


def validation_message(spec: TaskSpec) -> str | None:
    """File validation's messages for this task, without file and line, or None."""
    invalid = validate_task(spec)
    if not invalid:
        return None
    label = f'task "{spec.name}"' if spec.name else "task"
    return "; ".join(": ".join([label, *inv.where, inv.message]) for inv in invalid)


# Asked about a task being created: a problem message, or None.
Check = Callable[[TaskSpec], Awaitable[str | None]]


class TaskCommands:
    def __init__(
        self,
        reconciler: Reconciler,
        writeback: WriteBack,
        runs: Scheduler | None = None,
        *,
        gate: Gate | None = None,
        check: Check | None = None,
        policy: ApiTaskPolicy | None = None,
    ) -> None:
        """`runs` None: the commands only change files; `run=...` is refused. `check`:
        asked about a new task after file validation (Consul's view of its datacenter and
        namespace); a message refuses it."""
        self.reconciler = reconciler
        self.registry: Registry = reconciler.registry
        self.writeback = writeback
        self.runs = runs
        self.gate = gate
        self.check = check
        # None: every module and provider (a core used in-process, without the API).
        self.policy = policy

    # --- views ---------------------------------------------------------------------------

    @property
    def status(self) -> StatusStore | None:
        return self.runs.status if self.runs is not None else None

    def task(self, name: str) -> LiveTask | None:
        """A task as clients see it: live, or deleted while its run has not ended."""
        live = self.registry.get(name)
        if live is None and self.runs is not None:
            live = self.runs.deleting(name)
        return live

    def tasks(self) -> list[LiveTask]:
        """Every task clients see, in no particular order."""
        tasks = list(self.registry)
        if self.runs is not None:
            tasks.extend(t for t in self.runs.deleting_tasks() if t.spec.name not in self.registry)
        return tasks

    def override(self, name: str) -> dict[str, object] | None:
        """How a configuration task runs differently from its file (an API change that
        survives restarts), or None."""
        found = self.writeback.override(name)
        return found.to_json() if found is not None else None

    def name_taken(self, name: str) -> bool:
        """A live task, one any file defines (a broken file's last good content too),
        one whose deletion waits for its run, or one a command is creating."""
        return (
            name in self.registry
            or self.reconciler.defines(name)
            or (self.runs is not None and self.runs.known(name))
        )

    # --- the commands --------------------------------------------------------------------

    def _allowed(self) -> None:
        refusal = self.gate() if self.gate is not None else None
        if refusal is not None:
            raise NotAllowedNowError(refusal)

    def _scheduler(self, run: str) -> Scheduler:
        if self.runs is None:
            # Answered honestly, never with a fake plan.
            action = (
                "planning (run=inspect)" if run == "inspect" else "running immediately (run=now)"
            )
            raise RunsUnavailableError(
                f"{action} is not available: this server runs no Terraform. Send the request "
                "without the run parameter to change only the task's file."
            )
        return self.runs

    async def create(
        self, spec: TaskSpec, *, run: str | None = None, request_id: str = ""
    ) -> CreateResult:
        """Create a task: validated, its workspace initialised (and for run=now applied)
        before its file is written; run=inspect plans it and creates nothing."""
        # The name is checked first (identifier, length): it becomes a file name, so
        # nothing is written or reserved for a name that fails.
        problem = validation_message(spec)
        if problem is None and self.check is not None:
            problem = await self.check(spec)
        if problem is not None:
            raise InvalidTaskError(problem)
        runs = self._scheduler(run) if run is not None else self.runs
        self._allowed()
        if self.name_taken(spec.name):
            raise DuplicateTaskError(f"task with name {spec.name} already exists")
        path = self.writeback.new_task_path(spec.name)
        base_dir = path.parent if path is not None else None
        if self.policy is not None:
            # Before anything runs: an inspect plans, and a plan can run a module's code.
            refusal = self.policy.refusal(spec, base_dir)
            if refusal is not None:
                raise ForbiddenError(refusal)
        if runs is None:
            return CreateResult(spec, await self.writeback.create(spec, request_id=request_id))
        if run == "inspect":
            try:
                plan = await runs.inspect_new(spec, base_dir)
            except ReconcilerError as exc:
                raise InspectFailedError(exc.message) from None
            return CreateResult(spec, plan=plan)
        event: Event | None = None
        try:
            if run == "now":
                event = await runs.create_run(spec, base_dir)
                if event is not None and not event.success:
                    raise RunFailedError(event.error or "the run failed")
            else:
                await runs.prepare(spec, base_dir)
            live = await self.writeback.create(spec, request_id=request_id)
        finally:
            runs.release(spec.name)  # a no-op once the task exists
        if event is not None:
            # The run applied exactly the definition now in the file.
            runs.record(event, live.provenance.revision)
        return CreateResult(spec, live)

    async def set_enabled(
        self, name: str, enabled: bool, *, run: str | None = None, request_id: str = ""
    ) -> Plan | None:
        """Enable or disable a task (its file's `enabled` line). run=inspect plans the
        task as it would be and changes nothing; run=now writes, then applies."""
        if name not in self.registry:
            raise TaskNotFoundError(name)
        return await self._change(
            name,
            run,
            lambda: self.writeback.set_enabled(name, enabled, request_id=request_id),
            # Plans the task as it would be; nothing is written (CTS issue 465).
            lambda runs: runs.inspect(name, enabled=enabled),
        )

    async def _change(
        self,
        name: str,
        run: str | None,
        write: Callable[[], Awaitable[object]],
        inspect: Callable[[Scheduler], Awaitable[Plan]],
    ) -> Plan | None:
        """A change of an existing task: `write` it (run=now: then apply the task), or for
        run=inspect answer the `inspect` plan and write nothing."""
        if run is None:
            self._allowed()
            await write()
            return None
        runs = self._scheduler(run)
        try:
            if run == "inspect":
                return await inspect(runs)
            self._allowed()
            if runs.busy(name):
                raise TaskBusyError(f"task '{name}' is active and cannot be updated at this time")
            await write()
            event = await runs.run_now(name)
        except TaskNotFoundError:
            raise
        except NotFoundError:
            raise TaskNotFoundError(name) from None
        if event is not None and not event.success:
            raise RunFailedError(event.error or "the run failed")
        return None

    async def update(
        self,
        name: str,
        changes: Mapping[str, Any],
        *,
        run: str | None = None,
        request_id: str = "",
    ) -> Plan | None:
        """Change any of a task's fields (`changes`: TaskSpec field -> new value), validated
        as a create is; written into its file by the format-preserving editor. run=inspect
        plans the task as it would be and changes nothing; run=now writes, then applies."""
        live = self.registry.get(name)
        if live is None:
            raise TaskNotFoundError(name)
        new = dataclasses.replace(live.spec, **changes)
        problem = validation_message(new)
        if problem is None and self.check is not None:
            problem = await self.check(new)
        if problem is not None:
            raise InvalidTaskError(problem)
        if self.policy is not None:
            base_dir = Path(live.provenance.path).parent if live.provenance.path else None
            refusal = self.policy.refusal(new, base_dir)
            if refusal is not None:
                raise ForbiddenError(refusal)
        return await self._change(
            name,
            run,
            lambda: self.writeback.update(name, new, request_id=request_id),
            # Planned against its current state; nothing is written.
            lambda runs: runs.inspect_update(name, new),
        )

    async def delete(self, name: str, *, request_id: str = "") -> None:
        """Remove the task's block from its file. A task whose run is in progress stays
        visible until the run ends; nothing its module created is destroyed."""
        if name not in self.registry:
            if self.runs is not None and self.runs.deleting(name) is not None:
                return  # already deleted; its run is ending
            raise TaskNotFoundError(name)
        self._allowed()
        await self.writeback.delete(name, request_id=request_id)

    async def destroy(
        self, name: str, *, run: str | None = None, request_id: str = ""
    ) -> Plan | None:
        """Destroy what the task built (`terraform destroy`), then delete the task, its
        file entry, its workspace and its state. run=inspect answers the destroy plan and
        changes nothing. A destroy that fails raises with Terraform's error and deletes
        nothing."""
        if name not in self.registry:
            raise TaskNotFoundError(name)
        if run not in (None, "inspect"):
            raise InvalidTaskError("destroy=true takes run=inspect (the destroy plan) or no run")
        runs = self._scheduler("inspect" if run else "now")
        try:
            if run == "inspect":
                return await runs.plan_destroy(name)
            self._allowed()
            await runs.destroy(name, lambda: self.writeback.delete(name, request_id=request_id))
        except NotFoundError:
            raise TaskNotFoundError(name) from None
        except RunError as exc:
            raise RunFailedError(
                f"the destroy failed, nothing was deleted: {exc.message}"
            ) from None
        log.info("task %s: destroyed and deleted", name)
        return None
