"""Faults: remote down or slow, corrupt clone, crash between commit and push, disk full,
credentials. The daemon keeps its last good state and never loses an acknowledged change."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from gitkit import Remote, git, git_core, source, tasks
from helpers import async_wait_for, task_hcl, wait_for

from reconciler._core.errors import SourceError
from reconciler.api.status import source_problems
from reconciler.sources.base import FileChange
from reconciler.sources.git import GitOptions, GitSource, git_environment
from reconciler.taskfiles.model import ServicesCondition, TaskSpec

REPO = Path(__file__).resolve().parents[2]


def spec(name: str) -> TaskSpec:
    return TaskSpec(name=name, module="./mod", condition=ServicesCondition(names=("web",)))


def create(name: str, request_id: str = "r") -> FileChange:
    return FileChange(
        f"{name}.hcl", task_hcl(name).encode(), create=True, action="create", task=name,
        request_id=request_id,
    )  # fmt: skip


def test_remote_down_keeps_the_last_good_state_and_health_says_so(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a", "b"))
        away = tmp_path / "away.git"
        async with git_core(source(remote, tmp_path / "work"), rescan_interval=0.05) as core:
            os.rename(remote.bare, away)
            await async_wait_for(lambda: core.loop.status.error is not None, what="the error")
            assert core.names() == {"a", "b"}
            assert any("unavailable" in p for p in source_problems(core.reconciler))
            assert core.source.status().last_error
            os.rename(away, remote.bare)
            remote.commit_and_push(tasks("c"))
            await async_wait_for(lambda: core.names() == {"a", "b", "c"}, what="recovery")
            assert core.loop.status.error is None
            assert core.source.status().last_error is None

    asyncio.run(main())


def test_slow_remote_times_out(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    src = source(remote, tmp_path / "work", timeout_s=1.0)
    try:
        src.full_scan()
        git(src.clone_dir, "config", "remote.origin.uploadpack", "sleep 30; git-upload-pack")
        started = time.monotonic()
        with pytest.raises(SourceError, match="timed out after 1 s"):
            src.full_scan()
        assert time.monotonic() - started < 10
        git(src.clone_dir, "config", "--unset", "remote.origin.uploadpack")
        remote.commit_and_push(tasks("b"))
        assert sorted(src.full_scan().changed) == ["b.hcl"]
    finally:
        src.close()


def test_api_change_while_remote_down_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a"))
        async with git_core(source(remote, tmp_path / "work", push=True), run=False) as core:
            head = core.source.status().head_revision
            os.rename(remote.bare, tmp_path / "away.git")
            with pytest.raises(SourceError, match="could not be pushed"):
                await core.writeback.create(spec("web"), request_id="r1")
            assert core.source.read("web.hcl") is None
            assert git(core.source.clone_dir, "rev-parse", "HEAD") == head
            assert git(core.source.clone_dir, "status", "--porcelain") == ""
            assert core.names() == {"a"}
            assert core.source.status().unpushed_commits == 0
            os.rename(tmp_path / "away.git", remote.bare)
            await core.writeback.create(spec("web"), request_id="r2")
            assert remote.messages(1)[0].startswith("create task web\n\nRequest-Id: r2")

    asyncio.run(main())


def test_background_push_keeps_the_commit_and_pushes_it_later(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a"))
        src = source(remote, tmp_path / "work", push=True, background_push=True)
        async with git_core(src, run=False) as core:
            os.rename(remote.bare, tmp_path / "away.git")
            await core.writeback.create(spec("web"), request_id="r1")  # acknowledged
            assert core.names() == {"a", "web"}
            status = core.source.status()
            assert status.unpushed_commits == 1 and status.last_error
            os.rename(tmp_path / "away.git", remote.bare)
            remote.commit_and_push(tasks("h"))  # the remote moved meanwhile
            await core.loop.initial_load()
            assert remote.files() >= {"a.hcl", "h.hcl", "web.hcl"}
            assert core.source.status().unpushed_commits == 0
            assert core.source.status().last_error is None
            assert core.names() == {"a", "h", "web"}

    asyncio.run(main())


def test_background_commit_that_conflicts_upstream_is_preserved(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    src = source(remote, tmp_path / "work", push=True, background_push=True)
    try:
        src.full_scan()
        os.rename(remote.bare, tmp_path / "away.git")
        src.commit(FileChange("a.hcl", b"# ours\n" + task_hcl("a").encode(), action="update"))
        ours = src.status().head_revision
        os.rename(tmp_path / "away.git", remote.bare)
        human = remote.commit_and_push({"a.hcl": "# theirs\n" + task_hcl("a")})
        update = src.full_scan()
        content = update.changed["a.hcl"]
        assert content is not None and content.data.startswith(b"# theirs")
        status = src.status()
        assert status.head_revision == human and status.unpushed_commits == 0
        assert ours is not None
        assert status.preserved == (f"refs/reconciler/preserved/{ours[:12]}",)
        assert git(src.clone_dir, "rev-parse", status.preserved[0]) == ours
    finally:
        src.close()


def test_crash_between_commit_and_push_is_pushed_on_restart(tmp_path: Path) -> None:
    """kill -9 of a process whose push hangs after its commit was made."""
    remote = Remote.create(tmp_path, tasks("a"))
    work = tmp_path / "work"
    first = source(remote, work)
    first.full_scan()
    first.close()
    clone = first.clone_dir
    git(clone, "config", "remote.origin.receivepack", "sleep 60; git-receive-pack")
    script = tmp_path / "child.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from reconciler.sources.base import FileChange
        from reconciler.sources.git import GitOptions, GitSource
        opts = GitOptions(url={remote.url!r}, push=True, timeout_s=120)
        src = GitSource(opts, Path({str(work)!r}))
        src.full_scan()
        src.commit(FileChange("crash.hcl", b"task {{}}\\n", create=True, action="create",
                              task="crash", request_id="crash-1"))
        print("pushed: must not happen", flush=True)
        """)
    )
    child = subprocess.Popen(
        [sys.executable, str(script)], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    try:
        wait_for(
            lambda: git(clone, "rev-list", "--count", "refs/remotes/origin/main..main") == "1",
            timeout=30,
            what="the child's commit",
        )
    finally:
        os.killpg(child.pid, signal.SIGKILL)
        out, _ = child.communicate()
    assert "pushed" not in out
    assert remote.files() == {"a.hcl"}
    git(clone, "config", "--unset", "remote.origin.receivepack")
    restarted = source(remote, work, push=True)
    try:
        update = restarted.full_scan()
        assert "crash.hcl" in update.changed
        assert remote.messages(1) == [
            "create task crash\n\nRequest-Id: crash-1\nReconciler-Action: create"
        ]
        assert restarted.status().unpushed_commits == 0
    finally:
        restarted.close()


def test_unpushed_commit_left_by_a_previous_run_is_pushed_at_start(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    work = tmp_path / "work"
    before = source(remote, work, push=False)
    before.full_scan()
    before.commit(create("left"))
    before.close()
    remote.commit_and_push(tasks("h"))  # and the remote moved meanwhile
    after = source(remote, work, push=True)
    try:
        assert sorted(after.full_scan().changed) == ["a.hcl", "h.hcl", "left.hcl"]
        assert remote.files() == {"a.hcl", "h.hcl", "left.hcl"}
        assert after.status().unpushed_commits == 0
    finally:
        after.close()


def test_unpushable_commit_at_start_is_reported(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    work = tmp_path / "work"
    before = source(remote, work, push=False)
    before.full_scan()
    before.commit(create("left"))
    before.close()
    git(remote.bare, "config", "receive.denyCurrentBranch", "refuse")
    hook = remote.bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho protected branch >&2\nexit 1\n")
    hook.chmod(0o755)
    after = source(remote, work, push=True)
    try:
        after.full_scan()
        status = after.status()
        assert status.unpushed_commits == 1
        assert status.last_error and "not pushed yet" in status.last_error
    finally:
        after.close()


def test_stale_git_locks_after_a_crash_are_cleaned(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    work = tmp_path / "work"
    first = source(remote, work, push=True)
    first.full_scan()
    first.close()
    (first.clone_dir / ".git" / "index.lock").write_text("")
    (first.clone_dir / ".git" / "refs" / "heads" / "main.lock").write_text("")
    (first.clone_dir / "half.hcl").write_text("task {")  # uncommitted leftovers
    second = source(remote, work, push=True)
    try:
        second.full_scan()
        second.commit(create("web"))
        assert "web.hcl" in remote.files()
        assert second.read("half.hcl") is None
    finally:
        second.close()


@pytest.mark.parametrize("damage", ["objects", "head", "gitdir"])
def test_corrupt_clone_is_cloned_again(tmp_path: Path, damage: str) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    src = source(remote, tmp_path / "work")
    try:
        src.full_scan()
        dot_git = src.clone_dir / ".git"
        if damage == "objects":
            shutil.rmtree(dot_git / "objects")
            (dot_git / "objects").mkdir()
        elif damage == "head":
            (dot_git / "HEAD").write_text("garbage\n")
        else:
            shutil.rmtree(dot_git)
        remote.commit_and_push(tasks("b"))
        assert sorted(src.full_scan().changed) == ["b.hcl"]
        kept = [p.name for p in src.clone_dir.parent.iterdir() if ".old-" in p.name]
        assert len(kept) == 1
    finally:
        src.close()


DISK_FULL_CHILD = """
import resource, signal, sys
from pathlib import Path
sys.path.insert(0, {repo!r})
from reconciler._core.errors import SourceError
from reconciler.sources.base import FileChange
from reconciler.sources.git import GitOptions, GitSource
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
src = GitSource(GitOptions(url={url!r}, push=True), Path({work!r}))
src.full_scan()
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
try:
    src.commit(FileChange("big.hcl", b"# " + b"x" * {size} + b"\\n", create=True, action="create",
                          task="big"))
except SourceError as exc:
    print("SourceError:", exc)
"""


@pytest.mark.parametrize(
    ("files", "size", "what"),
    [(1, 200_000, "cannot write big.hcl"), (400, 10, "cannot commit big.hcl")],
    ids=["file-write-fails", "git-index-write-fails"],
)
def test_disk_full_while_writing_leaves_nothing_half_written(
    tmp_path: Path, files: int, size: int, what: str
) -> None:
    remote = Remote.create(tmp_path, tasks(*(f"t{i:03}" for i in range(files))))
    work = tmp_path / "work"
    script = tmp_path / "child.py"
    script.write_text(
        DISK_FULL_CHILD.format(repo=str(REPO), url=remote.url, work=str(work), limit=16_384,
                               size=size)
    )  # fmt: skip
    before = remote.head()
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert f"SourceError: {what}" in out, out
    assert "nothing was changed" in out
    assert remote.head() == before
    src = source(remote, work, push=True)
    try:
        assert src.read("big.hcl") is None
        assert sorted(src.full_scan().changed) == sorted(f"t{i:03}.hcl" for i in range(files))
        assert src.status().head_revision == before
        leftovers = [p.name for p in src.clone_dir.iterdir() if p.name != ".git"]
        assert sorted(leftovers) == sorted(f"t{i:03}.hcl" for i in range(files))
    finally:
        src.close()


def test_credentials_are_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = "http://user:s3cr3t-token@127.0.0.1:9/repo.git"
    src = GitSource(GitOptions(url=url, timeout_s=5), tmp_path / "work")
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as raised:
            src.full_scan()
        assert "s3cr3t" not in str(raised.value)
        assert "http://***@127.0.0.1:9/repo.git" in str(raised.value)
        assert "s3cr3t" not in caplog.text
        assert "s3cr3t" not in repr(src.status())
    finally:
        src.close()


def test_token_from_the_named_variable_reaches_git_through_a_credential_helper(
    tmp_path: Path,
) -> None:
    opts = GitOptions(url="https://example.com/r.git", token_env="MY_GIT_TOKEN")
    env = git_environment(opts, base={})
    assert all("t0ken" not in value for value in env.values())
    result = subprocess.run(
        ["git", "credential", "fill"],
        input="protocol=https\nhost=example.com\n\n",
        env={**os.environ, **env, "MY_GIT_TOKEN": "t0ken", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "username=x-access-token" in result.stdout
    assert "password=t0ken" in result.stdout
    assert "BatchMode=yes" in env["GIT_SSH_COMMAND"]
    assert env["GIT_TERMINAL_PROMPT"] == "0"
