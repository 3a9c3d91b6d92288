"""Group commit: concurrent API writes to one source share a batch (one hold of the
source's lock, one reconcile pass), yet each is made in the order it was accepted, each
answered only once its own change is in the file, and each failure is its own."""

from __future__ import annotations

import asyncio

import httpx2
import pytest
from apikit import Core
from helpers import async_wait_for, task_hcl, write_atomic

from reconciler._core.errors import ConflictError

pytestmark = pytest.mark.anyio


async def hand_tasks(core: Core, count: int) -> list[str]:
    names = [f"t{i:02d}" for i in range(count)]
    for name in names:
        write_atomic(core.root / f"{name}.hcl", task_hcl(name))
    await async_wait_for(lambda: len(core.registry) == count, what="the hand-written tasks")
    return names


async def test_concurrent_writes_share_batches_and_all_land(core: Core) -> None:
    names = await hand_tasks(core, 20)
    batcher = core.writeback.batcher(core.loop)
    before = batcher.batches
    await asyncio.gather(*(core.writeback.set_enabled(n, False) for n in names))
    # All twenty were queued before the first batch began: one batch made them all.
    assert batcher.batches - before == 1
    for name in names:
        assert "enabled = false" in (core.root / f"{name}.hcl").read_text()
        live = core.registry.get(name)
        assert live is not None and live.spec.enabled is False
    core.assert_files_agree()


async def test_two_clients_patching_one_task_end_with_the_one_answered_last(core: Core) -> None:
    (name,) = await hand_tasks(core, 1)
    answered: list[bool] = []

    async def patch(enabled: bool) -> None:
        transport = httpx2.ASGITransport(app=core.app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://x") as client:
            response = await client.patch(f"/v1/tasks/{name}", json={"enabled": enabled})
            assert response.status_code == 200, response.text
            answered.append(enabled)

    for _ in range(5):
        answered.clear()
        await asyncio.gather(patch(False), patch(True), patch(False), patch(True))
        assert len(answered) == 4
        last = answered[-1]
        text = (core.root / f"{name}.hcl").read_text()
        assert f"enabled = {'true' if last else 'false'}" in text, (answered, text)
        live = core.registry.get(name)
        assert live is not None and live.spec.is_enabled is last


async def test_a_failed_change_costs_only_its_own_caller(core: Core) -> None:
    names = await hand_tasks(core, 4)
    broken = core.root / f"{names[1]}.hcl"
    # Broken on disk after the last reconcile (the batch's own read finds it).
    core.loop.source.stop_watching()  # type: ignore[attr-defined]
    broken.write_text(task_hcl(names[1]) + "garbage {")
    results = await asyncio.gather(
        *(core.writeback.set_enabled(n, False) for n in names), return_exceptions=True
    )
    assert isinstance(results[1], ConflictError), results
    assert "garbage" in broken.read_text()
    for i in (0, 2, 3):
        assert not isinstance(results[i], BaseException), results[i]
        assert "enabled = false" in (core.root / f"{names[i]}.hcl").read_text()


async def test_a_caller_that_goes_away_does_not_undo_its_change(core: Core) -> None:
    names = await hand_tasks(core, 3)
    batcher = core.writeback.batcher(core.loop)
    before = batcher.submitted
    calls = [asyncio.ensure_future(core.writeback.set_enabled(n, False)) for n in names]
    await async_wait_for(lambda: batcher.submitted - before == 3, what="the changes queued")
    calls[1].cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    await async_wait_for(
        lambda: all("enabled = false" in (core.root / f"{n}.hcl").read_text() for n in names),
        what="every queued change, the abandoned one included",
    )
    await async_wait_for(
        lambda: all(
            (live := core.registry.get(n)) is not None and live.spec.enabled is False for n in names
        ),
        what="the registry to follow",
    )
