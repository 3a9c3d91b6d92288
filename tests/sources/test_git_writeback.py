"""API changes (through WriteBack, as the API makes them) become commits in the remote."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from gitkit import Remote, git, git_core, source, tasks
from helpers import async_wait_for, task_hcl

from reconciler._core.errors import ConflictError
from reconciler.sources.base import FileChange
from reconciler.taskfiles.model import ServicesCondition, TaskSpec


def spec(name: str) -> TaskSpec:
    return TaskSpec(name=name, module="./mod", condition=ServicesCondition(names=("web",)))


def changed_files(remote: Remote, ref: str = "main") -> list[str]:
    return git(remote.bare, "show", "--format=", "--name-only", ref).split()


def test_create_update_delete_are_commits_with_trailers(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a", folder="tasks"))
        src = source(remote, tmp_path / "work", path="tasks", push=True, author_name="bot")
        async with git_core(src, run=False) as core:
            await core.writeback.create(spec("web"), request_id="req-1")
            assert remote.messages(1) == [
                "create task web\n\nRequest-Id: req-1\nReconciler-Action: create"
            ]
            assert changed_files(remote) == ["tasks/web.hcl"]
            assert git(remote.bare, "log", "-1", "--format=%an <%ae>") == (
                "bot <reconciler@localhost>"
            )
            live = core.registry.get("web")
            assert live is not None and live.provenance.revision == remote.head()
            assert live.provenance.file == "tasks/web.hcl"

            await core.writeback.set_enabled("web", False, request_id="req-2")
            assert remote.messages(1)[0].startswith("update task web\n\nRequest-Id: req-2")
            assert changed_files(remote) == ["tasks/web.hcl"]
            assert "enabled = false" in (remote.show("tasks/web.hcl") or "")

            before = remote.head()
            await core.writeback.set_enabled("web", False, request_id="req-3")
            assert remote.head() == before  # nothing changed: no commit

            await core.writeback.delete("web", request_id="req-4")
            assert remote.messages(1) == [
                "delete task web\n\nRequest-Id: req-4\nReconciler-Action: delete"
            ]
            assert remote.show("tasks/web.hcl") is None
            assert core.names() == {"a"}
            assert core.source.status().unpushed_commits == 0

    asyncio.run(main())


def test_human_push_during_api_commit_is_rebased_and_both_land(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a"))
        async with git_core(source(remote, tmp_path / "work", push=True), run=False) as core:
            human = remote.commit_and_push(tasks("h"))  # after our last fetch
            await core.writeback.create(spec("web"), request_id="r")
            assert remote.files() >= {"a.hcl", "h.hcl", "web.hcl"}
            assert git(remote.bare, "rev-parse", "main~1") == human
            assert changed_files(remote) == ["web.hcl"]
            # The rebase brought the human's commit in: the registry has it at once.
            assert core.names() == {"a", "h", "web"}

    asyncio.run(main())


def test_same_file_changed_upstream_is_a_conflict_and_nothing_is_lost(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a", "b"))
        async with git_core(source(remote, tmp_path / "work", push=True), run=False) as core:
            human = remote.commit_and_push({"a.hcl": task_hcl("a", names=("human",))})
            with pytest.raises(ConflictError, match="changed upstream"):
                await core.writeback.set_enabled("a", False, request_id="r")
            assert remote.head() == human  # the human's change stands, ours was not made
            assert core.source.status().head_revision == human
            assert core.source.status().unpushed_commits == 0
            await core.loop.initial_load()  # the next fetch
            spec_a = core.spec("a")
            assert spec_a is not None and spec_a.condition is not None
            assert spec_a.condition.names == ("human",)  # type: ignore[union-attr]
            # Retrying against the new state works.
            await core.writeback.set_enabled("a", False, request_id="r2")
            assert "enabled = false" in (remote.show("a.hcl") or "")
            assert "human" in (remote.show("a.hcl") or "")

    asyncio.run(main())


def test_racing_human_pushes_and_api_commits_lose_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("seed"))
        stop = threading.Event()
        pushed: list[str] = []

        def human() -> None:
            i = 0
            while not stop.is_set() and i < 15:
                remote.commit_and_push(tasks(f"human{i}"))
                pushed.append(f"human{i}.hcl")
                i += 1

        src = source(remote, tmp_path / "work", push=True, push_retries=10)
        async with git_core(src, rescan_interval=0.05) as core:
            thread = threading.Thread(target=human)
            thread.start()
            acknowledged: list[str] = []
            refused: list[str] = []
            try:
                for i in range(15):
                    try:
                        await core.writeback.create(spec(f"api{i}"), request_id=f"r{i}")
                    except ConflictError as exc:
                        # Allowed when the branch keeps moving through every retry.
                        assert "kept moving" in str(exc)
                        refused.append(f"api{i}.hcl")
                    else:
                        acknowledged.append(f"api{i}.hcl")
            finally:
                stop.set()
                await asyncio.to_thread(thread.join)
            files = remote.files()
            assert set(acknowledged) <= files, set(acknowledged) - files
            assert not set(refused) & files  # a refused change was not made
            assert set(pushed) <= files
            assert len(acknowledged) > len(refused)
            expected = {n.removesuffix(".hcl") for n in files if n.endswith(".hcl")}
            await async_wait_for(lambda: core.names() == expected, what="registry to follow")

    asyncio.run(main())


def test_push_false_commits_locally_and_keeps_them_on_top_of_upstream(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a"))
        before = remote.head()
        async with git_core(source(remote, tmp_path / "work", push=False), run=False) as core:
            await core.writeback.create(spec("local"), request_id="r")
            assert remote.head() == before
            assert core.source.status().unpushed_commits == 1
            remote.commit_and_push(tasks("h"))
            await core.loop.initial_load()
            assert core.names() == {"a", "h", "local"}
            assert core.source.status().unpushed_commits == 1

    asyncio.run(main())


def test_change_to_an_existing_file_with_create_is_refused(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    src = source(remote, tmp_path / "work", push=True)
    try:
        src.full_scan()
        before = remote.head()
        with pytest.raises(FileExistsError):
            src.commit(FileChange("a.hcl", b"x", create=True, action="create", task="a"))
        assert remote.head() == before
        assert src.read("a.hcl") == task_hcl("a").encode()
    finally:
        src.close()


def test_a_batch_of_changes_is_one_commit_each_and_one_push(tmp_path: Path) -> None:
    async def main() -> None:
        names = [f"t{i}" for i in range(6)]
        remote = Remote.create(tmp_path, tasks(*names))
        async with git_core(source(remote, tmp_path / "work", push=True), run=False) as core:
            start = remote.head()
            batcher = core.writeback.batcher(core.loop)
            await asyncio.gather(
                *(core.writeback.set_enabled(n, False, request_id=f"r-{n}") for n in names),
                core.writeback.create(spec("new"), request_id="r-new"),
            )
            assert batcher.batches == 1
            commits = git(remote.bare, "rev-list", f"{start}..main").split()
            assert len(commits) == 7
            # In the order accepted, each with its own trailers and only its own file.
            messages = list(reversed(remote.messages(7)))
            assert [m.split("\n")[0] for m in messages] == [
                *(f"update task {n}" for n in names),
                "create task new",
            ]
            assert all(f"Request-Id: r-{n}" in messages[i] for i, n in enumerate(names))
            for commit in commits:
                assert len(changed_files(remote, commit)) == 1
            assert core.source.status().unpushed_commits == 0
            assert core.names() == {*names, "new"}

    asyncio.run(main())


def test_a_conflict_in_a_batch_fails_only_the_change_upstream_touched(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a", "b", "c"))
        async with git_core(source(remote, tmp_path / "work", push=True), run=False) as core:
            human = remote.commit_and_push({"a.hcl": task_hcl("a", names=("human",))})
            results = await asyncio.gather(
                core.writeback.set_enabled("a", False, request_id="ra"),
                core.writeback.set_enabled("b", False, request_id="rb"),
                core.writeback.create(spec("web"), request_id="rw"),
                return_exceptions=True,
            )
            assert isinstance(results[0], ConflictError), results
            assert "changed upstream" in str(results[0])
            assert not isinstance(results[1], BaseException), results[1]
            assert not isinstance(results[2], BaseException), results[2]
            # The others were made again on top of the human's commit; ours for `a` not.
            assert git(remote.bare, "rev-parse", "main~2") == human
            assert "human" in (remote.show("a.hcl") or "")
            assert "enabled" not in (remote.show("a.hcl") or "")
            assert "enabled = false" in (remote.show("b.hcl") or "")
            assert remote.show("web.hcl") is not None
            assert core.source.status().unpushed_commits == 0
            assert sorted(changed_files(remote, "main") + changed_files(remote, "main~1")) == [
                "b.hcl",
                "web.hcl",
            ]

    asyncio.run(main())


def test_a_dead_remote_fails_the_whole_batch_and_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a", "b"))
        async with git_core(source(remote, tmp_path / "work", push=True), run=False) as core:
            head = remote.head()
            local = core.source.status().head_revision
            moved = remote.bare.with_name("gone")
            remote.bare.rename(moved)
            try:
                results = await asyncio.gather(
                    core.writeback.set_enabled("a", False),
                    core.writeback.set_enabled("b", False),
                    return_exceptions=True,
                )
            finally:
                moved.rename(remote.bare)
            assert all(isinstance(r, Exception) for r in results), results
            assert "could not be pushed" in str(results[0])
            assert remote.head() == head
            assert core.source.status().head_revision == local
            assert core.source.status().unpushed_commits == 0
            assert "enabled" not in (core.source.read("a.hcl") or b"").decode()
            spec_a = core.spec("a")
            assert spec_a is not None and spec_a.enabled is None

    asyncio.run(main())


def tree(remote: Remote) -> set[str]:
    listing = git(remote.bare, "ls-tree", "-r", "-z", "--name-only", "main")
    return {p for p in listing.split("\0") if p}


def test_commits_keep_the_file_mode_and_odd_paths(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, {'odd "name" x.hcl': task_hcl("odd"), **tasks("a")})
        git(remote.human, "update-index", "--chmod=+x", "a.hcl")
        git(remote.human, "commit", "-q", "-m", "executable")
        remote.push()
        async with git_core(source(remote, tmp_path / "work", push=True), run=False) as core:
            await asyncio.gather(
                core.writeback.set_enabled("a", False),
                core.writeback.set_enabled("odd", False),
            )
            assert git(remote.bare, "ls-tree", "main", "a.hcl").split()[0] == "100755"
            assert "enabled = false" in (remote.show('odd "name" x.hcl') or "")
            assert tree(remote) == {"a.hcl", 'odd "name" x.hcl'}
            await core.writeback.delete("odd")
            assert tree(remote) == {"a.hcl"}

    asyncio.run(main())


def test_a_file_changed_then_removed_in_one_batch_is_two_commits(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a"))
        async with git_core(source(remote, tmp_path / "work", push=True), run=False) as core:
            start = remote.head()
            # The update's caller hears that the task is gone by the time it is answered.
            await asyncio.gather(
                core.writeback.set_enabled("a", False),
                core.writeback.delete("a"),
                return_exceptions=True,
            )
            first, second = reversed(git(remote.bare, "rev-list", f"{start}..main").split())
            # The update commit holds the edited file; only the delete commit removes it.
            shown = git(remote.bare, "show", f"{first}:a.hcl")
            assert "enabled = false" in shown
            assert tree(remote) == set()
            assert git(remote.bare, "log", "-1", "--format=%s", second) == "delete task a"

    asyncio.run(main())
