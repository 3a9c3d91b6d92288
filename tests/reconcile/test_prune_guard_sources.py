"""The prune guard belongs to one source: another source's reconcile never releases it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from helpers import async_wait_for, task_hcl

from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.registry.store import Registry
from reconciler.sources.directory import DirectorySource


def _sync(reconciler: Reconciler, name: str, source: DirectorySource) -> None:
    update = source.full_scan()
    parsed = reconciler.parse(update, source.display_path)
    reconciler.apply(name, update, parsed, source.display_path)


def _two_sources(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "a1.hcl").write_text(task_hcl("a1"))
    (a / "a2.hcl").write_text(task_hcl("a2"))
    (b / "b1.hcl").write_text(task_hcl("b1"))
    return a, b


def test_a_change_in_another_source_keeps_the_guarded_tasks(tmp_path: Path) -> None:
    a, b = _two_sources(tmp_path)
    registry = Registry()
    reconciler = Reconciler(registry)
    src_a = DirectorySource(a, name="A", display_base=tmp_path)
    src_b = DirectorySource(b, name="B", display_base=tmp_path)
    status_a = reconciler.add_source("A")
    status_b = reconciler.add_source("B")
    _sync(reconciler, "A", src_a)
    _sync(reconciler, "B", src_b)
    assert set(registry.names()) == {"a1", "a2", "b1"}

    for f in a.iterdir():
        f.unlink()
    _sync(reconciler, "A", src_a)
    assert status_a.guard is not None and "source 'A'" in status_a.guard
    assert set(registry.names()) == {"a1", "a2", "b1"}

    (b / "b2.hcl").write_text(task_hcl("b2"))
    _sync(reconciler, "B", src_b)
    assert set(registry.names()) == {"a1", "a2", "b1", "b2"}
    assert status_a.guard is not None, "B's reconcile released A's guard"
    assert status_b.guard is None

    # A's own files coming back release A's guard.
    (a / "a1.hcl").write_text(task_hcl("a1"))
    _sync(reconciler, "A", src_a)
    assert status_a.guard is None
    assert set(registry.names()) == {"a1", "b1", "b2"}


def test_two_guarded_sources_are_held_and_released_separately(tmp_path: Path) -> None:
    a, b = _two_sources(tmp_path)
    (b / "b2.hcl").write_text(task_hcl("b2"))
    registry = Registry()
    reconciler = Reconciler(registry)
    src_a = DirectorySource(a, name="A", display_base=tmp_path)
    src_b = DirectorySource(b, name="B", display_base=tmp_path)
    status_a, status_b = reconciler.add_source("A"), reconciler.add_source("B")
    _sync(reconciler, "A", src_a)
    _sync(reconciler, "B", src_b)
    for root in (a, b):
        for f in root.iterdir():
            f.unlink()
    _sync(reconciler, "A", src_a)
    _sync(reconciler, "B", src_b)
    assert status_a.guard is not None and "source 'A'" in status_a.guard
    assert status_b.guard is not None and "source 'B'" in status_b.guard
    (b / "b3.hcl").write_text(task_hcl("b3"))
    _sync(reconciler, "B", src_b)
    assert status_b.guard is None
    assert status_a.guard is not None
    assert set(registry.names()) == {"a1", "a2", "b3"}


def test_two_watched_directories_keep_the_guard_of_the_emptied_one(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = _two_sources(tmp_path)
        registry = Registry()
        reconciler = Reconciler(registry)
        loops = [
            SourceLoop(DirectorySource(a, name="A"), reconciler),
            SourceLoop(DirectorySource(b, name="B"), reconciler),
        ]
        for loop in loops:
            await loop.initial_load()
        runners = [asyncio.create_task(loop.run()) for loop in loops]
        try:
            for loop in loops:
                await async_wait_for(lambda loop=loop: loop.source.watching, what="watcher")  # type: ignore[attr-defined,misc]
            assert set(registry.names()) == {"a1", "a2", "b1"}
            for f in a.iterdir():
                f.unlink()
            await async_wait_for(lambda: loops[0].status.guard is not None, what="A's guard")
            (b / "b2.hcl").write_text(task_hcl("b2"))
            await async_wait_for(lambda: "b2" in registry, what="B's new task")
            assert set(registry.names()) == {"a1", "a2", "b1", "b2"}
            assert loops[0].status.guard is not None
            assert loops[1].status.guard is None
        finally:
            for runner in runners:
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
            for loop in loops:
                loop.close()

    asyncio.run(main())
