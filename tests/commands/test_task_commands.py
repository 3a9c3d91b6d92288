"""The task commands without HTTP, as a CLI client or HA would call them: the whole flow,
the injected gate, and the one mapping of their typed failures to status codes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from apikit import assert_error, running_core
from runfakes import FakeDriver, spec

from reconciler._core.errors import (
    ConflictError,
    InvalidTaskError,
    NotFoundError,
    ReconcilerError,
    SourceError,
)
from reconciler.api.errors import status_for
from reconciler.commands.errors import (
    InspectFailedError,
    NotAllowedNowError,
    RunFailedError,
    RunsUnavailableError,
    TaskNotFoundError,
)
from reconciler.daemon.core import Core, RunPlan, SourcePlan
from reconciler.reconcile.writeback import DuplicateTaskError, ReadOnlySourceError
from reconciler.registry.status import StatusStore
from reconciler.runner.driver import ModuleError, RunError
from reconciler.runner.workspace import Workspaces
from reconciler.runs.requests import TaskBusyError, TaskGoneError
from reconciler.sources.directory import DirectorySource

pytestmark = pytest.mark.anyio


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[tuple[Core, FakeDriver, list[str | None]]]:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "mod").mkdir()
    fake = FakeDriver()
    refusal: list[str | None] = [None]
    built = Core(
        [SourcePlan(DirectorySource(tmp_path / "tasks"))],
        runs=RunPlan(Workspaces(tmp_path / "work"), fake, StatusStore(), retry_delay=lambda _: 0),
        gate=lambda: refusal[0],
    )
    await built.load()
    try:
        yield built, fake, refusal
    finally:
        await built.close()


async def test_the_whole_flow_without_http(
    core: tuple[Core, FakeDriver, list[str | None]], tmp_path: Path
) -> None:
    built, fake, _ = core
    commands = built.commands
    result = await commands.create(spec("web"), run="now", request_id="r1")
    assert result.live is not None and result.live.spec.name == "web"
    assert (tmp_path / "tasks" / "web.hcl").exists()
    assert fake.ops("web") == ["init", "apply"]
    [event] = built.scheduler.status.events("web")  # type: ignore[union-attr]
    assert event.success and event.revision == result.live.provenance.revision

    with pytest.raises(DuplicateTaskError, match="already exists"):
        await commands.create(spec("web"))
    with pytest.raises(InvalidTaskError, match="name"):
        await commands.create(spec("not a name"))
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == ["mod", "web.hcl"]

    plan = await commands.create(spec("other"), run="inspect")
    assert plan.live is None and plan.plan is not None and "other" not in built.registry

    assert await commands.set_enabled("web", False) is None
    assert "enabled = false" in (tmp_path / "tasks" / "web.hcl").read_text()
    await commands.delete("web")
    assert "web" not in built.registry and not (tmp_path / "tasks" / "web.hcl").exists()
    with pytest.raises(TaskNotFoundError):
        await commands.delete("web")
    with pytest.raises(TaskNotFoundError):
        await commands.set_enabled("web", True, run="now")


async def test_failures_before_the_write_leave_nothing(
    core: tuple[Core, FakeDriver, list[str | None]], tmp_path: Path
) -> None:
    built, fake, _ = core
    fake.failing["web"] = {"apply"}
    with pytest.raises(RunFailedError, match="fake failure of web"):
        await built.commands.create(spec("web"), run="now")
    fake.failing["api"] = {"init"}
    with pytest.raises(RunError, match="fake failure of api"):
        await built.commands.create(spec("api"))
    assert [p.name for p in (tmp_path / "tasks").iterdir()] == ["mod"]
    assert not built.commands.name_taken("web") and not built.commands.name_taken("api")


async def test_a_gate_refuses_every_change_and_no_read(
    core: tuple[Core, FakeDriver, list[str | None]], tmp_path: Path
) -> None:
    built, fake, refusal = core
    commands = built.commands
    await commands.create(spec("web"))
    refusal[0] = "this instance is not the leader"
    for change in (
        commands.create(spec("other")),
        commands.create(spec("other"), run="now"),
        commands.set_enabled("web", False),
        commands.set_enabled("web", True, run="now"),
        commands.delete("web"),
    ):
        with pytest.raises(NotAllowedNowError, match="not the leader"):
            await change
    assert sorted(p.name for p in (tmp_path / "tasks").iterdir()) == ["mod", "web.hcl"]
    assert "enabled" not in (tmp_path / "tasks" / "web.hcl").read_text()
    assert fake.ops("other") == [] and fake.ops("web", "apply") == []
    # Reads and plans change nothing: allowed.
    assert commands.task("web") is not None
    assert await commands.set_enabled("web", False, run="inspect") is not None
    refusal[0] = None
    await commands.delete("web")
    assert "web" not in built.registry


async def test_the_http_layer_answers_a_closed_gate_with_503(tmp_path: Path) -> None:
    async with running_core(tmp_path / "tasks") as api:
        assert api.commands is not None
        api.commands.gate = lambda: "this instance is not the leader"
        response = await api.post_task(
            {"name": "web", "module": "./m", "condition": {"services": {"names": ["a"]}}}
        )
        assert_error(response, 503, "not the leader")
        assert list((tmp_path / "tasks").iterdir()) == []


@pytest.mark.parametrize(
    "error, status",
    [
        (InvalidTaskError("x"), 400),
        (DuplicateTaskError("x"), 400),
        (ModuleError("x"), 400),
        (InspectFailedError("x"), 400),
        (TaskNotFoundError("x"), 404),
        (TaskGoneError("x"), 404),
        (NotFoundError("x"), 404),
        (TaskBusyError("x"), 409),
        (ReadOnlySourceError("x"), 409),
        (ConflictError("x"), 409),
        (RunsUnavailableError("x"), 501),
        (NotAllowedNowError("x"), 503),
        (SourceError("x"), 503),
        (RunFailedError("x"), 500),
        (RunError("x"), 500),
        (ReconcilerError("x"), 500),
    ],
)
def test_typed_failures_map_to_one_status_each(error: ReconcilerError, status: int) -> None:
    assert status_for(error) == status
