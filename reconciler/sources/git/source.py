"""A git repository as a task source.

Following: each full scan fetches the followed branch (or pinned tag or commit) into
`refs/reconciler/incoming`, moves the work tree there, and reports only the files that
changed between the commit last reported and the new one (revision = commit sha).

Writing: each API change is one commit touching one file, pushed before `commit()`
returns (with `push = true`). A batch of changes (`begin_batch()` ... `end_batch()`) is
one commit per change too, all made by one `git fast-import`, and one push for them all.
What makes this safe across crashes is one invariant:
`refs/remotes/origin/<branch>` is always an ancestor of the local branch, so
`origin/<branch>..<branch>` are exactly the commits not pushed yet. Fetching never moves
it; it moves only once the local branch has been reset or rebased onto the fetched
commit, or after a push. Unpushed commits are never dropped silently: they are pushed,
rebased, or (when they conflict while following) kept under `refs/reconciler/preserved/`
and reported. The one exception is the commit of the call in progress, dropped when
that call fails, so that a failed API call changes nothing.

Threads: every public method takes the source's lock and opens its own GitPython `Repo`
for the operation (runner.session), so it can be called from any worker thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from reconciler._core.errors import (
    ConflictError,
    ReadOnlySourceError,
    SourceError,
    StorageFullError,
)
from reconciler._core.fsutil import atomic_write, check_inside, durable_unlink, file_mode_like
from reconciler.sources.base import FileChange, FileContent, SourceUpdate
from reconciler.sources.directory import MAX_READ_BYTES, is_candidate
from reconciler.sources.git.branch import Branch, Conflict
from reconciler.sources.git.clone import Clone
from reconciler.sources.git.options import GitOptions
from reconciler.sources.git.runner import Git, GitFailure
from reconciler.sources.git.settings import GitSourceSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GitStatus:
    url: str  # credentials masked
    follows: str
    last_fetched_revision: str | None = None
    last_fetch_at: float | None = None  # Unix time
    fetches: int = 0
    head_revision: str | None = None  # the commit the work tree is at
    last_error: str | None = None
    unpushed_commits: int = 0
    preserved: tuple[str, ...] = ()  # refs keeping unpushed commits that conflicted

    def as_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        out["preserved"] = list(self.preserved)
        return out


class GitSource:
    def __init__(self, options: GitOptions, working_dir: Path, *, name: str = "git") -> None:
        self.name = name
        self.options = options
        self.clone_dir = working_dir / ".reconciler" / "git" / name
        self._lock = threading.RLock()
        self._clone = Clone(options, self.clone_dir, name, self._fetched)
        self._branch = Branch(self._clone)
        self._applied: str | None = None  # the commit whose files were last reported
        self._reported: set[str] = set()  # files reported as existing
        self._status = GitStatus(options.shown_url, options.followed)
        # The changes of the batch in progress, committed and pushed together (None: no
        # batch): in the work tree, not committed yet.
        self._batch: list[FileChange] | None = None
        self._checked = False  # the clone was checked (session opened) in this batch

    @classmethod
    def from_settings(
        cls, settings: GitSourceSettings, working_dir: Path, *, name: str = "git"
    ) -> GitSource:
        return cls(GitOptions.from_settings(settings), working_dir, name=name)

    def close(self) -> None:
        with self._lock:
            self._clone.close()

    # --- paths and status --------------------------------------------------------------

    def files_root(self) -> Path:
        return self.clone_dir

    def _repo_rel(self, rel: str) -> str:
        return f"{self.options.path}/{rel}" if self.options.path else rel

    def _source_rel(self, repo_rel: str) -> str | None:
        prefix = self.options.path
        if not prefix:
            return repo_rel
        return repo_rel[len(prefix) + 1 :] if repo_rel.startswith(prefix + "/") else None

    def absolute_path(self, rel: str) -> Path:
        """Where the file is in the clone: the same path at every revision, so a task's
        relative module path does not move with each commit."""
        return self.clone_dir / self._repo_rel(rel)

    def display_path(self, rel: str) -> str:
        return self._repo_rel(rel)

    def describe(self) -> dict[str, object]:
        """For /v1/status."""
        return self.status().as_dict()

    def problems(self) -> list[str]:
        """What /v1/health reports beyond an unreachable remote."""
        status = self.status()
        out: list[str] = []
        if status.unpushed_commits and self.options.push:
            out.append(f"{status.unpushed_commits} commit(s) not pushed to {status.url} yet")
        for ref in status.preserved:
            out.append(f"an unpushed commit conflicted with upstream and is kept at {ref}")
        return out

    def status(self) -> GitStatus:
        """A snapshot; safe to read from any thread."""
        return self._status

    def _note(self, **changes: object) -> None:
        self._status = dataclasses.replace(self._status, **changes)  # type: ignore[arg-type]

    def _fetched(self, commit: str) -> None:
        self._note(
            last_fetched_revision=commit,
            last_fetch_at=time.time(),
            fetches=self._status.fetches + 1,
        )

    def _refresh_status(self, git: Git) -> None:
        unpushed = self._branch.unpushed(git)
        self._note(
            head_revision=git.rev("HEAD"),
            unpushed_commits=unpushed,
            preserved=self._branch.preserved(git),
            last_error=self._branch.push_error if unpushed else None,
        )

    def _unavailable(self, exc: GitFailure) -> SourceError:
        # A killed command may leave git lock files: clean up before the next use.
        self._clone.dirty = True
        self._note(last_error=exc.message)
        return SourceError(f"git source {self.options.shown_url}: {exc.message}")

    # --- following ---------------------------------------------------------------------

    def full_scan(self) -> SourceUpdate:
        with self._lock:
            try:
                update = self._scan_once()
            except GitFailure as exc:
                if exc.remote:
                    raise self._unavailable(exc) from None
                # A local command failed: the clone is broken; clone again.
                self._clone.suspect = exc.message
                try:
                    update = self._scan_once()
                except GitFailure as again:
                    raise self._unavailable(again) from None
            self._clone.maybe_gc()
            return update

    def _scan_once(self) -> SourceUpdate:
        with self._clone.session() as git:
            new = self._clone.fetch(git)
            if not self.options.pinned:
                self._branch.follow(git, new)
            elif git.rev("HEAD") != new:
                git.out("checkout", "-q", "--force", "--detach", new)
            update = self._report(git, ())
            self._refresh_status(git)
            return update

    def scan_paths(self, paths: set[str]) -> SourceUpdate:
        """The hinted files, plus whatever the work tree's commit changed since the last
        report (after a write-back rebased onto upstream, that includes upstream's
        changes). Nothing is fetched."""
        with self._lock:
            try:
                with self._clone.session() as git:
                    return self._report(git, paths)
            except GitFailure as exc:
                raise self._unavailable(exc) from None

    def _report(self, git: Git, extra: Iterable[str]) -> SourceUpdate:
        head = git.rev("HEAD")
        assert head is not None
        prefix = self.options.path
        if self._applied is None or git.rev(self._applied) is None:
            candidates = set(git.tree_paths(head, prefix))
            candidates |= {self._repo_rel(r) for r in self._reported}
        elif self._applied != head:
            candidates = set(git.changed_paths(self._applied, head, prefix))
        else:
            candidates = set()
        candidates |= {self._repo_rel(r) for r in extra}
        update = SourceUpdate(revision=head)
        for repo_rel in sorted(candidates):
            rel = self._source_rel(repo_rel)
            if rel is not None and is_candidate(rel):
                self._report_file(rel, update)
        self._applied = head
        return update

    def _report_file(self, rel: str, update: SourceUpdate) -> None:
        result = self._read_file(rel)
        if isinstance(result, str):
            update.unreadable[rel] = result
        elif result is not None:
            update.changed[rel] = result
            self._reported.add(rel)
        elif rel in self._reported:
            update.changed[rel] = None
            self._reported.discard(rel)

    def _read_file(self, rel: str) -> FileContent | str | None:
        """Content, a reason it cannot be read, or None when it does not exist. Symbolic
        links are not followed: a repository must not make us read files outside it."""
        path = self.clone_dir / self._repo_rel(rel)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symbolic links are not followed in a git source"
            return exc.strerror or str(exc)
        with open(fd, "rb") as f:
            try:
                st = os.fstat(f.fileno())
                if not stat.S_ISREG(st.st_mode):
                    return "not a regular file"
                if st.st_size > MAX_READ_BYTES:
                    return f"file is {st.st_size} bytes, larger than the {MAX_READ_BYTES} limit"
                return FileContent.of(f.read())
            except OSError as exc:
                return exc.strerror or str(exc)

    def read(self, rel: str) -> bytes | None:
        with self._lock:
            if self._clone.dirty:
                with contextlib.suppress(GitFailure), self._clone.session():
                    pass  # opening a session cleans up after the failed write
            result = self._read_file(rel) if self.clone_dir.exists() else None
        if isinstance(result, str):
            raise OSError(result)
        return None if result is None else result.data

    # --- writing -----------------------------------------------------------------------

    def commit(self, change: FileChange) -> None:
        if self.options.pinned:
            raise ReadOnlySourceError(
                f"the git source {self.options.shown_url} follows {self.options.followed}, "
                "which is read-only; change the task in a branch instead"
            )
        if ".." in change.rel.split("/") or not is_candidate(change.rel):
            raise SourceError(f"refusing to write {change.rel!r}: not a task file path")
        with self._lock:
            alone = self._batch is None
            if alone:
                self._batch = []
            try:
                if not self._checked or self._clone.dirty:
                    try:
                        with self._clone.session():  # cloned, recovered after a crash
                            pass
                    except GitFailure as exc:
                        raise self._unavailable(exc) from None
                    self._checked = True  # for the rest of the batch
                if self._write(change):
                    assert self._batch is not None
                    self._batch.append(change)
            except BaseException:
                if alone:
                    self._batch, self._checked = None, False
                raise
            if not alone:
                return
            error = self.end_batch().get(change.rel)
        if error is not None:
            raise error

    # --- batches -----------------------------------------------------------------------

    def begin_batch(self) -> None:
        """Until end_batch(), commit() writes the work tree only; end_batch() makes the
        commits (one per change, in one `git fast-import`) and pushes them at once."""
        with self._lock:
            self._batch, self._checked = [], False

    def end_batch(self) -> dict[str, Exception | None]:
        """Commit (and push) the batch's changes. The changes that did not go in (undone,
        so they changed nothing) by their `rel`: the error to answer, or None for a change
        undone only because another one conflicted upstream, to be made again."""
        with self._lock:
            changes, self._batch, self._checked = self._batch or [], None, False
            if not changes:
                return {}
            try:
                with self._clone.session() as git:
                    commits = self._commit_all(git, changes)
                    if not self.options.push:
                        self._refresh_status(git)
                        return {}
                    return self._push_commits(git, commits)
            except (SourceError, StorageFullError) as exc:
                return {change.rel: exc for change in changes}
            except GitFailure as exc:
                error = self._unavailable(exc)
                return {change.rel: error for change in changes}

    def _commit_all(self, git: Git, changes: list[FileChange]) -> list[tuple[str, FileChange]]:
        """One commit per change (its own message and trailers), all in one process; the
        work tree already holds the changes."""
        before = git.rev(self._clone.branch_ref)
        assert before is not None
        paths = [self._repo_rel(change.rel) for change in changes]
        stream = _fast_import_stream(
            self._clone.branch_ref,
            before,
            [(path, change, self._mode(path)) for path, change in zip(paths, changes, strict=True)],
            self.options.author_name,
            self.options.author_email,
        )
        try:
            git.run("fast-import", "--quiet", "--done", stdin=stream)
            git.out("reset", "-q")  # the index follows the new commits (the work tree has them)
        except GitFailure as exc:
            # The branch first (a ref is tiny: it is written when the index cannot be).
            if not git.ok("update-ref", self._clone.branch_ref, before):
                self._clone.dirty = True
            touched = list(dict.fromkeys(paths))
            for path in touched:
                self._undo(git, before, path)
            what = ", ".join(touched)
            if _out_of_space(exc.message, self.clone_dir):
                raise StorageFullError(
                    f"cannot commit {what}: no space left in {self.clone_dir} "
                    f"({exc.message}); nothing was changed: free some space and retry",
                    errno.ENOSPC,
                ) from None
            raise SourceError(f"cannot commit {what}: {exc.message}; nothing was changed") from None
        for path, change in zip(paths, changes, strict=True):
            log.info("git source %s: committed %s (%s)", self.name, path, change.action)
        return list(zip(paths, changes, strict=True))

    def _mode(self, path: str) -> str:
        """The git file mode to commit a work tree file with (a regular file unless it is
        executable; one that a later change of the batch removed is regular)."""
        try:
            mode = (self.clone_dir / path).lstat().st_mode
        except FileNotFoundError:
            return "100644"
        return "100755" if mode & stat.S_IXUSR else "100644"

    def _write(self, change: FileChange) -> bool:
        """Change the work tree file; False when it already is as asked. A failed write
        leaves the old file (atomic_write): nothing half-written."""
        try:
            # Inside the clone, whatever a pushed commit made of `path` (a link out of it).
            target = check_inside(self.clone_dir, self._repo_rel(change.rel))
            if change.data is None:
                if not target.exists():
                    return False
                durable_unlink(target)
                return True
            if not change.create and _read_bytes(target) == change.data:
                return False
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, change.data, exclusive=change.create, mode=file_mode_like(target))
        except FileExistsError:
            raise
        except StorageFullError as exc:
            self._clone.dirty = True
            raise StorageFullError(
                f"cannot write {self.display_path(change.rel)}: no space left in "
                f"{self.clone_dir}; nothing was changed: free some space and retry",
                exc.errno,
            ) from None
        except OSError as exc:
            self._clone.dirty = True
            raise SourceError(
                f"cannot write {self.display_path(change.rel)}: {exc.strerror or exc}; "
                "nothing was changed"
            ) from None
        return True

    def _undo(self, git: Git, before: str, path: str) -> None:
        """Put the work tree, index and branch back as they were before this call."""
        reset, _ = git.run("reset", "-q", "--hard", before, check=False)
        clean, _ = git.run("clean", "-fdq", "--", path, check=False)
        if reset or clean:
            self._clone.dirty = True

    def _push_commits(
        self, git: Git, commits: list[tuple[str, FileChange]]
    ) -> dict[str, Exception | None]:
        """Push the newest `len(commits)` commits (made by this process for `commits`)."""
        try:
            self._branch.push(git, own={path for path, _ in commits})
        except Conflict as conflict:
            self._drop_own(git, len(commits), follow=conflict.upstream)
            failed: dict[str, Exception | None] = {}
            for path, change in commits:
                what = f"the {change.action or 'update'} of task {change.task or path}"
                if conflict.busy:
                    failed[change.rel] = ConflictError(
                        f"{self.options.followed} kept moving upstream: {what} was rejected "
                        f"{self.options.push_retries + 1} times and not made; retry"
                    )
                elif path in conflict.paths:
                    failed[change.rel] = ConflictError(
                        f"{path} was changed upstream (commit {conflict.upstream[:12]}) while "
                        f"{what} was being pushed; the change was not made. Retry once the "
                        "upstream change has been applied"
                    )
                else:
                    failed.setdefault(change.rel, None)
            return failed
        except GitFailure as exc:
            if self.options.background_push:
                paths = ", ".join(sorted({path for path, _ in commits}))
                self._branch.push_error = f"commit for {paths} not pushed yet: {exc.message}"
                log.warning(
                    "git source %s: %s; it will be pushed later", self.name, self._branch.push_error
                )
                self._refresh_status(git)
                return {}
            self._drop_own(git, len(commits), follow=None)
            return {
                change.rel: SourceError(
                    f"the change to {path} could not be pushed to {self.options.shown_url} "
                    f"({exc.message}); it was not made"
                )
                for path, change in commits
            }
        self._refresh_status(git)
        return {}

    def _drop_own(self, git: Git, count: int, follow: str | None) -> None:
        """Drop the `count` commits of the calls in progress (the newest ones); with nothing
        else unpushed, move on to the upstream commit `follow`."""
        git.out("reset", "-q", "--hard", f"HEAD~{count}")
        if follow is not None and self._branch.unpushed(git) == 0:
            git.out("reset", "-q", "--hard", follow)
            git.out("update-ref", self._clone.origin_ref, follow)
        self._refresh_status(git)


def _message(change: FileChange) -> str:
    """`<action> task <name>`, then the trailers."""
    action = _line(change.action or "update")
    trailers = [f"Request-Id: {_line(change.request_id)}"] if change.request_id else []
    trailers.append(f"Reconciler-Action: {action}")
    if change.term:
        trailers.append(f"Leader-Term: {change.term}")
    return f"{action} task {_line(change.task or change.rel)}\n\n" + "\n".join(trailers) + "\n"


def _fast_import_stream(
    ref: str, parent: str, commits: list[tuple[str, FileChange, str]], name: str, email: str
) -> bytes:
    """A `git fast-import` stream of one commit per (path, change, mode) on top of
    `parent`: a change without data removes the path."""
    who = f"{_ident(name)} <{_ident(email)}> {int(time.time())} +0000"
    out: list[bytes] = []
    for i, (path, change, mode) in enumerate(commits):
        message = _message(change).encode()
        out += [f"commit {ref}\nauthor {who}\ncommitter {who}\n".encode()]
        out += [b"data %d\n" % len(message), message, b"\n"]
        if i == 0:
            out.append(f"from {parent}\n".encode())
        if change.data is None:
            out.append(b"D " + _quoted(path) + b"\n")
        else:
            out.append(f"M {mode} inline ".encode() + _quoted(path) + b"\n")
            out += [b"data %d\n" % len(change.data), change.data, b"\n"]
        out.append(b"\n")
    out.append(b"done\n")
    return b"".join(out)


def _quoted(path: str) -> bytes:
    """A path as fast-import reads it: C-style quoted."""
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return b'"' + escaped.encode() + b'"'


def _ident(text: str) -> str:
    """A name or address fit for an identity line (no brackets, no line breaks)."""
    return "".join(ch for ch in text if ch not in "<>\n\r").strip() or "reconciler"


# How git reports ENOSPC / EDQUOT (strerror in its messages).
_NO_SPACE_TEXT = ("no space left on device", "disk quota exceeded", "out of diskspace")
# Below this much free space, a failed git write is taken as lack of space even when git's
# message does not say so (e.g. "fatal: unable to write new index file").
_LOW_SPACE_BYTES = 256 * 1024


def _out_of_space(message: str, directory: Path) -> bool:
    if any(text in message.lower() for text in _NO_SPACE_TEXT):
        return True
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < _LOW_SPACE_BYTES


def _line(text: str) -> str:
    return " ".join(text.split())


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
