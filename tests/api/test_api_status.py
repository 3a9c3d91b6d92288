"""/v1/status, /v1/status/tasks[/{name}] and /v1/health."""

from __future__ import annotations

import shutil

import pytest
from apikit import Core, assert_error
from helpers import async_wait_for, task_hcl, write_atomic

pytestmark = pytest.mark.anyio


async def two_tasks(core: Core) -> None:
    write_atomic(core.root / "a.hcl", task_hcl("a", providers='["aws"]'))
    write_atomic(core.root / "b.hcl", task_hcl("b", enabled="false"))
    await async_wait_for(lambda: len(core.registry) == 2, what="two tasks")


async def test_overall_status(core: Core) -> None:
    await two_tasks(core)
    body = (await core.client.get("/v1/status")).json()
    assert body["task_summary"] == {
        "status": {"successful": 0, "errored": 0, "critical": 0, "unknown": 2},
        "enabled": {"true": 1, "false": 1},
    }
    assert body["sources"] == {
        "directory": {
            "error": None,
            "failed_attempts": 0,
            "next_attempt_at": None,
            "prune_guard": None,
            "revision": None,
            "files_with_problems": {},
            "details": {"path": str(core.root)},
        }
    }


async def test_task_statuses(core: Core) -> None:
    await two_tasks(core)
    response = await core.client.get("/v1/status/tasks")
    assert response.status_code == 200
    body = response.json()
    assert sorted(body) == ["a", "b"]
    live = core.registry.get("a")
    assert live is not None
    assert body["a"] == {
        "task_name": "a",
        "status": "unknown",
        "enabled": True,
        "events_url": "",
        "providers": ["aws"],
        "services": [],
        "source": {"file": "tasks/a.hcl", "line": 1, "revision": live.provenance.revision},
        "file_errors": [],
        "active": False,
        "deleting": False,
        "init_error": None,
        "desired_revision": live.provenance.revision,
        "last_attempted_revision": None,
        "last_applied_revision": None,
        "waiting_on": {},
        "override": None,
    }
    assert body["b"]["enabled"] is False

    with_events = (await core.client.get("/v1/status/tasks?include=events")).json()
    assert with_events["a"]["events"] == [] and "events" not in body["a"]
    assert sorted((await core.client.get("/v1/status/tasks?status=UNKNOWN")).json()) == ["a", "b"]
    assert (await core.client.get("/v1/status/tasks?status=successful")).json() == {}

    one = (await core.client.get("/v1/status/tasks/b")).json()
    assert list(one) == ["b"] and one["b"]["task_name"] == "b"
    assert_error(await core.client.get("/v1/status/tasks/nope"), 404, "nope")


@pytest.mark.parametrize(
    "query, fragment",
    [
        ("include=event", "include"),
        ("include=events&include=events", "more than one include"),
        ("status=fine", "status"),
        ("status=unknown&status=errored", "more than one status"),
    ],
)
async def test_status_query_errors(core: Core, query: str, fragment: str) -> None:
    await two_tasks(core)
    assert_error(await core.client.get(f"/v1/status/tasks?{query}"), 400, fragment)
    assert_error(await core.client.get(f"/v1/status/tasks/a?{query}"), 400, fragment)
    assert_error(await core.client.get(f"/v1/status/tasks/zz?{query}"), 400, fragment)


async def test_file_errors_are_shown_per_task_and_source(core: Core) -> None:
    await two_tasks(core)
    write_atomic(core.root / "a.hcl", task_hcl("a") + "garbage {")
    await async_wait_for(lambda: "tasks/a.hcl" in core.reconciler.problems(), what="problem")
    status = (await core.client.get("/v1/status/tasks/a")).json()["a"]
    assert status["file_errors"] and "tasks/a.hcl" in status["file_errors"][0]
    overall = (await core.client.get("/v1/status")).json()
    broken = overall["sources"]["directory"]["files_with_problems"]
    assert list(broken) == ["tasks/a.hcl"]
    entry = broken["tasks/a.hcl"]
    assert entry["errors"] == status["file_errors"]
    # The newest content is attempted, the last good one stays applied.
    assert entry["last_attempted_revision"] != entry["last_applied_revision"]
    live = core.registry.get("a")
    assert live is not None and entry["last_applied_revision"] == live.provenance.revision
    # A broken file is reported, but the daemon is still healthy.
    assert (await core.client.get("/v1/health")).status_code == 200


async def test_health(core: Core) -> None:
    response = await core.client.get("/v1/health")
    assert response.status_code == 200 and response.json() == {}
    await two_tasks(core)

    # Every file gone at once: the prune guard holds the tasks, and health says why.
    (core.root / "a.hcl").unlink()
    (core.root / "b.hcl").unlink()
    await async_wait_for(lambda: core.loop.status.guard is not None, what="the prune guard")
    assert_error(await core.client.get("/v1/health"), 503, "refusing to remove")
    assert len(core.registry) == 2

    # The directory itself gone: the source is unavailable.
    shutil.rmtree(core.root)
    await async_wait_for(lambda: core.loop.status.error is not None, what="the source error")
    assert_error(
        await core.client.get("/v1/health"), 503, "unavailable", "does not exist", "next attempt at"
    )
    overall = (await core.client.get("/v1/status")).json()
    assert "does not exist" in overall["sources"]["directory"]["error"]
    assert overall["sources"]["directory"]["failed_attempts"] >= 1
    assert overall["sources"]["directory"]["next_attempt_at"].endswith("Z")
