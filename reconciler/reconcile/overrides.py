"""Changes made through the API to tasks written in the daemon's configuration files.

CTS lets `PATCH` (enabled) and `DELETE` act on such tasks, in memory only: a restart
brings them back as written. Here the change survives a restart, yet the configuration
files stay untouched (they are read-only under the shipped systemd unit, and they are the
operator's): each change is an override, recorded durably under the working directory
and applied on top of the file's task. An override remembers the task's definition it was
made against; once the configuration's definition of that task changes (an edit and a
reload, or a restart), the file wins again and the override is dropped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from reconciler._core.fsutil import atomic_write
from reconciler.taskfiles.model import TaskSpec

log = logging.getLogger("reconciler.overrides")

FILE_MODE = 0o600
_VERSION = 1


def definition_digest(spec: TaskSpec) -> str:
    """Names one definition of a task (specs are frozen dataclasses: repr is stable)."""
    return hashlib.sha256(repr(spec).encode()).hexdigest()


@dataclass(frozen=True)
class Override:
    """One API change to a configuration task: disabled/enabled, or deleted."""

    task: str
    base: str  # definition_digest of the configuration's task it was made against
    file: str  # where that task is written, file:line
    enabled: bool | None = None  # None: unchanged
    deleted: bool = False
    at: str = ""  # when (UTC, ISO 8601)
    request_id: str = ""

    def describe(self) -> str:
        what = "deleted" if self.deleted else ("enabled" if self.enabled else "disabled")
        by = f" (request {self.request_id})" if self.request_id else ""
        return (
            f"{what} through the API at {self.at}{by}; {self.file} is unchanged, and an edit "
            "of this task there ends the override"
        )

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "file": self.file,
            "at": self.at,
            "request_id": self.request_id,
            "reason": self.describe(),
        }
        if self.deleted:
            out["deleted"] = True
        else:
            out["enabled"] = self.enabled
        return out


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class OverrideStore:
    """The overrides, kept in one JSON file (written atomically, 0600). Read once at start;
    written from worker threads one at a time (a lock), read from the event loop."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path  # None: kept in memory only (tests, one-shot modes)
        self._lock = threading.Lock()
        self._overrides: dict[str, Override] = self._load()

    def _load(self) -> dict[str, Override]:
        if self.path is None:
            return {}
        try:
            doc = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, orjson.JSONDecodeError) as exc:
            # Refusing to start would be worse: the tasks then run as the files say.
            log.error(
                "%s cannot be read (%s): API changes to configuration tasks are lost",
                self.path,
                exc,
            )
            return {}
        out: dict[str, Override] = {}
        tasks = doc.get("tasks") if isinstance(doc, dict) else None
        for name, raw in (tasks or {}).items():
            try:
                out[name] = Override(task=name, **raw)
            except TypeError:
                log.error("%s: the entry of task %s is not understood; ignored", self.path, name)
        return out

    def all(self) -> Mapping[str, Override]:
        return dict(self._overrides)

    def get(self, name: str) -> Override | None:
        return self._overrides.get(name)

    def put(self, override: Override) -> None:
        """Record `override` durably (blocking: call from a worker thread)."""
        with self._lock:
            changed = {**self._overrides, override.task: override}
            self._save(changed)
            self._overrides = changed

    def drop(self, names: set[str], *, save: bool = True) -> None:
        """Forget these overrides; `save` False: in memory only, for `save` later (the
        event loop drops them, a worker thread writes the file)."""
        with self._lock:
            changed = {k: v for k, v in self._overrides.items() if k not in names}
            if len(changed) != len(self._overrides):
                if save:
                    self._save(changed)
                self._overrides = changed

    def save(self) -> None:
        """Write the overrides as they are (blocking: call from a worker thread)."""
        with self._lock:
            self._save(self._overrides)

    def _save(self, overrides: Mapping[str, Override]) -> None:
        if self.path is None:
            return
        tasks = {}
        for name, o in sorted(overrides.items()):
            entry = asdict(o)
            del entry["task"]
            tasks[name] = entry
        data = orjson.dumps({"version": _VERSION, "tasks": tasks}, option=orjson.OPT_INDENT_2)
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(self.path, data + b"\n", mode=FILE_MODE)
