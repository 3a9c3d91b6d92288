"""The run queue's order (the task's lock before a pool slot, no slot held during a retry's
backoff), trigger sources behind their protocol, and the revision each run records."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path

import pytest
from helpers import async_wait_for
from runfakes import create, live, make_scheduler, spec

from reconciler.registry.store import LiveTask, RegistryChange
from reconciler.runner.inputs import ModuleInputs, ServiceInstance
from reconciler.runs.requests import TaskBusyError
from reconciler.taskfiles.model import ScheduleCondition, TaskSpec
from reconciler.triggers.sources import Fire, ReportError, Trigger

pytestmark = pytest.mark.anyio


async def test_a_task_waiting_for_its_own_lock_holds_no_slot(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path, workers=1)
    create(registry, live(spec("a")), live(spec("b")))
    await scheduler.idle()
    st = scheduler.queue.tasks["a"]
    async with st.lock:  # as a command working on "a" would
        scheduler.trigger("a")
        scheduler.trigger("b")
        # The only slot is free for "b" while "a" waits for its lock.
        await async_wait_for(lambda: fake.ops("b", "apply") == ["apply"], timeout=10)
        assert fake.ops("a", "apply") == []
        assert not scheduler.state("a").active  # queued, not running
    await scheduler.idle()
    assert fake.ops("a", "apply") == ["apply"]


async def test_a_retry_backoff_gives_its_slot_back(tmp_path: Path) -> None:
    # One slot; "a" fails and then waits a minute before its retry.
    registry, scheduler, fake = make_scheduler(tmp_path, workers=1, retry_delay=lambda _: 60.0)
    fake.failing["a"] = {"apply"}
    create(registry, live(spec("a")), live(spec("b")))
    await scheduler.idle()
    scheduler.trigger("a")
    await async_wait_for(lambda: fake.ops("a", "apply") == ["apply"], what="a's first apply")
    assert scheduler.state("a").active  # it is in its backoff
    scheduler.trigger("b")
    await async_wait_for(lambda: scheduler.status.events("b") != [], what="b's run")
    assert scheduler.status.events("b")[0].success
    await scheduler.shutdown(0)


class ManualSource:
    """A trigger source a test fires by hand, as a Consul watcher would."""

    name = "manual"

    def __init__(self) -> None:
        self.fire: Fire | None = None
        self.report: ReportError | None = None
        self.tracked: dict[str, str] = {}

    def start(self, fire: Fire, report: ReportError) -> None:
        self.fire, self.report = fire, report

    def owns_start(self, spec: TaskSpec) -> bool:
        return False

    def track(self, task: LiveTask) -> None:
        self.tracked[task.spec.name] = task.provenance.revision

    def describe(self, name: str) -> Mapping[str, object] | None:
        return None

    def forget(self, name: str) -> None:
        self.tracked.pop(name, None)

    def watching(self) -> dict[str, str]:
        return dict(self.tracked)

    async def close(self) -> None:
        self.fire = None


async def test_a_trigger_source_hands_over_the_inputs_a_run_uses(tmp_path: Path) -> None:
    source = ManualSource()
    registry, scheduler, fake = make_scheduler(tmp_path, sources=[source])
    task = live(spec("a"))
    create(registry, task)
    await scheduler.idle()
    assert source.tracked == {"a": "r1"}
    instance = ServiceInstance(id="web-1", name="web", node="n1", address="10.0.0.7")
    assert source.fire is not None and source.report is not None
    source.fire(Trigger("a", "services changed", ModuleInputs(services={instance.key: instance})))
    await scheduler.idle()
    assert fake.ops("a", "apply") == ["apply"]
    tfvars = (tmp_path / "work" / "a" / "terraform.tfvars").read_text()
    assert "10.0.0.7" in tfvars and "web-1" in tfvars

    # A source that cannot serve a task says so in the task's status.
    source.report("a", "the catalog query cannot be made")
    assert scheduler.state("a").init_error == "the catalog query cannot be made"
    source.report("a", None)
    assert scheduler.state("a").init_error is None

    # A disabled task ignores triggers; a deleted one leaves every source.
    disabled = live(spec("a", enabled=False), revision="r2")
    registry.apply(RegistryChange(updated=((task, disabled),)))
    source.fire(Trigger("a", "services changed"))
    await scheduler.idle()
    assert fake.ops("a", "apply") == ["apply"]
    registry.apply(RegistryChange(deleted=(disabled,)))
    assert source.tracked == {}
    await scheduler.shutdown(0)
    assert source.fire is None


async def test_a_schedule_with_no_next_time_is_an_init_error(tmp_path: Path) -> None:
    registry, scheduler, _ = make_scheduler(tmp_path)
    # Not reachable from a task file (validation refuses it); a clock past the year is.
    create(registry, live(spec("s", condition=ScheduleCondition(cron="0 0 1 1 * 2020"))))
    await async_wait_for(lambda: scheduler.state("s").init_error is not None)
    assert "no next time" in (scheduler.state("s").init_error or "")
    assert scheduler.schedules() == {}
    await scheduler.shutdown(0)


async def test_each_event_records_the_revision_it_applied(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    first = live(spec("a"), revision="sha-1")
    create(registry, first)
    event = await scheduler.run_now("a")
    assert event is not None and event.revision == "sha-1"
    assert scheduler.status.last_applied_revision("a") == "sha-1"

    fake.failing["a"] = {"apply"}
    second = live(spec("a", description="v2"), revision="sha-2")
    registry.apply(RegistryChange(updated=((first, second),)))
    event = await scheduler.run_now("a")
    assert event is not None and not event.success and event.revision == "sha-2"
    assert scheduler.status.last_attempted_revision("a") == "sha-2"
    assert scheduler.status.last_applied_revision("a") == "sha-1"

    # A disabled task's run=now applies nothing, so it names no revision.
    off = live(spec("a", enabled=False), revision="sha-3")
    registry.apply(RegistryChange(updated=((second, off),)))
    event = await scheduler.run_now("a")
    assert event is not None and event.success and event.revision == ""
    assert scheduler.status.last_applied_revision("a") == "sha-1"


async def test_a_closed_gate_starts_no_job(tmp_path: Path) -> None:
    refusal: list[str | None] = ["this instance is not the leader"]
    registry, scheduler, fake = make_scheduler(tmp_path, gate=lambda: refusal[0])
    create(registry, live(spec("a")))
    assert scheduler.trigger("a")
    await scheduler.idle()
    assert fake.ops("a") == []
    with pytest.raises(TaskBusyError, match="not the leader"):
        await scheduler.run_now("a")
    refusal[0] = None
    event = await scheduler.run_now("a")
    assert event is not None and event.success and fake.ops("a") == ["init", "apply"]


async def test_a_new_revision_of_the_same_definition_counts_as_applied(tmp_path: Path) -> None:
    registry, scheduler, _ = make_scheduler(tmp_path)
    create(registry, live(spec("a"), tmp_path / "tasks" / "a.hcl", revision="sha-1"))
    await scheduler.run_now("a")
    # A commit that changed other files: same definition, same place, new revision.
    registry.apply(RegistryChange(moved=(live(spec("a"), tmp_path / "tasks" / "a.hcl", "sha-2"),)))
    assert scheduler.status.last_applied_revision("a") == "sha-2"
    # Moved to another directory: its relative module path points elsewhere; not applied.
    registry.apply(RegistryChange(moved=(live(spec("a"), tmp_path / "other" / "a.hcl", "sha-3"),)))
    assert scheduler.status.last_applied_revision("a") == "sha-2"
    await scheduler.shutdown(0)


async def test_a_run_starts_when_it_gets_its_slot_not_when_it_was_queued(
    tmp_path: Path,
) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path, workers=1)
    create(registry, live(spec("a")), live(spec("b")))
    await scheduler.idle()
    fake.gates["a"] = asyncio.Event()
    scheduler.trigger("a")
    await async_wait_for(lambda: fake.ops("a", "apply") == ["apply"], what="a's apply")
    scheduler.trigger("b")  # queued behind "a" for the only slot
    fake.gates["a"].set()
    await scheduler.idle()
    [a], [b] = scheduler.status.events("a"), scheduler.status.events("b")
    assert b.start_time >= a.end_time  # b's queueing time is not counted as its run


async def test_a_run_waiting_to_retry_at_shutdown_records_its_failure(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path, workers=1, retry_delay=lambda _: 600.0)
    fake.failing["a"] = {"apply"}
    create(registry, live(spec("a")))
    await scheduler.idle()
    scheduler.trigger("a")
    await async_wait_for(lambda: fake.ops("a", "apply") == ["apply"], what="a's first apply")
    await scheduler.shutdown(grace=5)  # the retry is 10 minutes away
    [event] = scheduler.status.events("a")
    assert not event.success and "fake failure of a" in (event.error or "")
    assert fake.ops("a", "apply") == ["apply"]  # not retried once the daemon stops
