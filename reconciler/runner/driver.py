"""What runs a task's Terraform: the interface the scheduler drives, and its results.

`Terraform` (reconciler.runner.terraform) is the real driver; tests may use a fake behind
the same interface. A driver works on a prepared `Workspace` and never decides *when* to
run: that is the scheduler's job.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

from reconciler._core.errors import ReconcilerError
from reconciler.runner.workspace import Workspace


class RunError(ReconcilerError):
    """A Terraform command failed; `message` is what a user should read."""

    reason = "RunFailed"

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


class ModuleError(RunError):
    """Terraform refused the task's module itself: its `init` or `validate` diagnostics
    (a module source that is not an address, a local path that does not exist, a
    module that does not validate). The task's author can fix it; the daemon is fine.
    Any other RunError (Terraform crashed or timed out, the workspace or the backend is
    unusable) is the daemon's own failure."""

    reason = "ModuleInvalid"


class Priority(IntEnum):
    """Which command gets the next free Terraform worker: the lower value first.

    A user waiting on an API call (create-time init, run=inspect, run=now) goes ahead of
    start-up and triggered runs, so a POST during a storm waits for one command at most."""

    API = 0
    BACKGROUND = 1


@dataclass(frozen=True)
class Plan:
    changes_present: bool
    text: str


class Driver(Protocol):
    @property
    def identity(self) -> str:
        """Names the Terraform in use; a change of it re-initialises every workspace."""
        ...

    async def init(self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND) -> None:
        """`init` and `validate` the workspace's root module (raises RunError)."""
        ...

    async def plan(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> Plan: ...

    async def apply(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> None: ...

    async def plan_destroy(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> Plan:
        """`plan -destroy`: what a destroy would remove (changes nothing)."""
        ...

    async def destroy(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> None:
        """`destroy`: remove everything the workspace's state holds (raises RunError)."""
        ...
