"""One git session: a GitPython `Repo` opened for one operation and closed after it.

GitPython keeps persistent `git cat-file` pipes per `Repo`, which corrupt reads when two
threads share one (libs.md section 4); the source serialises its work with a lock and
opens a fresh `Repo` per operation, so no `Repo` ever crosses threads and no child
process outlives the operation. Every command runs with a deadline
(`kill_after_timeout` kills git and its children) and without prompts.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

from git import GitCommandError, PushInfo, Repo

from reconciler.sources.git.options import mask_url


class _MaskUrls(logging.Filter):
    """GitPython logs git's error lines (e.g. after a rejected push); mask any URL
    credentials in them."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_url(record.getMessage()), None
        return True


for _name in ("git.remote", "git.cmd"):
    logging.getLogger(_name).addFilter(_MaskUrls())

# Exit status GitPython reports for a command it killed at the deadline (SIGKILL).
_KILLED = -9


class GitFailure(Exception):
    """A git command failed. `remote` marks failures talking to the remote (fetch,
    push), which make the source unavailable rather than suggest a broken clone."""

    def __init__(self, message: str, *, remote: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.remote = remote


class Pushed(Enum):
    OK = "ok"
    REJECTED = "rejected"  # the remote moved: fetch, rebase, try again


def _summary(stderr: str, secrets: tuple[str, ...]) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    # git's last lines say what went wrong; the first ones are often hints.
    text = "; ".join(lines[-3:]) or "no error output"
    for secret in secrets:
        text = text.replace(secret, "***")
    return mask_url(text)


class Git:
    def __init__(self, repo: Repo, timeout: float, secrets: tuple[str, ...] = ()) -> None:
        self.repo = repo
        self.timeout = timeout
        self._secrets = secrets

    @property
    def git_dir(self) -> Path:
        return Path(self.repo.git_dir)

    def run(
        self,
        *args: str,
        check: bool = True,
        remote: bool = False,
        timeout: float | None = None,
        stdin: bytes | None = None,
    ) -> tuple[int, str]:
        """(exit status, stdout); raises GitFailure when `check` and the status is not 0.
        `stdin`: what the command reads (from a temporary file, so no pipe can fill up)."""
        limit = timeout or self.timeout
        started = time.monotonic()
        with contextlib.ExitStack() as stack:
            istream = None
            if stdin is not None:
                istream = stack.enter_context(tempfile.TemporaryFile())
                istream.write(stdin)
                istream.seek(0)
            status, out, err = self.repo.git.execute(
                [self.repo.git.GIT_PYTHON_GIT_EXECUTABLE, *args],
                with_extended_output=True,
                with_exceptions=False,
                kill_after_timeout=limit,
                istream=istream,
            )
        if status != 0 and check:
            raise self._failure(args[0], status, err, time.monotonic() - started, limit, remote)
        return status, out

    def _failure(
        self, what: str, status: int, err: str, elapsed: float, limit: float, remote: bool
    ) -> GitFailure:
        if status == _KILLED or elapsed >= limit:
            return GitFailure(f"git {what} timed out after {limit:g} s", remote=remote)
        return GitFailure(f"git {what} failed: {_summary(err, self._secrets)}", remote=remote)

    def out(self, *args: str, remote: bool = False) -> str:
        return self.run(*args, remote=remote)[1]

    def ok(self, *args: str) -> bool:
        return self.run(*args, check=False)[0] == 0

    def rev(self, ref: str) -> str | None:
        """The commit `ref` names, or None when it does not exist."""
        status, out = self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        return out.strip() if status == 0 else None

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.ok("merge-base", "--is-ancestor", older, newer)

    def count(self, older: str, newer: str) -> int:
        return int(self.out("rev-list", "--count", f"{older}..{newer}").strip() or "0")

    def changed_paths(self, old: str, new: str, *prefixes: str) -> list[str]:
        """Repository paths (under any of `prefixes`, or all) that differ between two
        commits. A rename is reported as its old path (deleted) and its new path (added)."""
        args = ["diff-tree", "-r", "-z", "--no-renames", "--name-only", old, new]
        wanted = [p for p in prefixes if p]
        out = self.out(*args, *(["--", *wanted] if wanted else []))
        return [p for p in out.split("\0") if p]

    def tree_paths(self, commit: str, prefix: str) -> list[str]:
        out = self.out(
            "ls-tree",
            "-r",
            "-z",
            "--name-only",
            "--full-tree",
            commit,
            *(["--", prefix] if prefix else []),
        )
        return [p for p in out.split("\0") if p]

    def push(self, branch: str) -> Pushed:
        """Push the local branch to the same branch on origin, never forced. GitPython
        reports a rejection only through the flags of its PushInfo (libs.md section 4)."""
        refspec = f"refs/heads/{branch}:refs/heads/{branch}"
        started = time.monotonic()
        try:
            infos = self.repo.remote("origin").push(refspec, kill_after_timeout=self.timeout)
        except GitCommandError as exc:
            err = str(exc.stderr or "")
            raise self._failure(
                "push",
                _KILLED if "timed out" in err else 1,
                err,
                time.monotonic() - started,
                self.timeout,
                True,
            ) from None
        info = next((i for i in infos if i.remote_ref_string == f"refs/heads/{branch}"), None)
        if info is None:
            err = str(getattr(infos.error, "stderr", "") or "")
            raise GitFailure(f"git push failed: {_summary(err, self._secrets)}", remote=True)
        if info.flags & PushInfo.REJECTED or _lost_race(info):
            return Pushed.REJECTED
        if info.flags & (PushInfo.REMOTE_REJECTED | PushInfo.REMOTE_FAILURE | PushInfo.ERROR):
            raise GitFailure(f"the remote refused the push: {info.summary.strip()}", remote=True)
        return Pushed.OK


def _lost_race(info: PushInfo) -> bool:
    """A push that raced another push on the server: its ref lock was taken, or the ref
    moved between the check and the update. Retry like a rejected push."""
    summary = info.summary.lower()
    return bool(info.flags & PushInfo.REMOTE_REJECTED) and (
        "failed to update ref" in summary or "cannot lock ref" in summary
    )


@contextmanager
def session(
    path: Path, env: Mapping[str, str], timeout: float, secrets: tuple[str, ...] = ()
) -> Iterator[Git]:
    repo = Repo(path)
    try:
        repo.git.update_environment(**env)
        yield Git(repo, timeout, secrets)
    finally:
        repo.close()
