"""Nothing acknowledged is lost: across a restart, and under many concurrent clients."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx2
import pytest
from apikit import Core, running_core
from helpers import task_hcl

pytestmark = pytest.mark.anyio


def task(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "module": "./mod", "condition": {"services": {"names": [name]}}, **extra}


async def test_restart_gives_the_same_registry(task_dir: Path) -> None:
    (task_dir / "hand.hcl").write_text(task_hcl("hand") + "\n" + task_hcl("hand2"))
    async with running_core(task_dir) as core:
        for name in ("a", "b", "c"):
            assert (await core.post_task(task(name, description=f"task {name}"))).status_code == 201
        assert (await core.client.patch("/v1/tasks/b", json={"enabled": False})).status_code == 200
        assert (
            await core.client.patch("/v1/tasks/hand2", json={"enabled": False})
        ).status_code == 200
        assert (await core.client.delete("/v1/tasks/c")).status_code == 202
        assert (await core.client.delete("/v1/tasks/hand")).status_code == 202
        before = core.specs()
        listing = (await core.client.get("/v1/tasks")).json()["tasks"]
    assert sorted(before) == ["a", "b", "hand2"]

    async with running_core(task_dir) as fresh:
        assert fresh.specs() == before
        fresh.assert_files_agree()
        assert (await fresh.client.get("/v1/tasks")).json()["tasks"] == listing


async def test_fifty_concurrent_clients(core: Core) -> None:
    outcomes: dict[str, list[tuple[str, int]]] = {}

    async def client_session(i: int) -> None:
        name = f"t{i:02d}"
        log = outcomes.setdefault(name, [])
        transport = httpx2.ASGITransport(app=core.app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://x") as client:
            r = await client.post("/v1/tasks", json={"task": task(name)})
            log.append(("create", r.status_code))
            # Everyone also races for one shared name: exactly one may win.
            r = await client.post("/v1/tasks", json={"task": task("shared")})
            outcomes.setdefault("shared", []).append(("create", r.status_code))
            r = await client.patch(f"/v1/tasks/{name}", json={"enabled": i % 2 == 0})
            log.append(("patch", r.status_code))
            if i % 3 == 0:
                r = await client.delete(f"/v1/tasks/{name}")
                log.append(("delete", r.status_code))
            r = await client.get("/v1/tasks")
            assert r.status_code == 200

    await asyncio.gather(*(client_session(i) for i in range(50)))

    shared = [status for _, status in outcomes.pop("shared")]
    assert shared.count(201) == 1 and shared.count(400) == 49
    specs = core.specs()
    for i in range(50):
        name = f"t{i:02d}"
        log = dict(outcomes[name])
        assert log["create"] == 201 and log["patch"] == 200, (name, log)
        if i % 3 == 0:
            assert log["delete"] == 202 and name not in specs
        else:
            assert specs[name].enabled is (i % 2 == 0)
    assert "shared" in specs
    assert len(specs) == 1 + sum(1 for i in range(50) if i % 3)
    core.assert_files_agree()
    listing = (await core.client.get("/v1/tasks")).json()["tasks"]
    assert [t["name"] for t in listing] == sorted(specs)
