"""What the API works with: the task commands (which hold the core), the defaults tasks
are shown with, and the health check."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from reconciler._core.metrics import NULL, Recorder
from reconciler.commands import TaskCommands
from reconciler.reconcile.engine import Reconciler
from reconciler.registry.status import StatusStore
from reconciler.registry.store import LiveTask, Registry
from reconciler.runs.scheduler import Scheduler
from reconciler.taskfiles.model import GlobalDefaults

# Problems that make the daemon unhealthy; empty when healthy.
HealthCheck = Callable[[], Sequence[str]]

_NO_EVENTS = StatusStore()


@dataclass(frozen=True)
class ApiContext:
    commands: TaskCommands
    # What tasks inherit (the buffer period), read per request: a reload may change it.
    defaults: Callable[[], GlobalDefaults] = GlobalDefaults
    # None: unhealthy exactly when a source is unavailable or its prune guard is active
    # (reconciler.api.status.source_problems).
    health: HealthCheck | None = None
    # The bearer token every route but /v1/health and the webhook requires, read per
    # request (a reload may change it); "": none.
    token: Callable[[], str] = field(default=lambda: "", repr=False)
    recorder: Recorder = NULL  # request metrics
    # Paths served without the token besides /v1/health and the webhook.
    open_paths: frozenset[str] = frozenset()
    # High availability (None: not configured): the leader to send /v1/tasks requests to
    # (None while this member leads), /v1/status/cluster, and this member's role.
    redirect: Callable[[], str | None] | None = None
    cluster: Callable[[], Mapping[str, object]] | None = None
    role: Callable[[], Mapping[str, object]] | None = None

    @property
    def registry(self) -> Registry:
        return self.commands.registry

    @property
    def reconciler(self) -> Reconciler:
        return self.commands.reconciler

    @property
    def runs(self) -> Scheduler | None:
        """Runs Terraform (run=inspect/now, deferred deletion); None: the API only
        changes files and `run=...` answers 501."""
        return self.commands.runs

    @property
    def status(self) -> StatusStore:
        return self.commands.status or _NO_EVENTS

    def task(self, name: str) -> LiveTask | None:
        return self.commands.task(name)

    def tasks(self) -> list[LiveTask]:
        return self.commands.tasks()
