"""Trigger sources: what decides that a task runs, behind one protocol.

A trigger source watches something (a cron expression; Consul services, catalog
services and KV keys) for the tasks it concerns, and hands the run queue a `Trigger`:
"run task X now, for this reason, with these inputs". It never runs anything itself and
knows nothing of pools, locks or retries. A buffer period is a source wrapped around
another: it holds triggers back until they settle, then passes the latest one on.

The scheduler tells every source about every task (`track` when a task appears or
changes, `forget` when it leaves or is disabled); each source decides whether the task
concerns it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from reconciler.registry.store import LiveTask
from reconciler.runner.inputs import ModuleInputs
from reconciler.taskfiles.model import TaskSpec


@dataclass(frozen=True)
class Trigger:
    task: str
    reason: str
    # The module inputs the source already has (a blocking query's answer); None: the
    # run asks the catalog.
    inputs: ModuleInputs | None = None
    # Apply only when the rendered inputs or the definition changed since the last
    # successful apply (CTS's schedule ticks); an event is recorded either way.
    only_if_changed: bool = False
    retry: bool = True  # a failed apply is retried with backoff (CTS: triggered runs)
    # Held back by the task's buffer period; a task's first run is not (CTS).
    buffered: bool = True
    # Run nothing (and record nothing) when the definition and inputs equal those of the
    # task's last successful apply (data that changed and changed back, a restart).
    skip_unchanged: bool = True
    # The task's start-up run (its first data): applied again even when unchanged if the
    # driver says apply_on_start = "always".
    start: bool = False


Fire = Callable[[Trigger], None]
# A source reports that it cannot serve a task (None: it can again).
ReportError = Callable[[str, str | None], None]


class TriggerSource(Protocol):
    """Runs in the event loop; `fire` and `report` are called from it."""

    name: str

    def start(self, fire: Fire, report: ReportError) -> None:
        """Begin handing triggers to `fire`."""
        ...

    def owns_start(self, spec: TaskSpec) -> bool:
        """The task's start-up run comes from this source (its first data), not from the
        scheduler's run of every task at start."""
        ...

    def track(self, task: LiveTask) -> None:
        """A task appeared or changed: watch what it asks for, if it concerns this
        source (and stop watching what it no longer asks for)."""
        ...

    def forget(self, name: str) -> None:
        """The task is gone: stop watching for it."""
        ...

    def watching(self) -> dict[str, str]:
        """Task name -> what is watched for it, for status and tests."""
        ...

    def describe(self, name: str) -> Mapping[str, object] | None:
        """What the task waits on in this source, as JSON-ready data for its status (None
        when the source does not concern the task)."""
        ...

    async def close(self) -> None:
        """Stop everything; fire nothing afterwards."""
        ...
