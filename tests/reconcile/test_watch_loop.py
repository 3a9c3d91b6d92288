"""The live loop on a real directory with the real watcher: edits land without a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from helpers import async_wait_for, fresh_load, task_hcl, write_atomic

from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.registry.store import Registry
from reconciler.sources.directory import DirectorySource


@asynccontextmanager
async def live(root: Path, **kwargs: float) -> AsyncIterator[tuple[Registry, SourceLoop]]:
    registry = Registry()
    loop = SourceLoop(DirectorySource(root), Reconciler(registry), **kwargs)  # type: ignore[arg-type]
    await loop.initial_load()
    runner = asyncio.create_task(loop.run())
    try:
        await async_wait_for(lambda: loop.source.watching, what="watcher")  # type: ignore[attr-defined]
        yield registry, loop
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        loop.close()


def names_of(registry: Registry) -> set[str]:
    return {t.spec.name for t in registry}


def run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


def test_editor_style_writes(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "a.hcl").write_text(task_hcl("a"))
        async with live(tmp_path) as (registry, _):
            assert names_of(registry) == {"a"}
            write_atomic(tmp_path / "a.hcl", task_hcl("a", names=("api",)))
            await async_wait_for(
                lambda: registry.get("a").spec.condition.names == ("api",),  # type: ignore[union-attr]
                what="edit to land",
            )
            write_atomic(tmp_path / "b.hcl", task_hcl("b"))
            await async_wait_for(lambda: names_of(registry) == {"a", "b"}, what="create")
            (tmp_path / "b.hcl").unlink()
            await async_wait_for(lambda: names_of(registry) == {"a"}, what="delete")

    run(main())


def test_vim_style_save_never_deletes_the_task(tmp_path: Path) -> None:
    async def main() -> None:
        target = tmp_path / "a.hcl"
        target.write_text(task_hcl("a"))
        (tmp_path / "b.hcl").write_text(task_hcl("b"))
        async with live(tmp_path) as (registry, _):
            deleted: list[str] = []
            registry.subscribe(lambda c: deleted.extend(t.spec.name for t in c.deleted))
            # vim: rename the file away, write a new one, remove the backup.
            os.rename(target, tmp_path / "a.hcl~")
            target.write_text(task_hcl("a", names=("vim",)))
            (tmp_path / "a.hcl~").unlink()
            await async_wait_for(
                lambda: registry.get("a").spec.condition.names == ("vim",),  # type: ignore[union-attr]
                what="vim save",
            )
            assert deleted == []

    run(main())


def test_git_checkout_of_many_files(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    async def main() -> None:
        git("init", "-q", "-b", "one")
        git("config", "user.email", "t@example.com")
        git("config", "user.name", "t")
        for i in range(300):
            (tmp_path / f"t{i:03}.hcl").write_text(task_hcl(f"t{i:03}"))
        git("add", "-A")
        git("commit", "-qm", "one")
        git("checkout", "-qb", "two")
        for i in range(0, 300, 2):
            (tmp_path / f"t{i:03}.hcl").write_text(task_hcl(f"t{i:03}", names=("two",)))
        for i in range(300, 500):
            (tmp_path / f"t{i:03}.hcl").write_text(task_hcl(f"t{i:03}"))
        (tmp_path / "t001.hcl").unlink()
        git("add", "-A")
        git("commit", "-qm", "two")
        git("checkout", "-q", "one")
        async with live(tmp_path) as (registry, _loop):
            assert len(registry) == 300
            git("checkout", "-q", "two")
            expected = fresh_load(tmp_path)
            assert len(expected) == 499
            await async_wait_for(
                lambda: {t.spec.name: t.spec for t in registry} == expected,
                what="checkout to land",
            )
            git("checkout", "-q", "one")
            expected = fresh_load(tmp_path)
            await async_wait_for(
                lambda: {t.spec.name: t.spec for t in registry} == expected,
                what="checkout back",
            )

    run(main())


def test_directory_removed_and_restored(tmp_path: Path) -> None:
    async def main() -> None:
        root = tmp_path / "tasks"
        root.mkdir()
        for n in ("a", "b"):
            (root / f"{n}.hcl").write_text(task_hcl(n))
        async with live(root, retry_interval=0.05) as (registry, loop):
            aside = tmp_path / "aside"
            root.rename(aside)
            await async_wait_for(lambda: loop.status.error is not None, what="source error")
            assert names_of(registry) == {"a", "b"}  # nothing pruned
            aside.rename(root)
            await async_wait_for(lambda: loop.status.error is None, what="recovery")
            await async_wait_for(lambda: loop.source.watching, what="re-armed watcher")  # type: ignore[attr-defined]
            write_atomic(root / "c.hcl", task_hcl("c"))
            await async_wait_for(lambda: names_of(registry) == {"a", "b", "c"}, what="new file")

    run(main())


def test_periodic_rescan_catches_what_the_watcher_missed(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "a.hcl").write_text(task_hcl("a"))
        async with live(tmp_path, rescan_interval=0.1) as (registry, loop):
            loop.hint = lambda rel: None  # type: ignore[method-assign]  # events get lost
            (tmp_path / "b.hcl").write_text(task_hcl("b"))
            await async_wait_for(lambda: names_of(registry) == {"a", "b"}, what="rescan")

    run(main())


def test_an_edit_in_the_root_rescans_only_that_file(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / "a.hcl").write_text(task_hcl("a"))
        async with live(tmp_path) as (registry, loop):
            source = loop.source
            full_scans: list[int] = []
            original = source.full_scan

            def counting() -> object:
                full_scans.append(1)
                return original()

            source.full_scan = counting  # type: ignore[method-assign]
            # The directory's own "modified" events must not cost a full rescan.
            write_atomic(tmp_path / "b.hcl", task_hcl("b"))
            (tmp_path / "c.hcl").write_text(task_hcl("c"))
            await async_wait_for(lambda: names_of(registry) == {"a", "b", "c"}, what="edits")
            assert full_scans == []

    run(main())


# Far longer than any wait below: an edit that lands was not debounced.
NEVER = 600.0


def names_in(registry: Registry, task: str) -> tuple[str, ...]:
    live = registry.get(task)
    assert live is not None and live.spec.condition is not None
    return live.spec.condition.names  # type: ignore[attr-defined,no-any-return]


def test_a_finished_write_is_reconciled_without_the_debounce(tmp_path: Path) -> None:
    """A rename into place (IN_MOVED_TO) and a close after writing (IN_CLOSE_WRITE) say
    the write is over: the pass starts at once, whatever the debounce."""

    async def main() -> None:
        target = tmp_path / "a.hcl"
        target.write_text(task_hcl("a"))
        async with live(tmp_path, debounce=NEVER, max_delay=NEVER) as (registry, _):
            write_atomic(target, task_hcl("a", names=("renamed",)))
            await async_wait_for(lambda: names_in(registry, "a") == ("renamed",), 60, "rename")
            with open(target, "w") as out:  # in place: truncate, write, close
                out.write(task_hcl("a", names=("closed",)))
            await async_wait_for(lambda: names_in(registry, "a") == ("closed",), 60, "close")
            write_atomic(tmp_path / "b.hcl", task_hcl("b"))
            await async_wait_for(lambda: names_of(registry) == {"a", "b"}, 60, "new file")

    run(main())


def test_a_write_still_open_waits_for_its_close(tmp_path: Path) -> None:
    """A file being written (modified, not yet closed) is not read half-way: its pass
    waits for the quiet period or the close, whichever comes first."""

    async def main() -> None:
        target = tmp_path / "a.hcl"
        target.write_text(task_hcl("a"))
        async with live(tmp_path, debounce=NEVER, max_delay=NEVER) as (registry, loop):
            with open(target, "w") as out:
                out.write(task_hcl("a", names=("half",))[:20])
                out.flush()
                # The watcher reported the modification; the loop holds it back.
                await async_wait_for(lambda: "a.hcl" in loop._unsettled, 60, "the hint")
                assert names_in(registry, "a") == ("web",) and loop.reconciles == 1
                out.seek(0)
                out.truncate()
                out.write(task_hcl("a", names=("whole",)))
            await async_wait_for(lambda: names_in(registry, "a") == ("whole",), 60, "close")
            assert registry.get("a") is not None  # never read as a broken half file

    run(main())
