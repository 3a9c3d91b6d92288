"""A directory of task files, watched with watchdog (inotify on Linux), and the
`source "directory"` block that configures one (`DirectorySourceSettings`).

Watch events are only hints ("this path may have changed"): editors and `git checkout`
delete or rename a file before writing it again, so the path is re-read after a short
debounce (done by the caller) and compared by content hash. A periodic full rescan, by
stat signature, is the safety net for anything the watcher missed.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from reconciler._core.errors import NOWHERE, Location, SourceError
from reconciler._core.fsutil import (
    TEMP_PREFIX,
    OutsideError,
    atomic_write,
    check_inside,
    durable_unlink,
    file_mode_like,
    fsync_dir,
    is_inside_real,
)
from reconciler.sources.base import (
    FileChange,
    FileContent,
    Hint,
    SourcePlan,
    SourceRead,
    SourceUnread,
    SourceUpdate,
)

log = logging.getLogger(__name__)

TASK_SUFFIXES = (".hcl", ".json")
# A file larger than this is reported as unreadable instead of being read into memory.
MAX_READ_BYTES = 16 * 1024 * 1024

_StatSig = tuple[int, int, int, int]


def _sig(st: os.stat_result) -> _StatSig:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def is_candidate(rel: str) -> bool:
    """A task file: *.hcl or *.json, no hidden path component (.git, .swp, our temp files)."""
    parts = rel.split("/")
    return rel.endswith(TASK_SUFFIXES) and not any(p.startswith(".") or p == "" for p in parts)


class DirectorySource:
    def __init__(
        self,
        root: Path,
        *,
        name: str = "directory",
        display_base: Path | None = None,
        note: str = "",
    ):
        """`note`: why this directory is a source, for /v1/status (the implicit one)."""
        self.name = name
        self.root = root
        self.note = note
        self._display_base = display_base if display_base is not None else Path.cwd()
        # What we last reported, per file: stat signature and content digest.
        self._known: dict[str, tuple[_StatSig, str]] = {}
        self._observer: Observer | None = None  # type: ignore[valid-type]
        self._root_id: tuple[int, int] | None = None
        self._display: dict[str, str] = {}
        self._lock = threading.Lock()
        # Temp files of atomic writes cut off by a crash (kill -9, power loss) are swept
        # at the first full scan: no write of ours can be in flight before it.
        self._swept = False
        # The batch of writes in progress: the directories whose entries changed (their
        # fsync is due at the batch's end) and the files written in each. None: no batch.
        self._batch: dict[Path, list[str]] | None = None

    # --- display -------------------------------------------------------------------------

    def describe(self) -> dict[str, object]:
        """The source in /v1/status."""
        out: dict[str, object] = {"path": str(self.root)}
        if self.note:
            out["note"] = self.note
        return out

    def display_path(self, rel: str) -> str:
        shown = self._display.get(rel)
        if shown is None:
            shown = self._display[rel] = self._compute_display(rel)
        return shown

    def _compute_display(self, rel: str) -> str:
        full = self.root / rel
        try:
            shown = os.path.relpath(full, self._display_base)
        except ValueError:
            return str(full)
        return str(full) if shown.startswith("..") else shown

    def files_root(self) -> Path:
        return self.root

    def absolute_path(self, rel: str) -> Path:
        return Path(os.path.abspath(self.root / rel))

    # --- scanning ------------------------------------------------------------------------

    def _check_root(self) -> None:
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            raise SourceError(f"task directory {self.root} does not exist") from None
        except OSError as exc:
            raise SourceError(
                f"task directory {self.root} cannot be read: {exc.strerror}"
            ) from None
        if not stat.S_ISDIR(st.st_mode):
            raise SourceError(f"task directory {self.root} is not a directory")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise SourceError(f"task directory {self.root} cannot be read: permission denied")

    def _walk(self) -> tuple[dict[str, _StatSig], dict[str, str]]:
        """Every candidate file with its stat signature; directories that cannot be listed."""
        found: dict[str, _StatSig] = {}
        broken: dict[str, str] = {}

        def onerror(exc: OSError) -> None:
            if exc.filename and os.path.abspath(exc.filename) == os.path.abspath(self.root):
                raise SourceError(f"task directory {self.root} cannot be read: {exc.strerror}")
            rel = os.path.relpath(exc.filename or "", self.root).replace(os.sep, "/")
            broken[rel] = exc.strerror or str(exc)

        # Directory symlinks are not followed (loops); file symlinks are read.
        for dirpath, dirnames, filenames in os.walk(self.root, onerror=onerror):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            base = os.path.relpath(dirpath, self.root)
            for fname in filenames:
                rel = fname if base == "." else f"{base}/{fname}".replace(os.sep, "/")
                if not self._swept and fname.startswith(TEMP_PREFIX):
                    self._remove_leftover(os.path.join(dirpath, fname), rel)
                    continue
                if not is_candidate(rel):
                    continue
                try:
                    found[rel] = _sig(os.stat(os.path.join(dirpath, fname)))
                except OSError as exc:
                    # e.g. a dangling or looping symlink
                    found[rel] = (0, 0, 0, 0)
                    broken[rel] = exc.strerror or str(exc)
        return found, broken

    def _remove_leftover(self, path: str, rel: str) -> None:
        try:
            os.unlink(path)
        except OSError as exc:
            log.warning("cannot remove %s, left by an interrupted write: %s", rel, exc)
        else:
            log.warning("removed %s, left by an interrupted write", rel)

    def _read(self, rel: str) -> tuple[_StatSig, FileContent] | str | None:
        """(signature, content), an error string, or None when the file does not exist."""
        path = self.root / rel
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic link loop"
            return exc.strerror or str(exc)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return "not a regular file"
            if not is_inside_real(f"/proc/self/fd/{fd}", self.root):
                # A link to a file elsewhere (a secret) is neither read nor quoted.
                return "a symbolic link to a file outside the task directory: not read"
            if st.st_size > MAX_READ_BYTES:
                return f"file is {st.st_size} bytes, larger than the {MAX_READ_BYTES} byte limit"
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
                if sum(len(c) for c in chunks) > MAX_READ_BYTES:
                    return f"file is larger than the {MAX_READ_BYTES} byte limit"
            return _sig(st), FileContent.of(b"".join(chunks))
        except OSError as exc:
            return exc.strerror or str(exc)
        finally:
            os.close(fd)

    def full_scan(self) -> SourceUpdate:
        with self._lock:
            self._check_root()
            found, broken = self._walk()
            self._swept = True
            update = SourceUpdate()
            for rel, sig in found.items():
                known = self._known.get(rel)
                if rel in broken:
                    update.unreadable[rel] = broken[rel]
                    continue
                if known is not None and known[0] == sig:
                    continue
                self._refresh(rel, update)
            for rel in list(self._known):
                if rel not in found:
                    self._refresh(rel, update)
            for rel, reason in broken.items():
                if rel not in found:  # an unlistable directory: its files are unknown
                    update.unreadable[rel] = reason
            return update

    def scan_paths(self, paths: set[str]) -> SourceUpdate:
        with self._lock:
            self._check_root()
            update = SourceUpdate()
            for rel in sorted(paths):
                if is_candidate(rel):
                    self._refresh(rel, update)
            return update

    def _refresh(self, rel: str, update: SourceUpdate) -> None:
        result = self._read(rel)
        known = self._known.get(rel)
        if result is None:
            if known is not None:
                del self._known[rel]
                update.changed[rel] = None
        elif isinstance(result, str):
            update.unreadable[rel] = result
        else:
            sig, content = result
            self._known[rel] = (sig, content.digest)
            if known is None or known[1] != content.digest:
                update.changed[rel] = content

    def read(self, rel: str) -> bytes | None:
        result = self._read(rel)
        if result is None:
            return None
        if isinstance(result, str):
            raise OSError(result)
        return result[1].data

    # --- writing -------------------------------------------------------------------------

    def commit(self, change: FileChange) -> None:
        # A missing root is never created here: an empty new directory would hide the
        # real one (a restore could no longer move it back) and hold only this task.
        self._check_root()
        try:
            path = check_inside(self.root, change.rel)
        except OutsideError as exc:
            raise SourceError(f"cannot write {change.rel}: {exc.strerror}") from None
        batch = self._batch
        if batch is not None:
            batch.setdefault(path.parent, []).append(change.rel)
        if change.data is None:
            durable_unlink(path, sync_dir=batch is None)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(
            path,
            change.data,
            exclusive=change.create,
            mode=file_mode_like(path),
            sync_dir=batch is None,
        )

    def begin_batch(self) -> None:
        """Until end_batch(), commit() makes each file durable but not yet its name (the
        rename or removal): one fsync of each directory at the end does that for all."""
        self._batch = {}

    def end_batch(self) -> dict[str, Exception | None]:
        batch, self._batch = self._batch or {}, None
        failed: dict[str, Exception | None] = {}
        for directory, rels in batch.items():
            try:
                fsync_dir(directory)
            except OSError as exc:
                for rel in rels:
                    failed[rel] = SourceError(
                        f"cannot make {self.display_path(rel)} durable: {exc.strerror or exc}"
                    )
        return failed

    # --- watching ------------------------------------------------------------------------

    def start_watching(self, hint: Hint) -> None:
        """Start the watchdog observer; `hint` is called from its thread."""
        self.stop_watching()
        handler = _Handler(self.root, hint)
        observer = Observer()
        observer.daemon = True
        observer.schedule(handler, str(self.root), recursive=True)
        observer.start()
        self._observer = observer
        self._root_id = self._identity()

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.root)
        except OSError:
            return None
        return (st.st_dev, st.st_ino)

    def root_replaced(self) -> bool:
        """True when the watched directory was removed, moved or replaced: inotify does
        not report that for the watched root itself, so the loop polls this cheaply."""
        return self._observer is not None and self._identity() != self._root_id

    def stop_watching(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()
            if observer.is_alive() and threading.current_thread() is not observer:
                observer.join(timeout=5)

    @property
    def watching(self) -> bool:
        return self._observer is not None and self._observer.is_alive()


@dataclass(frozen=True)
class DirectorySourceSettings:
    """A `source "directory"` block: a directory of task files on this machine."""

    path: Path
    allow_empty: bool = False
    location: Location = field(default=NOWHERE, compare=False)

    kind: ClassVar[str] = "directory"
    remote: ClassVar[bool] = False  # every member of a cluster: only on a shared disk

    @property
    def identity(self) -> tuple[object, ...]:
        return (self.path,)

    @property
    def summary(self) -> str:
        return f'source "directory" with path "{self.path}"'

    def plan(self, working_dir: Path, name: str) -> SourcePlan:
        return SourcePlan(
            DirectorySource(self.path, name=name), allow_empty=self.allow_empty, key=self
        )

    def check(self, scratch: Callable[[], Path]) -> SourceRead | SourceUnread:
        directory = DirectorySource(self.path, display_base=Path.cwd())
        try:
            update = directory.full_scan()
        except Exception as exc:
            # Not a remote that may be back soon: the configuration names a directory
            # that cannot be read.
            return SourceUnread(f"{self.location}: {exc}", invalid=True)
        return SourceRead(update, directory)


def _is_final(event_type: str, source_side: bool) -> bool:
    """The write to the path is finished: closed after writing (IN_CLOSE_WRITE), or a file
    renamed onto it (IN_MOVED_TO). A creation or a modification may be followed by more
    writes, and a deletion or a rename away by the file written anew (editors, `git
    checkout`), so those are debounced."""
    return event_type == "closed" or (event_type == "moved" and not source_side)


class _Handler(FileSystemEventHandler):
    def __init__(self, root: Path, hint: Hint) -> None:
        self._root = str(root)
        self._hint = hint

    def _rel(self, path: str | bytes) -> str | None:
        p = os.fsdecode(path)
        rel = os.path.relpath(p, self._root).replace(os.sep, "/")
        return None if rel.startswith("..") else rel

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path]
        if getattr(event, "dest_path", None):
            paths.append(event.dest_path)
        for path in paths:
            rel = self._rel(path)
            if rel is None:
                continue
            if rel == ".":
                # The root itself was deleted or moved (its "modified" events only echo
                # changes to entries, which have events of their own).
                if event.event_type in ("deleted", "moved"):
                    self._hint(None, False)
            elif event.is_directory:
                if event.event_type != "modified" and not any(
                    p.startswith(".") for p in rel.split("/")
                ):
                    self._hint(None, False)
            elif is_candidate(rel):
                self._hint(rel, _is_final(event.event_type, path == event.src_path))
