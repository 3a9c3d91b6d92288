"""Desired tasks (from all files of all sources) against the live registry.

Rules:
- Per-file isolation: a file that fails to parse or validate keeps its tasks at their
  last-known-good definition; the problem is reported for that file only.
- The same task name in two files: the file that defines the live task keeps it; the
  other file gets a problem naming both files.
- Prune guard: a reconcile that would remove every live task of a source (when more than
  one was live) is refused until the files come back, unless the source allows empty.
  Deletions asked for through the API are deliberate and never blocked.
- Only the names defined in changed files are looked at, so a no-op reconcile is cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.reconcile.cache import ParseCache
from reconciler.registry.store import LiveTask, Registry, RegistryChange
from reconciler.sources.base import SourceUpdate
from reconciler.taskfiles.model import Provenance
from reconciler.taskfiles.tasks import DecodedFile, DecodedTask

log = logging.getLogger(__name__)

FileKey = tuple[str, str]  # (source name, path relative to the source root)


@dataclass
class FileEntry:
    display: str
    path: str = ""  # absolute, "" when the source is not on the local disk
    digest: str | None = None
    good: list[DecodedTask] = field(default_factory=list)  # last known good
    good_revision: str | None = None
    attempted_revision: str | None = None
    problems: list[str] = field(default_factory=list)  # current parse/validation problems
    conflicts: list[str] = field(default_factory=list)  # duplicate names with other files

    @property
    def errors(self) -> list[str]:
        return self.problems + self.conflicts


@dataclass
class SourceStatus:
    name: str
    allow_empty: bool = False
    error: str | None = None  # the source as a whole is unavailable
    failures: int = 0  # failed attempts in a row while unavailable
    next_retry: float | None = None  # Unix time of the next attempt while unavailable
    guard: str | None = None  # the prune guard refused a reconcile
    revision: str | None = None
    # Source-specific state for /v1/status (e.g. a git source's fetches and unpushed
    # commits) and the problems it adds to /v1/health.
    describe: Callable[[], dict[str, Any]] | None = None
    problems: Callable[[], list[str]] | None = None


# Parsed content of an update: path -> result (None: file deleted).
Parsed = dict[str, DecodedFile | None]


@dataclass(frozen=True)
class Scanned:
    """A full read of a source, parsed and not yet applied."""

    source: str
    update: SourceUpdate
    parsed: Parsed
    display: Callable[[str], str]
    locate: Callable[[str], Path] | None = None


class Reconciler:
    def __init__(self, registry: Registry, cache: ParseCache | None = None) -> None:
        self.registry = registry
        self.cache = cache if cache is not None else ParseCache()
        self.files: dict[FileKey, FileEntry] = {}
        self.sources: dict[str, SourceStatus] = {}
        self._owners: dict[str, set[FileKey]] = {}
        # Per source: live tasks kept only because its prune guard refused to delete them.
        # Keyed by source so that a reconcile of one source never releases another's.
        self._held: dict[str, set[str]] = {}

    def add_source(self, name: str, *, allow_empty: bool = False) -> SourceStatus:
        status = self.sources.setdefault(name, SourceStatus(name))
        status.allow_empty = allow_empty
        return status

    # --- parsing (may run in a worker thread) ------------------------------------------

    def parse(
        self, update: SourceUpdate, display: Callable[[str], str], source: str | None = None
    ) -> Parsed:
        """Parse the changed files; `source` names their source, so that the cache keeps
        exactly one entry per live file of each source."""
        parsed: Parsed = {}
        for rel, content in update.changed.items():
            file = (source, rel) if source is not None else None
            if content is None:
                self.cache.forget(file if file is not None else display(rel))
                parsed[rel] = None
            else:
                parsed[rel] = self.cache.get(display(rel), content.digest, content.data, file=file)
        return parsed

    # --- applying (event loop thread) --------------------------------------------------

    def apply(
        self,
        source: str,
        update: SourceUpdate,
        parsed: Parsed,
        display: Callable[[str], str],
        *,
        deliberate: Iterable[str] = (),
        locate: Callable[[str], Path] | None = None,
    ) -> RegistryChange:
        """Apply parsed files; `locate` gives a file's absolute path (recorded in each
        task's provenance) when the source is on the local disk."""
        # The held names are looked at again: the guard holds until this source's files
        # define tasks again (or the deletion becomes deliberate).
        touched = set(self._held.get(source, ()))
        touched |= self._absorb(source, update, parsed, display, locate)
        change = self._diff(touched)
        change = self._guard(source, change, set(deliberate))
        self.registry.apply(change)
        return change

    def replace_sources(self, removed: Iterable[str], added: Iterable[Scanned]) -> RegistryChange:
        """Drop every file of the `removed` sources and take in the `added` ones, in one
        diff: a task that moves from a removed source to an added one (a renamed path, a
        changed remote) is moved, not deleted and created again. The deletions are
        deliberate (a source block was removed), so the prune guard does not hold them."""
        touched: set[str] = set()
        for name in removed:
            for key in [k for k in self.files if k[0] == name]:
                entry = self.files.pop(key)
                touched.update(t.spec.name for t in entry.good)
                self._set_owner(key, entry.good, [])
                self.cache.forget(key)
            self.sources.pop(name, None)
            self._held.pop(name, None)
        for scan in added:
            touched |= self._absorb(
                scan.source, scan.update, scan.parsed, scan.display, scan.locate
            )
        change = self._diff(touched)
        self.registry.apply(change)
        return change

    def forget_source(self, name: str) -> None:
        """A source that was added but never applied (its first read failed)."""
        self.sources.pop(name, None)

    def _absorb(
        self,
        source: str,
        update: SourceUpdate,
        parsed: Parsed,
        display: Callable[[str], str],
        locate: Callable[[str], Path] | None,
    ) -> set[str]:
        """Record parsed files of `source`; the task names whose definitions may have
        changed."""
        touched: set[str] = set()
        for rel, result in parsed.items():
            key = (source, rel)
            entry = self.files.get(key)
            content = update.changed.get(rel)
            revision = update.revision or (content.digest if content else None)
            if result is None:
                if entry is not None:
                    touched.update(t.spec.name for t in entry.good)
                    self._set_owner(key, entry.good, [])
                    del self.files[key]
                continue
            if entry is None:
                entry = self.files[key] = FileEntry(display(rel))
            if locate is not None and not entry.path:
                entry.path = str(locate(rel))
            entry.digest = content.digest if content else None
            entry.attempted_revision = revision
            if result.problems:
                entry.problems = [str(p) for p in result.problems]
                for p in result.problems:
                    log.error("%s", p)
                continue
            for w in result.warnings:
                log.warning("%s", w)
            touched.update(t.spec.name for t in entry.good)
            touched.update(t.spec.name for t in result.tasks)
            self._set_owner(key, entry.good, result.tasks)
            entry.good = list(result.tasks)
            entry.good_revision = revision
            entry.problems = []
        for rel, reason in update.unreadable.items():
            key = (source, rel)
            entry = self.files.setdefault(key, FileEntry(display(rel)))
            entry.problems = [f"{display(rel)}: cannot read file: {reason}"]
            log.error("%s", entry.problems[0])
        return touched

    def _set_owner(self, key: FileKey, old: list[DecodedTask], new: list[DecodedTask]) -> None:
        for t in old:
            owners = self._owners.get(t.spec.name)
            if owners is not None:
                owners.discard(key)
                if not owners:
                    del self._owners[t.spec.name]
        for t in new:
            self._owners.setdefault(t.spec.name, set()).add(key)

    def _winner(self, name: str) -> FileKey | None:
        owners = self._owners.get(name)
        if not owners:
            return None
        live = self.registry.get(name)
        if live is not None:
            for key in owners:
                if self.files[key].display == live.provenance.file and key[0] == live.source:
                    return key
        return min(owners)

    def _diff(self, names: set[str]) -> RegistryChange:
        created: list[LiveTask] = []
        updated: list[tuple[LiveTask, LiveTask]] = []
        deleted: list[LiveTask] = []
        moved: list[LiveTask] = []
        conflicted: set[FileKey] = set()
        for name in sorted(names):
            winner = self._winner(name)
            live = self.registry.get(name)
            if winner is None:
                if live is not None:
                    deleted.append(live)
                continue
            entry = self.files[winner]
            decoded = next(t for t in entry.good if t.spec.name == name)
            desired = LiveTask(
                decoded.spec,
                Provenance(entry.display, decoded.line, entry.good_revision or "", entry.path),
                winner[0],
            )
            for other in self._owners[name] - {winner}:
                conflicted.add(other)
            if live is None:
                created.append(desired)
            elif live.spec != desired.spec:
                updated.append((live, desired))
            elif live.provenance != desired.provenance or live.source != desired.source:
                moved.append(desired)
        self._refresh_conflicts(names, conflicted)
        return RegistryChange(tuple(created), tuple(updated), tuple(deleted), tuple(moved))

    def _refresh_conflicts(self, names: set[str], conflicted: set[FileKey]) -> None:
        # Recompute conflict messages of every file that defines one of the names.
        affected: set[FileKey] = set(conflicted)
        for name in names:
            affected |= self._owners.get(name, set())
        for key in affected:
            entry = self.files.get(key)
            if entry is None:
                continue
            entry.conflicts = []
            for t in entry.good:
                winner = self._winner(t.spec.name)
                if winner is not None and winner != key:
                    msg = (
                        f'{entry.display}:{t.line}: task "{t.spec.name}" is already defined '
                        f"in {self.files[winner].display}; this definition is ignored"
                    )
                    entry.conflicts.append(msg)
                    log.error("%s", msg)

    def _guard(self, source: str, change: RegistryChange, deliberate: set[str]) -> RegistryChange:
        status = self.sources.setdefault(source, SourceStatus(source))
        removing = [t for t in change.deleted if t.source == source]
        if not removing:  # the common case; counting the live tasks costs O(n)
            status.guard = None
            self._held.pop(source, None)
            return change
        live = [t for t in self.registry if t.source == source]
        keeps_some = any(t.source == source for t in change.created) or any(
            new.source == source for _, new in change.updated
        )
        accidental = [t for t in removing if t.spec.name not in deliberate]
        if (
            not status.allow_empty
            and len(live) > 1
            and len(removing) == len(live)
            and not keeps_some
            and accidental
        ):
            status.guard = (
                f"refusing to remove all {len(live)} tasks of source {source!r}: its files "
                "define no tasks any more (set allow_empty = true in the source block if "
                "this is intended)"
            )
            log.error("%s", status.guard)
            self._held[source] = {t.spec.name for t in removing}
            # Deletions of other sources' tasks (a name that moved away) still go ahead.
            others = tuple(t for t in change.deleted if t.source != source)
            return RegistryChange(change.created, change.updated, others, change.moved)
        status.guard = None
        self._held.pop(source, None)
        return change

    # --- queries -----------------------------------------------------------------------

    def file_of(self, name: str) -> tuple[FileKey, FileEntry] | None:
        live = self.registry.get(name)
        if live is None:
            return None
        for key in self._owners.get(name, set()):
            entry = self.files[key]
            if key[0] == live.source and entry.display == live.provenance.file:
                return key, entry
        return None

    def problems(self) -> dict[str, list[str]]:
        """display path -> current problems, for files that have any."""
        return {e.display: e.errors for e in self.files.values() if e.errors}

    def defines(self, name: str) -> bool:
        """Whether any file (broken ones by their last good content) defines the task."""
        return name in self._owners
