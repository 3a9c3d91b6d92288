"""Git tasks know where their file is on disk, at a path that does not move per commit, so a
relative `module` resolves next to the task file in the clone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gitkit import Remote, git_core, source, tasks


def test_provenance_path_is_in_the_stable_clone(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a", folder="tasks"))
        async with git_core(source(remote, tmp_path / "work", path="tasks"), run=False) as core:
            first = core.registry.get("a")
            assert first is not None
            clone = core.source.clone_dir
            assert first.provenance.path == str(clone / "tasks" / "a.hcl")
            assert (
                Path(first.provenance.path).read_text() == tasks("a", folder="tasks")["tasks/a.hcl"]
            )
            remote.commit_and_push(tasks("b", folder="tasks"))
            await core.loop.initial_load()
            second = core.registry.get("b")
            assert second is not None and second.provenance.path == str(clone / "tasks" / "b.hcl")
            # A new commit does not move the first task's file.
            again = core.registry.get("a")
            assert again is not None and again.provenance.path == first.provenance.path

    asyncio.run(main())


def test_status_and_health_show_the_git_source(tmp_path: Path) -> None:
    import httpx2

    from reconciler.api.app import ApiContext, create_app

    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a", "b"))
        good = remote.head()
        async with git_core(source(remote, tmp_path / "work"), run=False) as core:
            bad = remote.commit_and_push({"a.hcl": "task { name = "})
            await core.loop.initial_load()
            app = create_app(ApiContext(core.commands))
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://t") as client:
                body = (await client.get("/v1/status")).json()["sources"]["git"]
                assert body["details"]["last_fetched_revision"] == bad
                assert body["files_with_problems"]["a.hcl"]["last_attempted_revision"] == bad
                assert body["files_with_problems"]["a.hcl"]["last_applied_revision"] == good
                assert (await client.get("/v1/health")).status_code == 200
                # The remote goes away: the last good state stays, health says why.
                (tmp_path / "remote.git").rename(tmp_path / "gone.git")
                await core.loop.initial_load()
                health = await client.get("/v1/health")
                assert health.status_code == 503
                assert "source 'git' is unavailable" in health.json()["error"]["message"]
                assert {t.spec.name for t in core.registry} == {"a", "b"}

    asyncio.run(main())
