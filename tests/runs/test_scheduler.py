"""The run scheduler over a fake driver: queues, the pool, retries, deferred deletion,
schedules and shutdown. tests/scenarios/test_terraform_runs.py repeats the behaviours that
matter with the real Terraform."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from helpers import async_wait_for
from runfakes import create, live, make_scheduler, spec

from reconciler._core.errors import DuplicateTaskError
from reconciler.registry.status import Event, StatusStore, now
from reconciler.registry.store import RegistryChange
from reconciler.runner.driver import Priority
from reconciler.runs.scheduler import TaskBusyError
from reconciler.taskfiles.model import ScheduleCondition
from reconciler.triggers.schedule import CronSource

pytestmark = pytest.mark.anyio


async def test_a_new_task_is_initialised_once(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    create(registry, live(spec("a")))
    await scheduler.idle()
    assert fake.ops("a") == ["init"]
    assert (tmp_path / "work" / "a" / "main.tf").exists()

    # The same definition again (a restart, a move to another file that keeps the
    # module path) does not init again: the workspace says it is initialised as it is.
    registry.apply(RegistryChange(moved=(live(spec("a"), revision="r2"),)))
    await scheduler.idle()
    assert fake.ops("a") == ["init"]

    # Any change of the definition re-inits.
    changed = live(spec("a", description="now described"))
    registry.apply(RegistryChange(updated=((registry.get("a"), changed),)))  # type: ignore[arg-type]
    await scheduler.idle()
    assert fake.ops("a") == ["init", "init"]

    # So does a move to another directory: "./mod" now points elsewhere.
    moved = live(spec("a", description="now described"), tmp_path / "elsewhere" / "a.hcl")
    registry.apply(RegistryChange(moved=(moved,)))
    await scheduler.idle()
    assert fake.ops("a") == ["init", "init", "init"]
    main_tf = (tmp_path / "work" / "a" / "main.tf").read_text()
    assert 'source   = "../../elsewhere/mod"' in main_tf


async def test_enabling_a_task_reinitialises_it(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    disabled = live(spec("a", enabled=False))
    create(registry, disabled)
    await scheduler.idle()
    enabled = live(spec("a", enabled=True))
    registry.apply(RegistryChange(updated=((disabled, enabled),)))
    await scheduler.idle()
    assert fake.ops("a") == ["init", "init"]


async def test_a_trigger_during_a_run_is_queued_not_lost(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    fake.gates["a"] = asyncio.Event()
    create(registry, live(spec("a")))
    assert scheduler.trigger("a")
    await async_wait_for(lambda: scheduler.state("a").active and fake.active == 1)
    # Three more triggers while it runs: merged into one run after it (latest wins).
    for _ in range(3):
        assert scheduler.trigger("a")
    fake.gates["a"].set()
    await scheduler.idle()
    assert fake.ops("a", "apply") == ["apply", "apply"]
    assert [e.success for e in scheduler.status.events("a")] == [True, True]


async def test_at_most_one_run_per_task_and_a_global_cap(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path, workers=2)
    names = [f"t{i}" for i in range(6)]
    for name in names:
        fake.gates[name] = asyncio.Event()
    create(registry, *(live(spec(n)) for n in names))
    for name in names:
        scheduler.trigger(name)
    await async_wait_for(lambda: fake.active == 2)
    assert scheduler.active == 2
    for name in names:
        fake.gates[name].set()
    await scheduler.idle()
    assert fake.max_active == 2
    assert all(fake.ops(n, "apply") == ["apply"] for n in names)


async def test_triggered_applies_retry_twice_run_now_does_not(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    fake.failing["a"] = {"apply"}
    create(registry, live(spec("a")))
    scheduler.trigger("a")
    await scheduler.idle()
    assert fake.ops("a", "apply") == ["apply"] * 3
    events = scheduler.status.events("a")
    assert len(events) == 1 and not events[0].success
    assert "fake failure of a" in (events[0].error or "")

    event = await scheduler.run_now("a")
    assert event is not None and not event.success
    assert fake.ops("a", "apply") == ["apply"] * 4
    assert scheduler.status.status("a") == "critical"


async def test_deleting_a_running_task_waits_for_its_run(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    fake.gates["a"] = asyncio.Event()
    task = live(spec("a"))
    create(registry, task)
    await scheduler.idle()
    scheduler.status.record(_event("a"))
    scheduler.trigger("a")
    await async_wait_for(lambda: fake.active == 1)
    scheduler.trigger("a")  # queued behind the running one: dropped by the deletion

    registry.apply(RegistryChange(deleted=(task,)))
    assert scheduler.deleting("a") == task
    assert scheduler.state("a").deleting
    assert [t.spec.name for t in scheduler.deleting_tasks()] == ["a"]
    assert not scheduler.trigger("a")
    with pytest.raises(DuplicateTaskError, match="already exists"):
        await scheduler.prepare(spec("a"), None)  # the name is still taken

    fake.gates["a"].set()
    await scheduler.idle()
    assert scheduler.deleting("a") is None
    assert not scheduler.known("a")
    assert scheduler.status.events("a") == []  # events go with the task
    assert fake.ops("a", "apply") == ["apply"]


async def test_deleting_an_idle_task_is_immediate(tmp_path: Path) -> None:
    registry, scheduler, _ = make_scheduler(tmp_path)
    task = live(spec("a"))
    create(registry, task)
    await scheduler.idle()
    registry.apply(RegistryChange(deleted=(task,)))
    assert scheduler.deleting("a") is None and not scheduler.known("a")


async def test_a_task_recreated_while_its_old_run_ends_waits_for_it(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    fake.gates["a"] = asyncio.Event()
    old = live(spec("a"))
    create(registry, old)
    scheduler.trigger("a")
    await async_wait_for(lambda: fake.active == 1)
    registry.apply(RegistryChange(deleted=(old,)))
    new = live(spec("a", description="second life"))
    create(registry, new)
    assert scheduler.deleting("a") is None
    scheduler.trigger("a")
    # The new task's run is queued, and waits for the old run.
    await async_wait_for(lambda: scheduler.queue.tasks["a"].pending is not None)
    assert fake.active == 1
    fake.gates["a"].set()
    await scheduler.idle()
    assert fake.max_active == 1
    assert fake.ops("a", "apply") == ["apply", "apply"]


async def test_init_failure_is_shown_and_fails_runs(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    fake.failing["a"] = {"init"}
    create(registry, live(spec("a")))
    await scheduler.idle()
    assert "fake failure of a" in (scheduler.state("a").init_error or "")
    assert scheduler.status.events("a") == []  # init alone records no event
    event = await scheduler.run_now("a")
    assert event is not None and not event.success
    assert fake.ops("a", "apply") == []

    fake.failing["a"] = set()
    event = await scheduler.run_now("a")
    assert event is not None and event.success
    assert scheduler.state("a").init_error is None


async def test_disabled_tasks_are_initialised_but_never_applied(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    create(registry, live(spec("a", enabled=False)))
    scheduler.trigger_all()
    assert scheduler.trigger("a")
    await scheduler.idle()
    assert fake.ops("a") == ["init"]
    assert scheduler.status.events("a") == []
    # PATCH ?run=now on a disabled task records a success without running, as CTS.
    event = await scheduler.run_now("a")
    assert event is not None and event.success
    assert fake.ops("a", "apply") == []


async def test_inspect_plans_without_recording_anything(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    create(registry, live(spec("a", enabled=False)))
    await scheduler.idle()
    plan = await scheduler.inspect("a")
    assert plan.text == "Task is disabled, inspection was skipped."
    plan = await scheduler.inspect("a", enabled=True)
    assert plan.changes_present and plan.text == "plan of a"
    assert scheduler.status.events("a") == []

    fake.gates["b"] = asyncio.Event()
    create(registry, live(spec("b")))
    scheduler.trigger("b")
    await async_wait_for(lambda: fake.active == 1)
    with pytest.raises(TaskBusyError, match="active"):
        await scheduler.inspect("b")
    fake.gates["b"].set()
    await scheduler.idle()


async def test_inspect_new_uses_a_throwaway_workspace(tmp_path: Path) -> None:
    _, scheduler, fake = make_scheduler(tmp_path)
    plan = await scheduler.inspect_new(spec("fresh"), tmp_path)
    assert plan.changes_present
    assert fake.ops("fresh") == ["init", "plan"]
    assert not (tmp_path / "work" / "fresh").exists()
    scratch = tmp_path / "work" / ".reconciler" / "inspect"
    assert not scratch.exists() or list(scratch.iterdir()) == []
    assert not scheduler.known("fresh")


async def test_create_run_reserves_the_name_until_the_file_exists(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    event = await scheduler.create_run(spec("n"), tmp_path)
    assert event is not None and event.success
    assert scheduler.known("n") and scheduler.status.events("n") == []
    with pytest.raises(DuplicateTaskError, match="already exists"):
        await scheduler.prepare(spec("n"), tmp_path)
    create(registry, live(spec("n"), tmp_path / "n.hcl"))
    scheduler.record(event)
    await scheduler.idle()
    # The file's task adopts the prepared workspace: no second init.
    assert fake.ops("n") == ["init", "apply"]
    assert scheduler.status.status("n") == "successful"

    # The API's write failed: the reservation is released.
    other = await scheduler.create_run(spec("m"), tmp_path)
    assert other is not None and other.success
    scheduler.release("m")
    assert not scheduler.known("m")


async def test_schedule_fires_on_its_cron_and_applies_only_changes(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    every_second = ScheduleCondition(cron="* * * * * * *")  # cronexpr: seconds first
    task = live(spec("s", condition=every_second))
    create(registry, task)
    waits = scheduler.waiting_on("s")["schedule"]
    assert waits["cron"] == "* * * * * * *" and isinstance(waits["next_fire"], str)
    await async_wait_for(lambda: len(scheduler.status.events("s")) >= 2, timeout=5)
    # Ticks record an event every time, but apply only when the inputs changed (CTS).
    assert fake.ops("s", "apply") == ["apply"]
    assert all(e.success for e in scheduler.status.events("s"))

    registry.apply(RegistryChange(deleted=(task,)))
    # The schedule stops with the task.
    await async_wait_for(lambda: scheduler.schedules() == {}, what="the schedule to stop")
    assert scheduler.waiting_on("s") == {}


async def test_a_disabled_schedule_records_nothing(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    every_second = ScheduleCondition(cron="* * * * * * *")
    ticks: list[str] = []
    [cron] = scheduler.sources
    assert isinstance(cron, CronSource)
    fire = cron._fire
    assert fire is not None
    cron._fire = lambda trigger: (ticks.append(trigger.task), fire(trigger))  # type: ignore[func-returns-value]
    create(registry, live(spec("s", condition=every_second, enabled=False)))
    await async_wait_for(lambda: ticks == ["s"], timeout=3)
    await scheduler.idle()
    assert fake.ops("s", "apply") == [] and scheduler.status.events("s") == []
    await scheduler.shutdown(0)


async def test_shutdown_gives_runs_a_grace_period_then_stops_them(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path)
    fake.gates["slow"] = asyncio.Event()
    create(registry, live(spec("slow")))
    scheduler.trigger("slow")
    await async_wait_for(lambda: fake.active == 1)
    waiter = asyncio.ensure_future(scheduler.run_now("slow"))
    st = scheduler.queue.tasks["slow"]
    await async_wait_for(lambda: st.pending is not None, what="run_now queued")
    loop = asyncio.get_running_loop()
    started = loop.time()
    await scheduler.shutdown(0.2)
    assert 0.15 < loop.time() - started < 2
    assert fake.active == 0
    with pytest.raises(TaskBusyError):
        await waiter
    assert fake.ops("slow", "apply") == ["apply"]


async def test_at_shutdown_queued_runs_do_not_start(tmp_path: Path) -> None:
    """The grace period is for running jobs: runs still waiting for a slot are dropped,
    so a stop during the start-up of many tasks does not apply them one by one."""
    registry, scheduler, fake = make_scheduler(tmp_path, workers=1)
    fake.gates["t0"] = asyncio.Event()
    for i in range(20):
        create(registry, live(spec(f"t{i}")))
    await scheduler.idle()  # every task initialised; now their runs
    for i in range(20):
        scheduler.trigger(f"t{i}")
    await async_wait_for(lambda: fake.active == 1 and fake.ops("t0", "apply") == ["apply"])
    stopping = asyncio.ensure_future(scheduler.shutdown(30))
    await async_wait_for(lambda: scheduler.queue.closed)  # the stop has begun
    fake.gates["t0"].set()  # the running job ends within its grace period
    await asyncio.wait_for(stopping, 10)
    applied = [f"t{i}" for i in range(20) if fake.ops(f"t{i}", "apply")]
    assert applied == ["t0"], applied


async def test_events_are_kept_five_deep_and_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "events.json"
    registry, scheduler, fake = make_scheduler(tmp_path, status=StatusStore(path))
    fake.failing["a"] = {"apply"}
    create(registry, live(spec("a")))
    for _ in range(7):
        await scheduler.run_now("a")
    fake.failing["a"] = set()
    await scheduler.run_now("a")
    await scheduler.status.flush()

    again = StatusStore(path)
    again.load()
    events = again.events("a")
    assert len(events) == 5
    assert [e.success for e in events] == [True, False, False, False, False]
    assert again.status("a") == "successful"
    assert events == scheduler.status.events("a")


def _event(name: str) -> Event:
    return Event(name, True, now(), now())


def test_request_merge_keeps_every_ask() -> None:
    from reconciler.runs.requests import Request

    r = Request(init=True)
    r.merge(Request(run=True, only_if_changed=True))
    assert r.run and r.only_if_changed
    r.merge(Request(run=True, retry=True))
    assert r.retry and not r.only_if_changed
    assert dataclasses.replace(r, waiters=[]).init


async def test_api_work_does_not_wait_behind_background_runs(tmp_path: Path) -> None:
    registry, scheduler, fake = make_scheduler(tmp_path, workers=1)
    fake.gates["bg1"] = gate1 = asyncio.Event()
    fake.gates["bg2"] = asyncio.Event()
    create(registry, live(spec("bg1")), live(spec("bg2")), live(spec("api")))
    await scheduler.idle()
    scheduler.trigger("bg1")
    scheduler.trigger("bg2")
    await async_wait_for(lambda: fake.active == 1)  # bg1 holds the only slot, bg2 waits
    # run=now, run=inspect and a create go ahead, with API priority, while it is held.
    before = len(fake.priorities)
    event = await asyncio.wait_for(scheduler.run_now("api"), 10)
    assert event is not None and event.success
    plan = await asyncio.wait_for(scheduler.inspect("api"), 10)
    assert plan.changes_present
    await asyncio.wait_for(scheduler.prepare(spec("new"), tmp_path), 10)
    scheduler.release("new")
    api = [p for n, _, p in fake.priorities[before:] if n in ("api", "new")]
    assert api and all(p is Priority.API for p in api)
    assert {p for n, op, p in fake.priorities if n.startswith("bg") and op == "apply"} == {
        Priority.BACKGROUND
    }
    gate1.set()
    fake.gates["bg2"].set()
    await scheduler.idle()
    await scheduler.shutdown(0)


async def test_a_deleted_tasks_metrics_go_with_it(tmp_path: Path) -> None:
    from reconciler.daemon.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()
    registry, scheduler, _ = make_scheduler(tmp_path, recorder=metrics)
    create(registry, live(spec("gone")), live(spec("kept")))
    await scheduler.run_now("gone")
    await scheduler.run_now("kept")
    value = metrics.registry.get_sample_value
    assert value("reconciler_runs_total", {"task": "gone", "outcome": "success"}) == 1
    task = registry.get("gone")
    assert task is not None
    registry.apply(RegistryChange(deleted=(task,)))
    await async_wait_for(lambda: "gone" not in scheduler.queue.tasks)
    assert value("reconciler_runs_total", {"task": "gone", "outcome": "success"}) is None
    assert value("reconciler_run_duration_seconds_count", {"task": "gone"}) is None
    assert value("reconciler_runs_total", {"task": "kept", "outcome": "success"}) == 1
    await scheduler.shutdown(0)
