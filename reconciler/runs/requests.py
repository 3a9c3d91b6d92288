"""What is asked of a task's runs, and what the run queue keeps per task.

kopf-style: each task has at most one pending request. Requests that arrive while the
task is busy are merged into the pending one (the latest definition and data win, nothing
is lost: CTS issue 732), and the task's worker takes it once the current job ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler._core.errors import ConflictError, NotFoundError
from reconciler.registry.status import Event
from reconciler.registry.store import LiveTask
from reconciler.runner.driver import Priority
from reconciler.runner.inputs import ModuleInputs
from reconciler.taskfiles.model import TaskSpec


class TaskBusyError(ConflictError):
    reason = "TaskActive"


class TaskGoneError(NotFoundError):
    reason = "TaskDeleted"


@dataclass
class Request:
    """Work asked of a task; requests for the same task merge into one."""

    init: bool = False
    force_init: bool = False  # init even when the root module did not change (enable)
    run: bool = False
    retry: bool = False
    only_if_changed: bool = False  # schedule ticks: apply only if inputs changed
    # Triggers and start-up runs: nothing changed since the last successful apply -> run
    # nothing, record nothing.
    skip_unchanged: bool = False
    record_disabled: bool = False  # record an event even when the task is disabled
    reason: str = ""  # why it runs ("schedule", "run=now", ...), for the log
    # API: asked for by a command that waits for it (run=now); ahead of background runs.
    priority: Priority = Priority.BACKGROUND
    # The module inputs a trigger source handed over; None: ask the catalog at run time.
    inputs: ModuleInputs | None = None
    waiters: list[asyncio.Future[Event | None]] = field(default_factory=list)

    def merge(self, other: Request) -> None:
        self.init |= other.init
        self.force_init |= other.force_init
        self.priority = min(self.priority, other.priority)
        if other.run:
            self.only_if_changed = other.only_if_changed and (self.only_if_changed or not self.run)
            self.skip_unchanged = other.skip_unchanged and (self.skip_unchanged or not self.run)
            self.run = True
            self.retry |= other.retry
            self.record_disabled |= other.record_disabled
            self.reason = other.reason or self.reason
            if other.inputs is not None:  # the newer data wins
                self.inputs = other.inputs
        self.waiters.extend(other.waiters)


@dataclass
class TaskRuns:
    """What the run queue keeps per task."""

    spec: TaskSpec
    base_dir: Path | None
    live: LiveTask | None = None  # None while provisional
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: Request | None = None
    current: Request | None = None  # what the worker is doing now
    worker: asyncio.Task[None] | None = None
    # Holds a pool slot for Terraform work, or waits between retries of it.
    working: bool = False
    deleting: bool = False
    # Created by a task command before its file exists (POST): not visible, not triggered.
    provisional: bool = False
    # The workspace directory a provisional task's command made (it did not exist): removed
    # again if the task's file is not written in the end.
    fresh_workspace: Path | None = None
    init_error: str | None = None
    initialized: bool = False  # its workspace was initialised (or found so) since start
    # A trigger source cannot serve the task (a schedule with no next time): shown as
    # its init_error, since the task will never run on its own.
    trigger_error: str | None = None
    applied: str | None = None  # digest of the inputs of the last successful apply

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def revision(self) -> str:
        """The revision of the definition the task runs now ("" while provisional)."""
        return self.live.provenance.revision if self.live is not None else ""

    @property
    def active(self) -> bool:
        """Terraform work (init, plan or apply, or the wait before a retry) is in
        progress. A task waiting for a pool slot is queued, not active."""
        return self.working

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


def resolve(waiters: Iterable[asyncio.Future[Event | None]], event: Event | None) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_result(event)


def fail(waiters: Iterable[asyncio.Future[Event | None]], exc: BaseException) -> None:
    for fut in waiters:
        if not fut.done():
            fut.set_exception(exc)
