"""The tasks written in the daemon's configuration files (CTS style), as a read-only source.

They enter like every other task: through a SourceLoop (its lock, its reconcile pass, the
same rules), not through a side door into the reconciler. The configuration is parsed by
the settings loader, so this source hands over tasks already decoded (`PreParsed`), and
its files change only when the daemon re-reads its configuration (SIGHUP): `replace`
swaps in the new tasks, and a full pass of the loop reports what changed.

The files themselves are never written. `PATCH` (enabled) and `DELETE` of one of their
tasks become overrides (reconciler.reconcile.overrides), recorded under the working
directory and applied on top of the file's task, so they survive a restart; an edit of
the task in its file ends its override.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

from reconciler._core.errors import SourceError
from reconciler.reconcile.overrides import Override, OverrideStore, definition_digest, now
from reconciler.settings.model import ConfiguredTask
from reconciler.sources.base import FileChange, FileContent, SourceUpdate
from reconciler.taskfiles.tasks import DecodedFile, DecodedTask

# Parsed content of an update: path -> decoded file (None: the file is gone).
Parsed = dict[str, DecodedFile | None]

CONFIG_SOURCE = "config"

log = logging.getLogger("reconciler.overrides")


@runtime_checkable
class PreParsed(Protocol):
    """A source whose files arrive decoded: the loop takes `parsed` instead of parsing."""

    def parsed(self, update: SourceUpdate) -> Parsed: ...


class ConfigTasks:
    """Tasks by configuration file. `full_scan` and `scan_paths` run in a worker thread;
    they read `_files`, which `replace` and the overrides swap whole (never mutated), and
    `_reported`, which only scans touch, one at a time under the loop's lock.
    `set_enabled` and `delete` write the overrides file: call them from a worker thread,
    under the loop's lock. `replace` writes nothing (it runs in the event loop): it
    returns the overrides it ended, for the caller to `overrides.save()`."""

    name = CONFIG_SOURCE

    def __init__(
        self, tasks: Iterable[ConfiguredTask] = (), overrides: OverrideStore | None = None
    ) -> None:
        self._files: dict[str, tuple[FileContent, DecodedFile]] = {}
        # file -> (digest, decoded tasks) last handed to the loop
        self._reported: dict[str, tuple[str, DecodedFile]] = {}
        self.overrides = overrides or OverrideStore()
        self._tasks: list[ConfiguredTask] = []
        if self.replace(tasks):
            self.overrides.save()

    def replace(self, tasks: Iterable[ConfiguredTask]) -> set[str]:
        """The configuration's tasks are these now (start, reload). An override made
        against another definition of its task, or of a task no longer configured, ends
        here: the file wins."""
        self._tasks = list(tasks)
        current = {t.spec.name: t for t in self._tasks}
        ended: set[str] = set()
        for name, override in self.overrides.all().items():
            task = current.get(name)
            if task is None:
                log.info("task %s is no longer in the configuration: its override ends", name)
                ended.add(name)
            elif definition_digest(task.spec) != override.base:
                log.info(
                    "task %s changed in %s:%d: the file wins, and the change made through "
                    "the API (%s) no longer applies",
                    name,
                    task.file,
                    task.line,
                    "deleted" if override.deleted else f"enabled = {override.enabled}",
                )
                ended.add(name)
        if ended:
            self.overrides.drop(ended, save=False)
        self._rebuild()
        return ended

    # --- API changes -----------------------------------------------------------------------

    def _task(self, name: str) -> ConfiguredTask:
        for task in self._tasks:
            if task.spec.name == name:
                return task
        raise KeyError(name)

    def _override(self, name: str, request_id: str, **change: object) -> Override:
        task = self._task(name)
        override = Override(
            task=name,
            base=definition_digest(task.spec),
            file=f"{task.file}:{task.line}",
            at=now(),
            request_id=request_id,
            **change,  # type: ignore[arg-type]
        )
        self.overrides.put(override)
        self._rebuild()
        return override

    def set_enabled(self, name: str, enabled: bool, request_id: str = "") -> None:
        """Run the configuration's task `name` enabled or disabled from now on, whatever
        its file says, until the file's task changes. Raises KeyError for another name."""
        task = self._task(name)
        if task.spec.is_enabled == enabled:
            # As written again: no override is needed any more.
            self.overrides.drop({name})
            self._rebuild()
            return
        self._override(name, request_id, enabled=enabled)

    def delete(self, name: str, request_id: str = "") -> None:
        """Leave the configuration's task `name` out from now on, until its file's task
        changes. Raises KeyError for another name."""
        self._override(name, request_id, deleted=True)

    def override(self, name: str) -> Override | None:
        return self.overrides.get(name)

    def file_of(self, name: str) -> str | None:
        """The configuration file that defines `name` (deleted by an override or not)."""
        try:
            return self._task(name).file
        except KeyError:
            return None

    def _rebuild(self) -> None:
        by_file: dict[str, list[DecodedTask]] = {}
        for t in self._tasks:
            by_file.setdefault(t.file, [])
            override = self.overrides.get(t.spec.name)
            spec = t.spec
            if override is not None:
                if override.deleted:
                    continue
                spec = dataclasses.replace(spec, enabled=override.enabled)
            by_file[t.file].append(DecodedTask(spec, t.line))
        files: dict[str, tuple[FileContent, DecodedFile]] = {}
        for file, decoded in by_file.items():
            # The revision of a configuration file's tasks: a digest of their definitions.
            text = "\n".join(f"{t.line}:{t.spec!r}" for t in decoded).encode()
            files[file] = (
                FileContent(text, hashlib.sha256(text).hexdigest()),
                DecodedFile(decoded),
            )
        self._files = files

    def __bool__(self) -> bool:
        return bool(self._tasks)

    # --- Source ----------------------------------------------------------------------------

    def display_path(self, rel: str) -> str:
        return rel

    def absolute_path(self, rel: str) -> Path:
        return Path(rel).absolute()

    def _scan(self, paths: Iterable[str]) -> SourceUpdate:
        files = self._files
        update = SourceUpdate()
        for rel in paths:
            current = files.get(rel)
            if current is None:
                if self._reported.pop(rel, None) is not None:
                    update.changed[rel] = None
            else:
                content, decoded = current
                reported = self._reported.get(rel)
                if reported is None or reported[0] != content.digest:
                    update.changed[rel] = content
                    self._reported[rel] = (content.digest, decoded)
        return update

    def full_scan(self) -> SourceUpdate:
        return self._scan({*self._files, *self._reported})

    def scan_paths(self, paths: set[str]) -> SourceUpdate:
        return self._scan(paths)

    def read(self, rel: str) -> bytes | None:
        current = self._files.get(rel)
        return current[0].data if current is not None else None

    def commit(self, change: FileChange) -> None:
        raise SourceError(
            f"{change.rel} is a daemon configuration file: it is never changed through the API"
        )

    # --- PreParsed -------------------------------------------------------------------------

    def parsed(self, update: SourceUpdate) -> Parsed:
        """The decoded tasks of an update of this source, as the scan that made it saw
        them (a `replace` since then is the next scan's business)."""
        return {
            rel: None if content is None else self._reported[rel][1]
            for rel, content in update.changed.items()
        }
