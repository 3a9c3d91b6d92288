"""The `source "git"` block: the one declaration of a git source's settings and their
defaults, and how the daemon and `reconciler validate` build a git source from it.

GitPython, which needs the git binary, is imported only once a source is built: the
configuration can be read on a machine without git.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from reconciler._core.errors import NOWHERE, Location, SourceError
from reconciler.sources.base import SourcePlan, SourceRead, SourceUnread

SECOND = 1_000_000_000  # durations are in nanoseconds, as in all the settings
DEFAULT_PUSH_RETRIES = 3


@dataclass(frozen=True)
class GitAuthorSettings:
    name: str = "reconciler"
    email: str = "reconciler@localhost"


@dataclass(frozen=True)
class GitSourceSettings:
    """A `source "git"` block: a branch, tag or commit of a repository, and whether API
    changes are pushed back to it."""

    url: str
    branch: str = "main"
    ref: str | None = None
    commit: str | None = None
    path: str = ""  # directory inside the repository, "" for its root
    poll_interval: int = 30 * SECOND
    push: bool = False
    webhook_secret: str | None = field(default=None, repr=False)
    # Attempts to rebase and push again after a rejected push, or "background": keep a
    # commit the remote cannot take now and push it later.
    push_retry: int | str = DEFAULT_PUSH_RETRIES
    ssh_key_file: Path | None = None
    token_env: str | None = None  # name of the environment variable holding a token
    token_username: str = "x-access-token"
    timeout: int = 30 * SECOND  # for every git command
    author: GitAuthorSettings = GitAuthorSettings()
    location: Location = field(default=NOWHERE, compare=False)

    kind: ClassVar[str] = "git"
    remote: ClassVar[bool] = True

    @property
    def identity(self) -> tuple[object, ...]:
        return (self.url, self.branch, self.ref, self.commit, self.path)

    @property
    def summary(self) -> str:
        return f'source "git" with url "{self.url}"'

    def plan(self, working_dir: Path, name: str) -> SourcePlan:
        from reconciler.sources.git.source import GitSource  # GitPython: see above

        source = GitSource.from_settings(self, working_dir, name=name)
        return SourcePlan(
            source,
            writable=not source.options.pinned,
            rescan_interval=source.options.poll_interval_s,
            webhook_secret=self.webhook_secret or None,
            key=self,
        )

    def check(self, scratch: Callable[[], Path]) -> SourceRead | SourceUnread:
        """Fetch the repository into a scratch clone and read the configured branch, ref
        or commit and path there. Unread, not invalid, when the remote cannot be read."""
        try:
            from reconciler.sources.git.source import GitSource
        except ImportError as exc:
            return SourceUnread(f"{self.location}: git source {self.url} not checked: {exc}")
        source = GitSource.from_settings(self, scratch())
        try:
            update = source.full_scan()
        except SourceError as exc:
            return SourceUnread(f"{self.location}: not checked: {exc.message}")
        finally:
            source.close()
        # Paths are shown relative to the repository, as the daemon shows them.
        options = source.options
        where = f"{options.shown_url} ({options.followed} at {update.revision})"
        notes = [f"checking git source {where}"]
        if not update.changed and not update.unreadable:
            folder = f"path {options.path!r}" if options.path else "its root"
            notes.append(f"warning: git source {where}: no task files under {folder}")
        return SourceRead(update, source, tuple(notes))
