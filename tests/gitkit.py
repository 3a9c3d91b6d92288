"""Real git repositories for the git source tests: a bare "remote" and a human's clone,
and the daemon's core built over a git source."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers import task_hcl

from reconciler.commands import TaskCommands
from reconciler.daemon.core import Core as DaemonCore
from reconciler.daemon.core import SourcePlan
from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.reconcile.writeback import WriteBack
from reconciler.registry.store import Registry
from reconciler.sources.git import GitOptions, GitSource
from reconciler.taskfiles.model import TaskSpec

HUMAN_ENV = {
    "GIT_AUTHOR_NAME": "Human",
    "GIT_AUTHOR_EMAIL": "human@example.com",
    "GIT_COMMITTER_NAME": "Human",
    "GIT_COMMITTER_EMAIL": "human@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git_status(cwd: Path, *args: str) -> int:
    return subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **HUMAN_ENV}, capture_output=True, check=False
    ).returncode


def git(cwd: Path, *args: str, check: bool = True) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **HUMAN_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout.strip()


@dataclass
class Remote:
    """A bare repository and a human's clone of it, branch `main`."""

    bare: Path
    human: Path

    @classmethod
    def create(cls, root: Path, files: dict[str, str] | None = None) -> Remote:
        bare, human = root / "remote.git", root / "human"
        git(root, "init", "-q", "--bare", "-b", "main", str(bare))
        git(root, "clone", "-q", str(bare), str(human))
        git(human, "checkout", "-q", "-B", "main")
        remote = cls(bare, human)
        remote.commit(files if files is not None else {"README.md": "tasks\n"}, "initial")
        remote.push()
        return remote

    @property
    def url(self) -> str:
        return str(self.bare)

    def commit(self, files: Mapping[str, str | None], message: str = "human change") -> str:
        for rel, text in files.items():
            path = self.human / rel
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git(self.human, "add", "-A")
        git(self.human, "commit", "-q", "-m", message)
        return git(self.human, "rev-parse", "HEAD")

    def push(self, *, force: bool = False) -> None:
        git(self.human, "push", "-q", *(["--force"] if force else []), "origin", "main")

    def commit_and_push(self, files: Mapping[str, str | None], message: str = "human") -> str:
        """Like a human: pull --rebase and push again until the push goes through."""
        sha = self.commit(files, message)
        for _ in range(50):
            if git_status(self.human, "push", "-q", "origin", "main") == 0:
                return git(self.human, "rev-parse", "HEAD")
            git(self.human, "pull", "-q", "--rebase", "origin", "main")
        raise AssertionError(f"could not push {sha}")

    def head(self) -> str:
        return git(self.bare, "rev-parse", "main")

    def show(self, rel: str, ref: str = "main") -> str | None:
        result = subprocess.run(
            ["git", "show", f"{ref}:{rel}"], cwd=self.bare, capture_output=True, text=True
        )
        return result.stdout if result.returncode == 0 else None

    def messages(self, count: int = 50) -> list[str]:
        """Full commit messages on main, newest first."""
        out = git(self.bare, "log", f"-{count}", "--format=%B%x00", "main")
        return [m.strip() for m in out.split("\0") if m.strip()]

    def files(self, ref: str = "main") -> set[str]:
        return set(git(self.bare, "ls-tree", "-r", "--name-only", ref).split())


def tasks(*names: str, folder: str = "") -> dict[str, str]:
    prefix = f"{folder}/" if folder else ""
    return {f"{prefix}{n}.hcl": task_hcl(n) for n in names}


def source(remote: Remote, work: Path, **options: Any) -> GitSource:
    options.setdefault("timeout_s", 10.0)
    return GitSource(GitOptions(url=remote.url, **options), work)


@dataclass
class Core:
    source: GitSource
    registry: Registry
    reconciler: Reconciler
    loop: SourceLoop
    writeback: WriteBack
    commands: TaskCommands

    def names(self) -> set[str]:
        return {t.spec.name for t in self.registry}

    def spec(self, name: str) -> TaskSpec | None:
        live = self.registry.get(name)
        return None if live is None else live.spec


@contextlib.asynccontextmanager
async def git_core(
    src: GitSource, *, run: bool = True, rescan_interval: float = 300.0
) -> AsyncIterator[Core]:
    """The real core (reconciler, SourceLoop, WriteBack, task commands) over a GitSource,
    built as the daemon builds it; `run` starts the loop (polling every
    `rescan_interval`, hints)."""
    core = DaemonCore([SourcePlan(src, rescan_interval=rescan_interval, retry_interval=0.05)])
    loop = core.loops[src.name]
    await loop.initial_load()
    runner = asyncio.create_task(loop.run()) if run else None
    try:
        yield Core(src, core.registry, core.reconciler, loop, core.writeback, core.commands)
    finally:
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        loop.close()
        src.close()
