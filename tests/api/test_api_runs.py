"""run=inspect / run=now, deferred deletion and task status over a fake driver.

tests/scenarios/test_terraform_runs.py repeats these with the real Terraform."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from apikit import Core, assert_error, assert_matches, running_core
from helpers import async_wait_for, task_hcl, write_atomic
from runfakes import FakeDriver

from reconciler.registry.status import Event, now

pytestmark = pytest.mark.anyio

TASK = {"name": "web", "module": "./mod", "condition": {"services": {"names": ["web"]}}}


async def test_post_inspect_plans_in_a_throwaway_workspace(task_dir: Path) -> None:
    fake = FakeDriver()
    async with running_core(task_dir, driver=fake) as core:
        response = await core.post_task(TASK, run="inspect")
        assert response.status_code == 200, response.text
        body = response.json()
        assert sorted(body) == ["request_id", "run", "task"]
        assert body["run"] == {"plan": "plan of web", "changes_present": True}
        assert body["task"]["name"] == "web"
        # Nothing written, nothing added, nothing left behind.
        assert list(task_dir.iterdir()) == []
        assert len(core.registry) == 0 and not core.scheduler.known("web")
        assert fake.ops("web") == ["init", "plan"]
        assert core.scheduler.status.events("web") == []
        assert not (task_dir.parent / "work" / "web").exists()

        fake.failing["web"] = {"init"}
        assert_error(await core.post_task(TASK, run="inspect"), 400, "fake failure of web")


async def test_post_run_now_applies_then_writes(task_dir: Path) -> None:
    fake = FakeDriver()
    async with running_core(task_dir, driver=fake) as core:
        response = await core.post_task(TASK, run="now")
        assert response.status_code == 201, response.text
        assert (task_dir / "web.hcl").exists() and "web" in core.registry
        await core.scheduler.idle()
        assert fake.ops("web") == ["init", "apply"]  # the file's task reuses the workspace
        status = (await core.client.get("/v1/status/tasks/web?include=events")).json()["web"]
        assert status["status"] == "successful"
        assert status["events_url"] == "/v1/status/tasks/web?include=events"
        [event] = status["events"]
        assert_matches(
            event,
            {
                "id": event["id"],
                "success": True,
                "start_time": event["start_time"],
                "end_time": event["end_time"],
                "task_name": "web",
                "error": None,
                "config": {"providers": [], "services": [], "source": "./mod"},
            },
        )
        # The module path is resolved against the directory the file was written to.
        main_tf = (task_dir.parent / "work" / "web" / "main.tf").read_text()
        assert 'source   = "../../tasks/mod"' in main_tf


async def test_post_run_now_failure_writes_nothing(task_dir: Path) -> None:
    fake = FakeDriver(failing={"web": {"apply"}})
    async with running_core(task_dir, driver=fake) as core:
        assert_error(await core.post_task(TASK, run="now"), 500, "fake failure of web")
        assert list(task_dir.iterdir()) == [] and len(core.registry) == 0
        assert fake.ops("web", "apply") == ["apply"]  # run=now does not retry
        assert core.scheduler.status.events("web") == []
        # The name is free again.
        fake.failing = {}
        assert (await core.post_task(TASK, run="now")).status_code == 201


async def test_post_initialises_before_writing(task_dir: Path) -> None:
    fake = FakeDriver(failing={"web": {"init"}})
    async with running_core(task_dir, driver=fake) as core:
        assert_error(await core.post_task(TASK), 500, "fake failure of web")
        assert list(task_dir.iterdir()) == []
        fake.failing = {}
        assert (await core.post_task({**TASK, "enabled": False}, run="now")).status_code == 201
        await core.scheduler.idle()
        assert fake.ops("web", "apply") == []  # a disabled task is added without running
        assert_error(await core.post_task(TASK), 400, "already exists")


async def test_patch_run_now_writes_then_applies(task_dir: Path) -> None:
    write_atomic(task_dir / "web.hcl", task_hcl("web", enabled="false"))
    fake = FakeDriver()
    async with running_core(task_dir, driver=fake) as core:
        await async_wait_for(lambda: "web" in core.registry)
        response = await core.client.patch("/v1/tasks/web?run=now", json={"enabled": True})
        assert response.status_code == 200 and response.json() == {}
        assert "enabled = true" in (task_dir / "web.hcl").read_text()
        assert fake.ops("web", "apply") == ["apply"]
        assert core.scheduler.status.status("web") == "successful"

        fake.failing["web"] = {"apply"}
        response = await core.client.patch("/v1/tasks/web?run=now", json={"enabled": True})
        assert_error(response, 500, "fake failure of web")
        assert core.scheduler.status.status("web") == "errored"


async def test_patch_inspect_changes_nothing(task_dir: Path) -> None:
    write_atomic(task_dir / "web.hcl", task_hcl("web"))
    fake = FakeDriver(changes_present=False)
    async with running_core(task_dir, driver=fake) as core:
        await async_wait_for(lambda: "web" in core.registry)
        before = (task_dir / "web.hcl").read_bytes()
        response = await core.client.patch("/v1/tasks/web?run=inspect", json={"enabled": False})
        skipped = "Task is disabled, inspection was skipped."
        assert response.json() == {"inspect": {"changes_present": False, "plan": skipped}}
        response = await core.client.patch("/v1/tasks/web?run=inspect", json={"enabled": True})
        assert response.json() == {"inspect": {"changes_present": False, "plan": "plan of web"}}
        assert (task_dir / "web.hcl").read_bytes() == before
        assert core.scheduler.status.events("web") == []


async def running(core: Core, fake: FakeDriver, name: str) -> asyncio.Event:
    gate = fake.gates[name] = asyncio.Event()
    assert core.scheduler.trigger(name)
    await async_wait_for(lambda: core.scheduler.state(name).active and fake.active == 1)
    return gate


async def test_changes_to_an_active_task_with_run_are_refused(task_dir: Path) -> None:
    write_atomic(task_dir / "web.hcl", task_hcl("web"))
    fake = FakeDriver()
    async with running_core(task_dir, driver=fake) as core:
        await async_wait_for(lambda: "web" in core.registry)
        gate = await running(core, fake, "web")
        for run in ("now", "inspect"):
            response = await core.client.patch(f"/v1/tasks/web?run={run}", json={"enabled": True})
            assert_error(response, 409, "'web' is active")
        # Without run it is only a file change, applied after the run.
        response = await core.client.patch("/v1/tasks/web", json={"enabled": False})
        assert response.status_code == 200
        gate.set()
        await core.scheduler.idle()


async def test_delete_of_a_running_task_is_deferred(task_dir: Path) -> None:
    write_atomic(task_dir / "web.hcl", task_hcl("web"))
    fake = FakeDriver()
    async with running_core(task_dir, driver=fake) as core:
        await async_wait_for(lambda: "web" in core.registry)
        core.scheduler.record(Event("web", True, now(), now()))
        gate = await running(core, fake, "web")

        response = await core.client.delete("/v1/tasks/web")
        assert response.status_code == 202
        assert not (task_dir / "web.hcl").exists()  # the block leaves its file at once
        assert "web" not in core.registry  # the registry follows the files
        # ... but the task is shown until its run ends.
        got = await core.client.get("/v1/tasks/web")
        assert got.status_code == 200 and got.json()["task"]["name"] == "web"
        listed = (await core.client.get("/v1/tasks")).json()["tasks"]
        assert [t["name"] for t in listed] == ["web"]
        status = (await core.client.get("/v1/status/tasks/web")).json()["web"]
        assert status["deleting"] and status["active"]
        assert (await core.client.get("/v1/status")).json()["task_summary"]["status"][
            "successful"
        ] == 1
        assert (await core.client.delete("/v1/tasks/web")).status_code == 202  # again: a no-op
        assert_error(await core.post_task(TASK), 400, "already exists")
        assert_error(await core.client.patch("/v1/tasks/web", json={"enabled": False}), 404, "web")

        gate.set()
        await async_wait_for(lambda: core.scheduler.deleting("web") is None)
        assert_error(await core.client.get("/v1/tasks/web"), 404)
        assert (await core.client.get("/v1/tasks")).json()["tasks"] == []
        assert_error(await core.client.get("/v1/status/tasks/web"), 404)
        assert_error(await core.client.delete("/v1/tasks/web"), 404)
        assert core.scheduler.status.events("web") == []


async def test_status_counts_follow_events(task_dir: Path) -> None:
    for name in ("a", "b", "c"):
        write_atomic(task_dir / f"{name}.hcl", task_hcl(name))
    fake = FakeDriver(failing={"b": {"apply"}, "c": {"init"}})
    async with running_core(task_dir, driver=fake) as core:
        await async_wait_for(lambda: len(core.registry) == 3)
        for name in ("a", "b", "c"):
            await core.scheduler.run_now(name)
        await core.scheduler.run_now("c")
        summary = (await core.client.get("/v1/status")).json()["task_summary"]
        assert summary["status"] == {"successful": 1, "errored": 1, "critical": 1, "unknown": 0}
        critical = (await core.client.get("/v1/status/tasks?status=critical")).json()
        assert list(critical) == ["c"]
        assert "fake failure of c" in critical["c"]["init_error"]


async def test_status_shows_the_revision_applied_next_to_the_one_desired(task_dir: Path) -> None:
    fake = FakeDriver()

    async def revisions(core: Core) -> tuple[str, str | None, str | None]:
        body = (await core.client.get("/v1/status/tasks/web")).json()["web"]
        return (
            body["desired_revision"],
            body["last_attempted_revision"],
            body["last_applied_revision"],
        )

    async with running_core(task_dir, driver=fake) as core:
        assert (await core.post_task(TASK, run="now")).status_code == 201
        first = core.registry.get("web")
        assert first is not None
        assert await revisions(core) == (first.provenance.revision,) * 3

        # A hand edit whose apply fails: desired and attempted move on, applied stays.
        write_atomic(task_dir / "web.hcl", task_hcl("web", description='"second"'))
        await async_wait_for(lambda: core.registry.get("web") != first, what="the edit")
        second = core.registry.get("web")
        assert second is not None and second.provenance.revision != first.provenance.revision
        fake.failing["web"] = {"apply"}
        event = await core.scheduler.run_now("web")
        assert event is not None and not event.success
        assert await revisions(core) == (
            second.provenance.revision,
            second.provenance.revision,
            first.provenance.revision,
        )
        await core.scheduler.status.flush()

    # Kept with the events across a restart.
    async with running_core(task_dir, driver=FakeDriver(failing={"web": {"apply"}})) as core:
        assert "web" in core.registry
        assert await revisions(core) == (
            second.provenance.revision,
            second.provenance.revision,
            first.provenance.revision,
        )


async def test_concurrent_creates_of_one_name_make_one_task(task_dir: Path) -> None:
    fake = FakeDriver(gates={"web": asyncio.Event()})
    async with running_core(task_dir, driver=fake) as core:
        first = asyncio.ensure_future(core.post_task(TASK, run="now"))
        await async_wait_for(lambda: fake.active == 1, what="the first create's apply")
        # The name is claimed while the first create applies: nothing else starts.
        assert_error(await core.post_task(TASK, run="now"), 400, "already exists")
        assert_error(await core.post_task(TASK), 400, "already exists")
        fake.gates["web"].set()
        assert (await first).status_code == 201
        assert fake.ops("web") == ["init", "apply"]
        assert [p.name for p in task_dir.iterdir()] == ["web.hcl"]
