"""Keeping the local branch on its upstream: fast-forward, follow a rewrite, rebase
unpushed commits, push with a bounded fetch-rebase-retry loop. Never a force-push.

The invariant (see source.py): `origin/<branch>` is an ancestor of the local branch, so
`origin/<branch>..<branch>` are the commits not pushed yet.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection

from reconciler.sources.git.clone import PRESERVED, Clone
from reconciler.sources.git.runner import Git, GitFailure, Pushed

log = logging.getLogger(__name__)

RETRY_JITTER_S = 0.05


class Conflict(Exception):
    """The commits being pushed cannot go in: upstream changed their files (`paths`, the
    ones it changed), or upstream kept moving through every retry (`busy`)."""

    def __init__(
        self, upstream: str, *, busy: bool = False, paths: frozenset[str] = frozenset()
    ) -> None:
        super().__init__(upstream)
        self.upstream = upstream
        self.busy = busy
        self.paths = paths


class Branch:
    def __init__(self, clone: Clone) -> None:
        self.clone = clone
        self.options = clone.options
        self.name = clone.name
        self.push_error: str | None = None  # why pending commits are not pushed yet

    def unpushed(self, git: Git) -> int:
        if self.options.pinned:
            return 0
        return git.count(self.clone.origin_ref, self.clone.branch_ref)

    def follow(self, git: Git, new: str) -> None:
        """Move the local branch to the fetched commit `new`, keeping unpushed commits."""
        self._attach(git, new)
        old = git.rev(self.clone.origin_ref)
        local = git.rev(self.clone.branch_ref)
        assert local is not None
        if old is None or not git.is_ancestor(old, local):
            # Which local commits are unpushed cannot be told: keep them all.
            if not git.is_ancestor(local, new):
                self._preserve(git, local, "the local branch's upstream is unknown")
            git.out("reset", "-q", "--hard", new)
        elif new != old:
            ahead = git.count(old, local)
            if ahead == 0:
                self._log_rewrite(git, old, new)
                git.out("reset", "-q", "--hard", new)
            elif not self._rebase(git, old, new, ahead):
                self._preserve(git, local, f"{ahead} unpushed commit(s) conflict with {new[:12]}")
                git.out("reset", "-q", "--hard", new)
        git.out("update-ref", self.clone.origin_ref, new)
        if self.options.push and self.unpushed(git) > 0:
            self._push_pending(git)

    def _attach(self, git: Git, new: str) -> None:
        """Put HEAD on the followed branch (after a changed `branch` setting, or on a
        clone that followed a pinned ref before)."""
        status, out = git.run("symbolic-ref", "-q", "HEAD", check=False)
        if status == 0 and out.strip() == self.clone.branch_ref:
            return
        if git.rev(self.clone.branch_ref) is None:
            git.out("checkout", "-q", "--force", "-B", self.options.branch, new)
            git.out("update-ref", self.clone.origin_ref, new)
        else:
            git.out("checkout", "-q", "--force", self.options.branch)

    def _log_rewrite(self, git: Git, old: str, new: str) -> None:
        if not git.is_ancestor(old, new):
            log.warning(
                "git source %s: %s was rewritten upstream (force-push) from %s to %s; following it",
                self.name,
                self.options.followed,
                old[:12],
                new[:12],
            )

    def _rebase(self, git: Git, old: str, new: str, count: int) -> bool:
        status, _ = git.run("rebase", "-q", "--onto", new, old, self.options.branch, check=False)
        if status == 0:
            log.info(
                "git source %s: rebased %d unpushed commit(s) onto %s", self.name, count, new[:12]
            )
            return True
        git.run("rebase", "--abort", check=False)
        return False

    def _preserve(self, git: Git, commit: str, why: str) -> None:
        """Keep commits we are about to leave behind reachable, and say so loudly."""
        ref = f"{PRESERVED}/{commit[:12]}"
        git.out("update-ref", ref, commit)
        log.error(
            "git source %s: %s; those commits are kept as %s in %s and %s is followed",
            self.name,
            why,
            ref,
            self.clone.directory,
            self.options.followed,
        )

    def preserved(self, git: Git) -> tuple[str, ...]:
        return tuple(git.out("for-each-ref", "--format=%(refname)", PRESERVED).split())

    def _push_pending(self, git: Git) -> None:
        """Push commits left unpushed (by a crash, or by push_retry = "background")."""
        pending = self.unpushed(git)
        try:
            self.push(git, own=None)
        except GitFailure as exc:
            self.push_error = f"{pending} commit(s) not pushed yet: {exc.message}"
            log.warning("git source %s: %s", self.name, self.push_error)
        else:
            self.push_error = None
            log.info("git source %s: pushed %d pending commit(s)", self.name, pending)

    def push(self, git: Git, own: Collection[str] | None) -> None:
        """Push the local branch; when the remote moved, fetch, rebase, retry (bounded).

        `own` are the repository paths that the caller's new commits change: upstream
        changing one of them as well is a conflict (Conflict), even when git could merge
        the text, because the API changes were computed from the old content. Without
        `own`, commits that do not rebase are preserved and upstream is followed.
        """
        clone = self.clone
        new = ""
        for attempt in range(self.options.push_retries + 1):
            if attempt:
                # Jitter, so that two writers racing on one branch do not collide forever.
                time.sleep(random.uniform(0, RETRY_JITTER_S * attempt))
            if git.push(self.options.branch) is Pushed.OK:
                git.out("update-ref", clone.origin_ref, clone.branch_ref)
                return
            old = git.rev(clone.origin_ref)
            new = clone.fetch(git)
            local = git.rev(clone.branch_ref)
            assert old is not None and local is not None
            if own is not None:
                theirs = frozenset(git.changed_paths(old, new, *own)) & frozenset(own)
                if theirs:
                    raise Conflict(new, paths=theirs)
            self._log_rewrite(git, old, new)
            if not self._rebase(git, old, new, git.count(old, local)):
                if own is not None:
                    raise Conflict(new, paths=frozenset(own))
                self._preserve(git, local, f"unpushed commits conflict with {new[:12]}")
                git.out("reset", "-q", "--hard", new)
            git.out("update-ref", clone.origin_ref, new)
        if own is not None:
            raise Conflict(new, busy=True)
        raise GitFailure(
            f"push rejected {self.options.push_retries + 1} times: the remote branch keeps moving",
            remote=True,
        )
