"""The local clone of one git source: who may use it, opening it, fetching into it, and
making it usable again after a crash or corruption."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from git import InvalidGitRepositoryError, NoSuchPathError, Repo

from reconciler._core.errors import SourceError
from reconciler._core.fsutil import private_dir
from reconciler.sources.git.options import GitOptions, git_environment
from reconciler.sources.git.runner import Git, GitFailure, session

log = logging.getLogger(__name__)

INCOMING = "refs/reconciler/incoming"
PRESERVED = "refs/reconciler/preserved"
GC_EVERY_S = 3600.0

# Called with the fetched commit after every successful fetch.
FetchListener = Callable[[str], None]


class Clone:
    def __init__(
        self, options: GitOptions, directory: Path, name: str, on_fetch: FetchListener
    ) -> None:
        self.options = options
        self.directory = directory
        self.name = name
        self.dirty = False  # a failed write may have left the work tree changed
        self.suspect: str | None = None  # why the clone is thought broken
        self._on_fetch = on_fetch
        self._env = git_environment(options)
        token = os.environ.get(options.token_env or "", "")
        self._secrets = (token,) if token else ()
        self._lockfile: int | None = None
        self._recovered = False  # crash leftovers cleaned up in this process
        self._last_gc = time.monotonic()

    @property
    def branch_ref(self) -> str:
        return f"refs/heads/{self.options.branch}"

    @property
    def origin_ref(self) -> str:
        return f"refs/remotes/origin/{self.options.branch}"

    def close(self) -> None:
        if self._lockfile is not None:
            os.close(self._lockfile)
            self._lockfile = None

    @contextlib.contextmanager
    def session(self) -> Iterator[Git]:
        """The clone, opened for one operation (cloned first when needed). The caller
        holds the source's lock."""
        self._hold_lockfile()
        problem = self.suspect or self._problem()
        if problem is not None:
            self._reclone(problem)
        with self._open(self.directory) as git:
            if not self._recovered or self.dirty:
                self._recover(git)
            yield git

    def _open(self, path: Path) -> contextlib.AbstractContextManager[Git]:
        return session(path, self._env, self.options.timeout_s, self._secrets)

    def _hold_lockfile(self) -> None:
        """One writer per clone, across processes too (a second daemon on the same
        working_dir). The lock dies with its process, so a crash never leaves it held."""
        if self._lockfile is not None:
            return
        private_dir(self.directory.parent)
        fd = os.open(self.directory.parent / f"{self.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SourceError(f"another process is using the git clone {self.directory}") from None
        self._lockfile = fd

    def _problem(self) -> str | None:
        """Why the clone cannot be used as it is, or None."""
        if not self.directory.exists():
            return "missing"
        try:
            with self._open(self.directory) as git:
                if git.rev("HEAD") is None:
                    return "its HEAD commit cannot be read"
                with git.repo.config_reader() as cfg:
                    url = cfg.get_value('remote "origin"', "url", default="")
                if url != self.options.url:
                    return "it is a clone of another repository"
        except (InvalidGitRepositoryError, NoSuchPathError):
            return "it is not a git repository"
        except GitFailure as exc:
            return exc.message
        return None

    def _reclone(self, problem: str) -> None:
        """Clone next to the old clone, then swap: a failed clone changes nothing."""
        tmp = self.directory.parent / f".{self.name}.clone-tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        Repo.init(tmp).close()
        with self._open(tmp) as git:
            with git.repo.config_writer() as cfg:
                cfg.set_value('remote "origin"', "url", self.options.url)
                cfg.set_value('remote "origin"', "fetch", f"+{self.branch_ref}:{self.origin_ref}")
            target = self.fetch(git)
            if self.options.pinned:
                git.out("checkout", "-q", "--detach", target)
            else:
                git.out("checkout", "-q", "-B", self.options.branch, target)
                git.out("update-ref", self.origin_ref, target)
            old = self._move_aside(problem)
            if old is not None:
                self._rescue(git, old)
        os.rename(tmp, self.directory)
        self.suspect = None
        self._recovered = True

    def _move_aside(self, problem: str) -> Path | None:
        if not self.directory.exists():
            log.info("git source %s: cloned %s", self.name, self.options.shown_url)
            return None
        aside = self.directory.with_name(f"{self.name}.old-{time.strftime('%Y%m%dT%H%M%S')}")
        os.rename(self.directory, aside)
        log.error(
            "git source %s: the clone at %s cannot be used (%s); cloned again, the old one "
            "is kept at %s",
            self.name,
            self.directory,
            problem,
            aside,
        )
        return aside

    def _rescue(self, git: Git, old: Path) -> None:
        """Keep commits of the old clone that upstream does not have."""
        if self.options.pinned:
            return
        ref = f"{PRESERVED}/rescued-{time.strftime('%Y%m%dT%H%M%S')}"
        fetched, _ = git.run(
            "fetch", "-q", "--no-tags", str(old), f"+{self.branch_ref}:{ref}", check=False
        )
        rescued = git.rev(ref) if fetched == 0 else None
        if rescued is not None and not git.is_ancestor(rescued, "HEAD"):
            log.error(
                "git source %s: unpushed commits of the old clone are kept as %s", self.name, ref
            )
        elif rescued is not None:
            git.run("update-ref", "-d", ref, check=False)

    def _recover(self, git: Git) -> None:
        """Undo what a crash (or a failed write) left behind. We hold the clone's lock, so
        every git lock file is stale, and uncommitted changes are ours and unacknowledged."""
        for lock in [*git.git_dir.glob("*.lock"), *(git.git_dir / "refs").rglob("*.lock")]:
            lock.unlink(missing_ok=True)
        for state in ("rebase-merge", "rebase-apply"):
            if (git.git_dir / state).exists():
                git.run("rebase", "--abort", check=False)
                shutil.rmtree(git.git_dir / state, ignore_errors=True)
        git.out("reset", "-q", "--hard")
        git.out("clean", "-fdq")
        self._recovered = True
        self.dirty = False

    def fetch(self, git: Git) -> str:
        """Fetch what we follow; returns its commit. The fetched commit lands in
        INCOMING, never in the remote-tracking ref (see source.py)."""
        commit = self.options.commit
        if commit:
            found = git.rev(commit) or self._fetch_commit(git, commit)
        else:
            found = self._fetch_ref(git, self.options.ref or self.branch_ref)
        self._on_fetch(found)
        return found

    def _fetch_ref(self, git: Git, src: str) -> str:
        git.run(
            "fetch",
            "-q",
            "--no-tags",
            "--no-write-fetch-head",
            "--refmap=",  # no opportunistic update of origin/<branch>: see source.py
            "origin",
            f"+{src}:{INCOMING}",
            remote=True,
        )
        found = git.rev(INCOMING)
        if found is None:
            raise GitFailure(f"{src} does not name a commit", remote=True)
        return found

    def _fetch_commit(self, git: Git, commit: str) -> str:
        git.run(
            "fetch",
            "-q",
            "--no-write-fetch-head",
            "--refmap=",
            "origin",
            "+refs/heads/*:refs/reconciler/heads/*",
            "+refs/tags/*:refs/tags/*",
            remote=True,
        )
        found = git.rev(commit)
        if found is None:
            raise GitFailure(f"commit {commit} is not in {self.options.shown_url}", remote=True)
        return found

    def maybe_gc(self) -> None:
        """`gc.auto` is off for every command (it may detach into the background); an
        hourly `gc --auto` with a generous deadline keeps the clone compact."""
        if time.monotonic() - self._last_gc < GC_EVERY_S:
            return
        self._last_gc = time.monotonic()
        with contextlib.suppress(GitFailure), self.session() as git:
            git.run("gc", "--auto", "--quiet", timeout=self.options.timeout_s * 10)
