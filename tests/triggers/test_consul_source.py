"""Consul conditions as a trigger source: the behaviours CTS's end-to-end suite asserts,
against the in-test Consul server, with the run queue and a fake Terraform driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from consulfake import FakeConsul
from helpers import async_wait_for
from runfakes import FakeDriver, create, live, make_scheduler, spec

from reconciler.consul import ConsulWatchers
from reconciler.consul.catalog import ConsulCatalog
from reconciler.registry.store import Registry, RegistryChange
from reconciler.runs.scheduler import Scheduler
from reconciler.taskfiles.model import (
    CatalogServicesCondition,
    ConsulKVCondition,
    ConsulKVInput,
    ServicesCondition,
)
from reconciler.triggers.consul import ConsulSource, NoConsulSource
from reconciler.triggers.schedule import CronSource

pytestmark = pytest.mark.anyio


@pytest.fixture
async def running(
    tmp_path: Path, watchers: ConsulWatchers
) -> AsyncIterator[tuple[Registry, Scheduler, FakeDriver]]:
    registry, scheduler, fake = make_scheduler(
        tmp_path,
        catalog=ConsulCatalog(watchers),
        sources=[CronSource(), ConsulSource(watchers)],
    )
    yield registry, scheduler, fake
    await scheduler.shutdown(0)


def applies(fake: FakeDriver, name: str) -> int:
    return len(fake.ops(name, "apply"))


async def settle(scheduler: Scheduler, fake: FakeDriver, name: str, count: int) -> None:
    await async_wait_for(lambda: applies(fake, name) >= count, timeout=10)
    await scheduler.idle()


async def test_registration_and_deregistration_trigger_with_the_right_instances(
    consul: FakeConsul, running: tuple[Registry, Scheduler, FakeDriver]
) -> None:
    registry, scheduler, fake = running
    await consul.register("web", id="web-1", address="10.0.0.1")
    await consul.register("api", id="api-1")
    create(registry, live(spec("t", condition=ServicesCondition(names=("web",)))))
    # The first answer is the task's start: one run with the data it watches.
    await settle(scheduler, fake, "t", 1)
    assert '"web-1.node-1.dc1"' in fake.tfvars["t"][0]
    assert "api-1" not in fake.tfvars["t"][0]

    await consul.register("web", id="web-2", address="10.0.0.2")
    await settle(scheduler, fake, "t", 2)
    assert '"web-2.node-1.dc1"' in fake.tfvars["t"][1]

    await consul.deregister("web-1")
    await settle(scheduler, fake, "t", 3)
    assert "web-1" not in fake.tfvars["t"][2] and "web-2" in fake.tfvars["t"][2]
    assert scheduler.status.status("t") == "successful"
    [described] = scheduler.waiting_on("t")["consul"]["queries"]  # type: ignore[misc]
    assert described["query"] == "health.service(web)"
    assert described["status"] == "watching" and described["index"] > 0


async def test_critical_instances_leave_unless_the_filter_asks_for_them(
    consul: FakeConsul, running: tuple[Registry, Scheduler, FakeDriver]
) -> None:
    registry, scheduler, fake = running
    await consul.register("web", id="web-1")
    await consul.register("web", id="web-2")
    create(
        registry,
        live(spec("passing", condition=ServicesCondition(names=("web",)))),
        live(
            spec(
                "any",
                condition=ServicesCondition(
                    names=("web",), filter='Checks.Status != "maintenance"'
                ),
            )
        ),
    )
    await settle(scheduler, fake, "passing", 1)
    await settle(scheduler, fake, "any", 1)
    await consul.set_status("web-2", "critical")
    await settle(scheduler, fake, "passing", 2)
    await settle(scheduler, fake, "any", 2)
    assert "web-2" not in fake.tfvars["passing"][1]
    assert "web-2" in fake.tfvars["any"][1] and '"critical"' in fake.tfvars["any"][1]


async def test_unwatched_services_and_unrelated_keys_trigger_nothing(
    consul: FakeConsul, running: tuple[Registry, Scheduler, FakeDriver]
) -> None:
    registry, scheduler, fake = running
    await consul.register("web", id="web-1")
    await consul.kv_put("flags/a", "1")
    create(
        registry,
        live(spec("svc", condition=ServicesCondition(names=("web",)))),
        live(spec("kv", condition=ConsulKVCondition(path="flags/a"))),
    )
    await settle(scheduler, fake, "svc", 1)
    await settle(scheduler, fake, "kv", 1)
    await consul.register("db", id="db-1")
    await consul.kv_put("flags/b", "2")
    await consul.touch()
    # A change the tasks watch, last: once it has run, the others would have too.
    await consul.kv_put("flags/a", "3")
    await settle(scheduler, fake, "kv", 2)
    assert 'flags/a" = "3"' in fake.tfvars["kv"][1] or '"flags/a" = "3"' in fake.tfvars["kv"][1]
    assert applies(fake, "svc") == 1


async def test_kv_recurse_sees_children_created_updated_and_deleted(
    consul: FakeConsul, running: tuple[Registry, Scheduler, FakeDriver]
) -> None:
    registry, scheduler, fake = running
    await consul.kv_put("app/x", "1")
    create(registry, live(spec("kv", condition=ConsulKVCondition(path="app", recurse=True))))
    await settle(scheduler, fake, "kv", 1)
    await consul.kv_put("app/y", "2")
    await settle(scheduler, fake, "kv", 2)
    await consul.kv_put("app/y", "3")
    await settle(scheduler, fake, "kv", 3)
    await consul.kv_delete("app/x")
    await settle(scheduler, fake, "kv", 4)
    assert "app/x" not in fake.tfvars["kv"][3] and '"3"' in fake.tfvars["kv"][3]


async def test_catalog_services_ignores_new_instances_and_tags(
    consul: FakeConsul, running: tuple[Registry, Scheduler, FakeDriver]
) -> None:
    registry, scheduler, fake = running
    await consul.register("web", id="web-1", tags=["a"])
    create(
        registry,
        live(spec("cat", condition=CatalogServicesCondition(regexp="^(web|api)$"))),
    )
    await settle(scheduler, fake, "cat", 1)
    await consul.register("web", id="web-2", tags=["b"])  # a new instance with a new tag
    await consul.register("other", id="other-1")  # does not match
    await consul.register("api", id="api-1")  # a new matching service: triggers
    await settle(scheduler, fake, "cat", 2)
    assert applies(fake, "cat") == 2
    assert "api" in fake.tfvars["cat"][1]


async def test_changes_during_a_run_give_exactly_one_more_run_with_the_latest_data(
    consul: FakeConsul, running: tuple[Registry, Scheduler, FakeDriver]
) -> None:
    registry, scheduler, fake = running
    await consul.register("web", id="web-1")
    create(registry, live(spec("t", condition=ServicesCondition(names=("web",)))))
    await settle(scheduler, fake, "t", 1)
    fake.gates["t"] = gate = asyncio.Event()
    await consul.register("web", id="web-2")
    await async_wait_for(lambda: fake.active == 1)
    for n in (3, 4, 5):  # three changes while the run is held, each one seen
        await consul.register("web", id=f"web-{n}")
        await async_wait_for(lambda: (watched_index(scheduler) or 0) >= consul.index)
    gate.set()
    del fake.gates["t"]
    await settle(scheduler, fake, "t", 3)
    assert applies(fake, "t") == 3
    assert all(f"web-{n}" in fake.tfvars["t"][2] for n in (1, 2, 3, 4, 5))


def watched_index(scheduler: Scheduler) -> int | None:
    waits = scheduler.waiting_on("t").get("consul")
    if not waits:
        return None
    queries = waits["queries"]
    assert isinstance(queries, list)
    index = queries[0].get("index")
    return index if isinstance(index, int) else None


async def test_a_recreated_task_still_triggers_and_tasks_share_a_watcher(
    consul: FakeConsul,
    watchers: ConsulWatchers,
    running: tuple[Registry, Scheduler, FakeDriver],
) -> None:
    registry, scheduler, fake = running
    await consul.register("web", id="web-1")
    first = live(spec("a", condition=ServicesCondition(names=("web",))))
    create(registry, first, live(spec("b", condition=ServicesCondition(names=("web",)))))
    await settle(scheduler, fake, "a", 1)
    await settle(scheduler, fake, "b", 1)
    assert len(watchers) == 1  # one long poll for both tasks
    registry.apply(RegistryChange(deleted=(first,)))
    await scheduler.idle()
    create(registry, live(spec("a", condition=ServicesCondition(names=("web",))), revision="r2"))
    await settle(scheduler, fake, "a", 2)  # the re-created task starts again
    await consul.register("web", id="web-2")
    await settle(scheduler, fake, "a", 3)
    await settle(scheduler, fake, "b", 2)


async def test_a_changed_condition_stops_the_old_subscription(
    consul: FakeConsul,
    watchers: ConsulWatchers,
    running: tuple[Registry, Scheduler, FakeDriver],
) -> None:
    registry, scheduler, fake = running
    await consul.register("web", id="web-1")
    await consul.register("api", id="api-1")
    old = live(spec("t", condition=ServicesCondition(names=("web",))))
    create(registry, old)
    await settle(scheduler, fake, "t", 1)
    new = live(spec("t", condition=ServicesCondition(names=("api",))), revision="r2")
    registry.apply(RegistryChange(updated=((old, new),)))
    await settle(scheduler, fake, "t", 2)
    await async_wait_for(lambda: len(watchers) == 1)
    assert [s.query for s in watchers.states()] == ["health.service(api)"]
    await consul.register("web", id="web-2")
    await consul.register("api", id="api-2")
    await settle(scheduler, fake, "t", 3)
    assert applies(fake, "t") == 3


async def test_module_inputs_never_trigger_but_are_read_at_the_next_run(
    consul: FakeConsul, running: tuple[Registry, Scheduler, FakeDriver]
) -> None:
    registry, scheduler, fake = running
    await consul.register("web", id="web-1")
    await consul.kv_put("cfg", "old")
    task = spec(
        "t",
        condition=ServicesCondition(names=("web",)),
        module_inputs=(ConsulKVInput(path="cfg"),),
    )
    create(registry, live(task))
    await settle(scheduler, fake, "t", 1)
    await consul.kv_put("cfg", "new")
    await consul.register("web", id="web-2")  # the condition fires
    await settle(scheduler, fake, "t", 2)
    assert applies(fake, "t") == 2
    assert '"new"' in fake.tfvars["t"][1]


async def test_a_rejected_datacenter_is_shown_as_the_tasks_error(
    consul: FakeConsul, running: tuple[Registry, Scheduler, FakeDriver]
) -> None:
    registry, scheduler, fake = running
    create(registry, live(spec("t", condition=ServicesCondition(names=("web",), datacenter="x"))))
    await async_wait_for(lambda: scheduler.state("t").init_error is not None)
    assert "consul" in (scheduler.state("t").init_error or "")
    assert applies(fake, "t") == 0


async def test_without_consul_a_consul_task_says_nothing_triggers_it(tmp_path: Path) -> None:
    registry, scheduler, _ = make_scheduler(tmp_path, sources=[CronSource(), NoConsulSource()])
    create(registry, live(spec("t", condition=ServicesCondition(names=("web",)))))
    assert scheduler.state("t").init_error is None  # a note, not an error
    note = scheduler.waiting_on("t")["consul"]["note"]
    assert isinstance(note, str) and "no consul block is configured" in note
    registry.apply(RegistryChange(deleted=(live(spec("t")),)))
    assert scheduler.waiting_on("t") == {}
    await scheduler.shutdown(0)
