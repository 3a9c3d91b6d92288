"""A fast stand-in for Terraform behind the runner's Driver interface, and task helpers.

Every behaviour tested with it is also tested once with the real Terraform
(tests/scenarios/test_terraform_runs.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.registry.status import StatusStore
from reconciler.registry.store import LiveTask, Registry, RegistryChange
from reconciler.runner.driver import Plan, Priority, RunError
from reconciler.runner.inputs import ServiceInstance, ServicesQuery
from reconciler.runner.workspace import Workspace, Workspaces
from reconciler.runs.scheduler import Scheduler
from reconciler.taskfiles.model import Provenance, ServicesCondition, TaskSpec

MODULES = Path(__file__).parent / "fixtures" / "modules"


@dataclass
class FakeDriver:
    identity: str = "fake"
    calls: list[tuple[str, str]] = field(default_factory=list)
    # task name -> operations that fail ("init", "plan", "apply")
    failing: dict[str, set[str]] = field(default_factory=dict)
    # task name -> an event an apply waits for (set it to let the apply finish)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    changes_present: bool = True
    active: int = 0
    max_active: int = 0
    # (task name, command, priority) of every command
    priorities: list[tuple[str, str, Priority]] = field(default_factory=list)
    # task name -> the terraform.tfvars each of its applies ran with
    tfvars: dict[str, list[str]] = field(default_factory=dict)

    def ops(self, name: str, op: str | None = None) -> list[str]:
        return [o for n, o in self.calls if n == name and (op is None or o == op)]

    def _check(self, ws: Workspace, op: str) -> None:
        self.calls.append((ws.name, op))
        if op in self.failing.get(ws.name, set()):
            raise RunError(f"terraform {op} failed: fake failure of {ws.name}")

    async def init(self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND) -> None:
        self.priorities.append((workspace.name, "init", priority))
        self._check(workspace, "init")

    async def plan(self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND) -> Plan:
        self.priorities.append((workspace.name, "plan", priority))
        self._check(workspace, "plan")
        return Plan(self.changes_present, f"plan of {workspace.name}")

    async def plan_destroy(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> Plan:
        self._check(workspace, "plan_destroy")
        return Plan(self.changes_present, f"destroy plan of {workspace.name}")

    async def destroy(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> None:
        self._check(workspace, "destroy")

    async def apply(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> None:
        self.priorities.append((workspace.name, "apply", priority))
        self.calls.append((workspace.name, "apply"))
        tfvars = workspace.directory / "terraform.tfvars"
        self.tfvars.setdefault(workspace.name, []).append(
            tfvars.read_text() if tfvars.exists() else ""
        )
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            gate = self.gates.get(workspace.name)
            if gate is not None:
                await gate.wait()
            else:
                await asyncio.sleep(0)
            if "apply" in self.failing.get(workspace.name, set()):
                raise RunError(f"terraform apply failed: fake failure of {workspace.name}")
        finally:
            self.active -= 1


@dataclass
class StaticCatalog:
    """A catalog that knows a fixed set of service instances."""

    instances: Sequence[ServiceInstance] = ()

    async def services(self, query: ServicesQuery) -> Sequence[ServiceInstance]:
        names = set(query.names or ())
        return [i for i in self.instances if i.name in names]

    async def catalog_services(self, query: object) -> dict[str, list[str]]:
        return {}

    async def consul_kv(self, query: object) -> dict[str, str]:
        return {}


def spec(name: str, module: str = "./mod", **fields: object) -> TaskSpec:
    fields.setdefault("condition", ServicesCondition(names=("web",)))
    return TaskSpec(name=name, module=module, **fields)  # type: ignore[arg-type]


def live(task: TaskSpec, file: Path | None = None, revision: str = "r1") -> LiveTask:
    path = str(file) if file is not None else ""
    shown = file.name if file is not None else f"{task.name}.hcl"
    return LiveTask(task, Provenance(shown, 1, revision, path), "directory")


def create(registry: Registry, *tasks: LiveTask) -> None:
    registry.apply(RegistryChange(created=tasks))


def make_scheduler(
    tmp_path: Path,
    driver: FakeDriver | None = None,
    *,
    workers: int = 4,
    status: StatusStore | None = None,
    **kwargs: object,
) -> tuple[Registry, Scheduler, FakeDriver]:
    registry = Registry()
    fake = driver or FakeDriver()
    kwargs.setdefault("retry_delay", lambda attempt: 0.01)
    scheduler = Scheduler(
        registry,
        status or StatusStore(),
        Workspaces(tmp_path / "work"),
        fake,
        workers=workers,
        **kwargs,  # type: ignore[arg-type]
    )
    return registry, scheduler, fake
