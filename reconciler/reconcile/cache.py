"""Parse cache keyed by (file, content hash), persisted atomically under working_dir.

A warm restart re-parses nothing: the result of loading a file depends only on its name
(which appears in messages) and its bytes.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

from reconciler import __version__
from reconciler._core.fsutil import atomic_write
from reconciler.config.load import load_task_file
from reconciler.config.tasks import DecodedFile

log = logging.getLogger(__name__)

_FORMAT = f"reconciler-parse-cache/1/{__version__}"


class ParseCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._entries: dict[tuple[str, str], DecodedFile] = {}
        self._used: set[tuple[str, str]] = set()
        self._dirty = False
        self.hits = 0
        self.misses = 0

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            with self.path.open("rb") as f:
                fmt, entries = pickle.load(f)
            if fmt == _FORMAT and isinstance(entries, dict):
                self._entries = entries
        except Exception as exc:  # a corrupt cache is only a slower start
            log.warning("ignoring unreadable parse cache %s: %s", self.path, exc)

    def get(self, display: str, digest: str, data: bytes) -> DecodedFile:
        key = (display, digest)
        self._used.add(key)
        hit = self._entries.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        result = load_task_file(data, display)
        self._entries[key] = result
        self._dirty = True
        return result

    def save(self) -> None:
        """Persist the entries used since start (stale entries are dropped)."""
        if self.path is None or not self._dirty:
            return
        keep = {k: v for k, v in self._entries.items() if k in self._used}
        self._entries = keep
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.path, pickle.dumps((_FORMAT, keep), pickle.HIGHEST_PROTOCOL))
            self._dirty = False
        except OSError as exc:
            log.warning("cannot write parse cache %s: %s", self.path, exc)
