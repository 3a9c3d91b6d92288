"""What every source (directory, git repository) hands to the reconciler, and what every
kind of `source` block hands the daemon and `reconciler validate` (`SourceSettings`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from reconciler._core.errors import Location

# A hint of None means "rescan everything" (a directory appeared, moved or vanished). The
# flag says the kernel reported the write finished (a close after writing, a rename into
# place): nothing more is coming for that path, so it need not be debounced.
Hint = Callable[[str | None, bool], None]


def content_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class FileContent:
    data: bytes
    digest: str

    @classmethod
    def of(cls, data: bytes) -> FileContent:
        return cls(data, content_digest(data))


@dataclass
class SourceUpdate:
    """Files that changed since the source's last update.

    `changed` maps a '/'-separated path relative to the source root to its new content, or
    None when the file is gone. `unreadable` maps paths that exist but cannot be read to
    the reason; their tasks stay at their last-known-good definition. `revision` is the
    source-wide revision (a commit sha for git) or None when each file's content hash is
    its revision.
    """

    changed: dict[str, FileContent | None] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    revision: str | None = None

    def __bool__(self) -> bool:
        return bool(self.changed or self.unreadable)


@dataclass(frozen=True)
class FileChange:
    """One file change asked for through the API, with what a commit message needs."""

    rel: str
    data: bytes | None  # None: remove the file
    create: bool = False  # never replace an existing file
    action: str = ""  # "create", "update" or "delete"
    task: str = ""
    request_id: str = ""
    term: int = 0  # the leader's term with high availability (0: none)


class Source(Protocol):
    """A place task files live. Blocking methods run in a worker thread."""

    name: str

    def display_path(self, rel: str) -> str:
        """How to show a file in messages (e.g. 'tasks/web.hcl')."""
        ...

    def full_scan(self) -> SourceUpdate:
        """Compare everything with what was reported before. Raises SourceError when the
        source as a whole is unavailable (never report that as 'all files deleted')."""
        ...

    def scan_paths(self, paths: set[str]) -> SourceUpdate:
        """Re-read only the given paths (hints from a watcher)."""
        ...

    def read(self, rel: str) -> bytes | None:
        """Current bytes of one file, or None if it does not exist."""
        ...

    def commit(self, change: FileChange) -> None:
        """Make one change durable in the source (for git: commit, and push if asked)
        before returning. With change.create an existing file is never replaced
        (FileExistsError). Raises SourceError when the change cannot be made durable now
        and ConflictError when it collides with a change made elsewhere; in both cases
        nothing changed."""
        ...


@runtime_checkable
class LocalFiles(Protocol):
    """A source whose files are on the local disk (a directory, a git checkout).

    Relative paths inside a task (its `module`, `variable_files`) resolve against the
    directory of the file that defines it. The path must stay the same across revisions
    (a stable checkout path, not one directory per commit), or every new revision would
    move every task's module and re-initialise its workspace.
    """

    def absolute_path(self, rel: str) -> Path:
        """The absolute path of a file of the source."""
        ...


@runtime_checkable
class RootedFiles(Protocol):
    """A source whose files all lie under one directory of the local disk."""

    def files_root(self) -> Path:
        """That directory (a git source: its whole clone): what is there came through
        the source (for API tasks, an allowed place for modules)."""
        ...


@runtime_checkable
class WatchedFiles(RootedFiles, Protocol):
    """A source that watches its own files (a directory, through inotify) and hands its
    loop path hints as they change, so that an edit is read at once rather than at the
    next full rescan."""

    @property
    def watching(self) -> bool:
        """The watch is running."""
        ...

    def start_watching(self, hint: Hint) -> None:
        """Start watching (again); `hint` is called from the watcher's thread."""
        ...

    def stop_watching(self) -> None: ...

    def root_replaced(self) -> bool:
        """The watched directory was removed, moved or replaced: its watch sees nothing
        any more."""
        ...


@runtime_checkable
class BatchedCommits(Protocol):
    """A source that makes a batch of changes durable at once cheaper than one by one
    (one fsync of a directory, one push to a git remote)."""

    def begin_batch(self) -> None:
        """From now on `commit()` prepares each change; end_batch() makes them durable."""
        ...

    def end_batch(self) -> dict[str, Exception | None]:
        """Make the batch's changes durable, at once. Returns the changes that did not go
        in (each undone) by their `rel`: the error to answer, or None for a change undone
        only because another one conflicted, which may be made again."""
        ...


class LocalSource(Source, LocalFiles, Protocol):
    """A source whose files are on the local disk."""


@dataclass(frozen=True)
class SourcePlan:
    """One task source and how its loop runs."""

    source: Source
    writable: bool = True  # API changes may be written to it
    allow_empty: bool = False
    rescan_interval: float = 300.0
    retry_interval: float = 1.0
    webhook_secret: str | None = None  # a signed webhook call fetches it
    # What the source was configured as: a reload keeps a source whose settings are
    # unchanged (None: never matched, always replaced).
    key: object = None


@dataclass(frozen=True)
class SourceRead:
    """A source read once on its own (`reconciler validate`): its files, the source that
    shows and places them, and what to tell the user before the files' own problems."""

    update: SourceUpdate
    source: LocalSource
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SourceUnread:
    """Why a source could not be read on its own. `invalid`: that makes the configuration
    invalid (a task directory that is not there), rather than only leaving the source's
    files unchecked (a remote out of reach)."""

    note: str
    invalid: bool = False


class SourceSettings(Protocol):
    """A resolved `source "<kind>"` block of the daemon configuration.

    Each kind of task source declares the settings of its block next to the source
    itself, and builds its sources from them; the daemon (`plan`) and `reconciler
    validate` (`check`) reach every kind through this protocol alone. The blocks are
    read by reconciler.settings.sources.
    """

    kind: ClassVar[str]  # the block's label, also the base of its sources' names
    # Its tasks come from elsewhere than this machine's disk (a repository URL), so that
    # every member of a high-availability cluster reads the same ones.
    remote: ClassVar[bool]

    @property
    def location(self) -> Location:
        """Where the block is written."""
        ...

    @property
    def identity(self) -> tuple[object, ...]:
        """Two blocks of one kind and one identity read the same tasks."""
        ...

    @property
    def summary(self) -> str:
        """The block in messages, e.g. `source "git" with url "..."`."""
        ...

    def plan(self, working_dir: Path, name: str) -> SourcePlan:
        """The source, named `name`, and how the daemon follows it; what the source keeps
        on the local disk (a clone) goes under `working_dir`."""
        ...

    def check(self, scratch: Callable[[], Path]) -> SourceRead | SourceUnread:
        """Read the source once on its own; `scratch()` makes a directory for what has
        to be fetched, removed afterwards."""
        ...
