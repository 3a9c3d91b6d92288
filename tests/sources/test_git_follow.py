"""Following a branch (or a pinned tag/commit) of a real repository with real git."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest
from gitkit import Remote, git, git_core, source, tasks
from helpers import async_wait_for, task_hcl

from reconciler._core.errors import ConflictError, ReadOnlySourceError
from reconciler.sources.base import FileChange
from reconciler.sources.git import GitOptions, GitSource


def test_first_scan_reports_every_task_file_under_path(tmp_path: Path) -> None:
    files = {
        **tasks("a", "b", folder="tasks"),
        "tasks/sub/c.hcl": task_hcl("c"),
        "tasks/d.json": '{"task": [{"name": "d", "module": "./m"}]}',
        "tasks/notes.md": "not a task file",
        "tasks/.hidden.hcl": task_hcl("hidden"),
        "tasks/.dir/e.hcl": task_hcl("e"),
        "outside.hcl": task_hcl("outside"),
    }
    remote = Remote.create(tmp_path, files)
    src = source(remote, tmp_path / "work", path="tasks")
    try:
        update = src.full_scan()
        assert sorted(update.changed) == ["a.hcl", "b.hcl", "d.json", "sub/c.hcl"]
        assert update.revision == remote.head()
        assert src.display_path("sub/c.hcl") == "tasks/sub/c.hcl"
        assert src.clone_dir == tmp_path / "work" / ".reconciler" / "git" / "git"
        assert not src.full_scan()  # nothing new upstream: nothing reported
    finally:
        src.close()


def test_only_the_files_changed_between_commits_are_reported(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a", "b", "c", "d"))
    src = source(remote, tmp_path / "work")
    try:
        src.full_scan()
        remote.commit({"a.hcl": task_hcl("a", names=("new",)), "b.hcl": None})
        git(remote.human, "mv", "c.hcl", "renamed.hcl")
        remote.commit({"e.hcl": task_hcl("e"), "README.md": "changed"})
        remote.push()
        update = src.full_scan()
        assert update.revision == remote.head()
        assert {rel: c is not None for rel, c in update.changed.items()} == {
            "a.hcl": True,
            "b.hcl": False,
            "c.hcl": False,  # a rename is a delete of the old path ...
            "renamed.hcl": True,  # ... and an add of the new one
            "e.hcl": True,
        }
    finally:
        src.close()


def test_polling_follows_human_pushes(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a"))
        async with git_core(source(remote, tmp_path / "work"), rescan_interval=0.1) as core:
            assert core.names() == {"a"}
            sha = remote.commit_and_push(tasks("b"))
            await async_wait_for(lambda: core.names() == {"a", "b"}, what="poll to follow")
            live = core.registry.get("b")
            assert live is not None and live.provenance.revision == sha
            assert live.provenance.file == "b.hcl"
            assert core.source.status().last_fetched_revision == sha
            assert core.loop.status.revision == sha

    asyncio.run(main())


def test_a_hint_fetches_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a"))
        async with git_core(source(remote, tmp_path / "work"), rescan_interval=300) as core:
            remote.commit_and_push({"a.hcl": None, **tasks("b")})
            core.loop.hint(None)  # what the webhook does
            await async_wait_for(lambda: core.names() == {"b"}, timeout=5, what="hinted fetch")

    asyncio.run(main())


def test_broken_file_keeps_its_tasks_at_the_last_good_revision(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a", "b"))
        good = remote.head()
        async with git_core(source(remote, tmp_path / "work"), run=False) as core:
            bad = remote.commit_and_push({"a.hcl": "task { name = "})
            await core.loop.initial_load()  # a full scan
            assert core.names() == {"a", "b"}
            entry = core.reconciler.files[(core.source.name, "a.hcl")]
            assert (entry.attempted_revision, entry.good_revision) == (bad, good)
            assert entry.problems
            live = core.registry.get("a")
            assert live is not None and live.provenance.revision == good

    asyncio.run(main())


def test_force_pushed_branch_is_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a"))
        base = remote.head()
        async with git_core(source(remote, tmp_path / "work"), run=False) as core:
            remote.commit_and_push(tasks("b"))
            await core.loop.initial_load()
            assert core.names() == {"a", "b"}
            git(remote.human, "reset", "-q", "--hard", base)
            rewritten = remote.commit(tasks("c"), "rewrite")
            remote.push(force=True)
            with caplog.at_level(logging.WARNING):
                await core.loop.initial_load()
            assert core.names() == {"a", "c"}
            assert core.source.status().head_revision == rewritten
            assert "rewritten upstream (force-push)" in caplog.text

    asyncio.run(main())


def test_pinned_tag_is_followed_and_read_only(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    git(remote.human, "tag", "v1")
    git(remote.human, "push", "-q", "origin", "v1")
    remote.commit_and_push(tasks("b"))
    src = source(remote, tmp_path / "work", ref="refs/tags/v1")
    try:
        assert sorted(src.full_scan().changed) == ["a.hcl"]
        # A tag that moves is followed.
        git(remote.human, "tag", "-f", "v1")
        git(remote.human, "push", "-q", "--force", "origin", "v1")
        assert sorted(src.full_scan().changed) == ["b.hcl"]
        with pytest.raises(ReadOnlySourceError) as raised:
            src.commit(FileChange("c.hcl", b"x", create=True, action="create", task="c"))
        assert isinstance(raised.value, ConflictError)  # the API answers 409
        assert "read-only" in str(raised.value)
    finally:
        src.close()


def test_pinned_commit_needs_no_fetch_once_present(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    pinned = remote.head()
    remote.commit_and_push(tasks("b"))
    src = source(remote, tmp_path / "work", commit=pinned[:10])
    try:
        assert sorted(src.full_scan().changed) == ["a.hcl"]
        assert src.status().head_revision == pinned
        os.rename(remote.bare, tmp_path / "gone.git")  # a commit never changes
        assert not src.full_scan()
    finally:
        src.close()


def test_symbolic_links_in_the_repository_are_not_followed(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    secret = tmp_path / "secret.hcl"
    secret.write_text(task_hcl("secret"))
    os.symlink(secret, remote.human / "link.hcl")
    remote.commit_and_push({})
    src = source(remote, tmp_path / "work")
    try:
        update = src.full_scan()
        assert "link.hcl" not in update.changed
        assert "symbolic links are not followed" in update.unreadable["link.hcl"]
    finally:
        src.close()


def test_from_settings_reads_todays_settings(tmp_path: Path) -> None:
    from reconciler.settings.model import GitAuthorSettings
    from reconciler.settings.model import GitSourceSettings as GitSettings

    settings = GitSettings(
        url="https://user:secret@example.com/repo.git",
        path="tasks/",
        poll_interval=5 * 1_000_000_000,
        push=True,
        push_retry=2,
        author=GitAuthorSettings("bot", "bot@example.com"),
    )
    src = GitSource.from_settings(settings, tmp_path, name="ops")
    opts = src.options
    assert (opts.path, opts.poll_interval_s, opts.push_retries, opts.background_push) == (
        "tasks",
        5.0,
        2,
        False,
    )
    assert (opts.author_name, opts.author_email) == ("bot", "bot@example.com")
    assert src.status().url == "https://***@example.com/repo.git"
    assert src.clone_dir == tmp_path / ".reconciler" / "git" / "ops"
    background = GitOptions.from_settings(GitSettings(url="/r", push_retry="background"))
    assert background.background_push and background.push_retries == 3
