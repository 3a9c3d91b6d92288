"""The tasks written in the daemon's configuration files (CTS style), as a read-only source.

They enter like every other task: through a SourceLoop (its lock, its reconcile pass, the
same rules), not through a side door into the reconciler. The configuration is parsed by
the settings loader, so this source hands over tasks already decoded (`PreParsed`), and
its files change only when the daemon re-reads its configuration (SIGHUP): `replace`
swaps in the new tasks, and a full pass of the loop reports what changed.

Read-only: write-back never gets this source's loop, so the API answers 409 for its tasks
("edit the file instead").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

from reconciler._core.errors import SourceError
from reconciler.config.tasks import DecodedFile, DecodedTask
from reconciler.settings.model import ConfiguredTask
from reconciler.sources.base import FileChange, FileContent, SourceUpdate

# Parsed content of an update: path -> decoded file (None: the file is gone).
Parsed = dict[str, DecodedFile | None]

CONFIG_SOURCE = "config"


@runtime_checkable
class PreParsed(Protocol):
    """A source whose files arrive decoded: the loop takes `parsed` instead of parsing."""

    def parsed(self, update: SourceUpdate) -> Parsed: ...


class ConfigTasks:
    """Tasks by configuration file. `full_scan` and `scan_paths` run in a worker thread;
    they read `_files`, which `replace` swaps whole (never mutated), and `_reported`,
    which only scans touch, one at a time under the loop's lock."""

    name = CONFIG_SOURCE

    def __init__(self, tasks: Iterable[ConfiguredTask] = ()) -> None:
        self._files: dict[str, tuple[FileContent, DecodedFile]] = {}
        # file -> (digest, decoded tasks) last handed to the loop
        self._reported: dict[str, tuple[str, DecodedFile]] = {}
        self.replace(tasks)

    def replace(self, tasks: Iterable[ConfiguredTask]) -> None:
        by_file: dict[str, list[DecodedTask]] = {}
        for t in tasks:
            by_file.setdefault(t.file, []).append(DecodedTask(t.spec, t.line))
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
        return bool(self._files)

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
