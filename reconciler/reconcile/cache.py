"""Parse cache keyed by (file, content hash), persisted atomically under working_dir.

A warm restart re-parses nothing: the result of loading a file depends only on its name
(which appears in messages) and its bytes.

Threads: parses of different sources run in worker threads at the same time, and the
periodic save runs in another; every access to the entries holds `_lock` (the save takes
a snapshot under it and encodes outside it).

Memory: one entry per live file, the one for its current content. A file's entry is
dropped when the file gets new content or is deleted, so a long-running daemon whose files
are edited all day holds no more than a freshly started one.

Format: JSON Lines of plain values (`cachecodec`), so reading it runs no code; a cache
written by another version or task model, or damaged, is ignored (the files are parsed).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Hashable, Iterable
from pathlib import Path

import orjson

from reconciler import __version__
from reconciler._core.fsutil import atomic_write, private_dir
from reconciler.reconcile.cachecodec import (
    SCHEMA,
    CacheFormatError,
    Unencodable,
    decode_file,
    encode_file,
)
from reconciler.taskfiles.load import gc_paused, load_task_file
from reconciler.taskfiles.tasks import DecodedFile

log = logging.getLogger(__name__)

_FORMAT = "reconciler-parse-cache/2"

CacheKey = tuple[str, str]  # (display path, content digest)


class ParseCache:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._save_lock = threading.Lock()  # one writer of the file at a time
        self._entries: dict[CacheKey, DecodedFile] = {}
        # Live file -> the key of its current content, and how many live files share a key
        # (two sources may show a file under the same name with the same bytes).
        self._live: dict[Hashable, CacheKey] = {}
        self._refs: Counter[CacheKey] = Counter()
        self._dirty = False
        self.hits = 0
        self.misses = 0

    def size(self) -> int:
        """How many parse results are held in memory."""
        with self._lock:
            return len(self._entries)

    # --- persistence ---------------------------------------------------------------------

    def load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            # Many small objects at once: without the pause, the collector runs over them
            # again and again (measured: the load takes 3-5 times as long).
            with gc_paused(), self.path.open("rb") as lines:
                entries = _read(lines)
        except (OSError, orjson.JSONDecodeError, CacheFormatError) as exc:
            # A corrupt or foreign cache is only a slower start.
            log.warning("ignoring unreadable parse cache %s: %s", self.path, exc)
            return
        if entries is None:
            log.info("parse cache %s is from another version; files are parsed again", self.path)
            return
        with self._lock:
            for key, value in entries.items():
                self._entries.setdefault(key, value)

    def save(self) -> None:
        """Persist the entries of the live files (entries loaded but not used are dropped)."""
        with self._save_lock:
            with self._lock:
                stale = [k for k in self._entries if k not in self._refs]
                for key in stale:
                    del self._entries[key]
                if self.path is None or not (self._dirty or stale):
                    return
                snapshot = list(self._entries.items())
                self._dirty = False
            rows: list[bytes] = []
            for (display, digest), decoded in snapshot:
                try:
                    # One row at a time: a value JSON cannot hold loses only its own entry.
                    rows.append(orjson.dumps([display, digest, encode_file(decoded)]))
                except (Unencodable, orjson.JSONEncodeError) as exc:
                    log.debug("not caching %s: %s", display, exc)
                except (TypeError, ValueError, AttributeError) as exc:
                    # A parse result the codec does not expect: a bug, but no reason to
                    # stop saving the others (or, in the periodic save, the daemon).
                    log.warning("not caching %s: cannot encode its parse result: %r", display, exc)
            head = orjson.dumps({"format": _FORMAT, "version": __version__, "schema": SCHEMA})
            data = b"\n".join([head, *rows, b""])
            try:
                private_dir(self.path.parent)
                atomic_write(self.path, data, mode=0o600)
            except OSError as exc:
                with self._lock:
                    self._dirty = True
                log.warning("cannot write parse cache %s: %s", self.path, exc)

    # --- lookups (any thread) --------------------------------------------------------------

    def get(
        self, display: str, digest: str, data: bytes, *, file: Hashable | None = None
    ) -> DecodedFile:
        """The parse of `data`; `file` names the file for liveness (default: `display`)."""
        key = (display, digest)
        owner = display if file is None else file
        with self._lock:
            self._use(owner, key)
            hit = self._entries.get(key)
            if hit is not None:
                self.hits += 1
                return hit
            self.misses += 1
        # Parsed outside the lock: the sources' parses run side by side.
        result = load_task_file(data, display)
        with self._lock:
            if key in self._refs and key not in self._entries:
                self._entries[key] = result
                self._dirty = True
        return result

    def forget(self, file: Hashable) -> None:
        """The file is gone: drop its entry (unless another live file shares it)."""
        with self._lock:
            old = self._live.pop(file, None)
            if old is not None:
                self._release(old)

    def _use(self, owner: Hashable, key: CacheKey) -> None:
        old = self._live.get(owner)
        if old == key:
            return
        self._live[owner] = key
        self._refs[key] += 1
        if old is not None:
            self._release(old)

    def _release(self, key: CacheKey) -> None:
        self._refs[key] -= 1
        if self._refs[key] <= 0:
            del self._refs[key]
            if self._entries.pop(key, None) is not None:
                self._dirty = True


def _read(lines: Iterable[bytes]) -> dict[CacheKey, DecodedFile] | None:
    """The entries of a cache file; None when it was written by another version.

    JSON Lines: a header, then one entry per line (orjson never writes a raw newline).
    Decoded a line at a time, so the JSON values of one entry are all that exists beside
    the parse results: a whole-document parse made the peak memory of a warm start at
    10,000 tasks 40 MB higher.
    """
    rows = iter(lines)
    header = orjson.loads(next(rows, b"null"))
    if not isinstance(header, dict) or header.get("format") != _FORMAT:
        raise CacheFormatError("not a parse cache")
    if header.get("version") != __version__ or header.get("schema") != SCHEMA:
        return None
    out: dict[CacheKey, DecodedFile] = {}
    for line in rows:
        if not line.strip():
            continue
        row = orjson.loads(line)
        if not (isinstance(row, list) and len(row) == 3):
            raise CacheFormatError("malformed entry")
        display, digest, body = row
        if not (isinstance(display, str) and isinstance(digest, str)):
            raise CacheFormatError("malformed entry key")
        out[(display, digest)] = decode_file(body)
    return out
