"""Git tasks know where their file is on disk, at a path that does not move per commit, so a
relative `module` resolves next to the task file in the clone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_git_support import Remote, git_core, source, tasks


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
