"""Task run events and the status they give (cts-spec 5), kept across restarts.

The 5 newest events per task, newest first. A task's status follows CTS's rule:
`unknown` with no events, `successful` when the newest succeeded, `errored` when it failed
and is the only failure kept, `critical` when it failed and at least two kept events did.

Unlike CTS (memory only), events are saved atomically to one JSON file under the working
directory after every change, so a restart shows what ran before it. Saves are coalesced:
a burst of events costs one write per in-flight save, not one per event.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from reconciler._core.fsutil import atomic_write, private_dir

log = logging.getLogger(__name__)

KEEP = 5
# Saves follow each other at most this often: with thousands of tasks running, a save
# (an fsync of a file of every task's events) after every run would keep the disk busy
# for the Terraform runs themselves. A crash loses at most this much status, never a
# task definition.
SAVE_INTERVAL = 0.5
STATUSES = ("successful", "errored", "critical", "unknown")
_FORMAT = 1


def now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    """RFC 3339 with nanosecond-style fraction, as Go's RFC3339Nano prints it."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def _parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class EventConfig:
    providers: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Event:
    task_name: str
    success: bool
    start_time: datetime
    end_time: datetime
    error: str | None = None
    config: EventConfig = EventConfig()
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # The revision of the task's definition the run applied: its file's content hash, or
    # the commit sha for a git source (the task's provenance). Kept with the event on
    # disk; CTS's event JSON has no such field, so `to_json` leaves it out.
    revision: str = ""
    # Digest of what a successful run applied (definition, rendered inputs, local module):
    # a later trigger with the same digest has nothing to apply. Not shown in the API; the
    # store keeps the newest one per task.
    digest: str = field(default="", compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "success": self.success,
            "start_time": _timestamp(self.start_time),
            "end_time": _timestamp(self.end_time),
            "task_name": self.task_name,
            "error": None if self.error is None else {"message": self.error},
            "config": {
                "providers": list(self.config.providers),
                "services": list(self.config.services),
                "source": self.config.source,
            },
        }

    def to_record(self) -> dict[str, Any]:
        """The event as events.json keeps it: CTS's JSON plus the revision."""
        return {**self.to_json(), "revision": self.revision}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Event:
        error = data.get("error")
        config = data.get("config") or {}
        return cls(
            id=str(data["id"]),
            success=bool(data["success"]),
            start_time=_parse_timestamp(data["start_time"]),
            end_time=_parse_timestamp(data["end_time"]),
            task_name=str(data["task_name"]),
            error=str(error["message"]) if isinstance(error, dict) else None,
            config=EventConfig(
                tuple(config.get("providers") or ()),
                tuple(config.get("services") or ()),
                str(config.get("source") or ""),
            ),
            revision=str(data.get("revision") or ""),
        )


def status_of(events: Sequence[Event]) -> str:
    """CTS's successToStatus over the kept events, newest first."""
    if not events:
        return "unknown"
    if events[0].success:
        return "successful"
    failures = sum(1 for e in events if not e.success)
    return "critical" if failures > 1 else "errored"


class StatusStore:
    """Events per task; `path` None keeps them in memory only."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._events: dict[str, deque[Event]] = {}
        # Task name -> revision of its newest successful run. Kept apart from the 5 events:
        # after five failures the revision still running is still known.
        self._applied: dict[str, str] = {}
        # Task name -> digest of its newest successful apply (written in the same atomic
        # write as the event, so it never claims an apply whose event was not kept).
        self._digests: dict[str, str] = {}
        self.version = 0  # bumped on every change, for cached views
        # Task name -> `"name":[events]` as events.json holds them, encoded once per
        # change of that task: a save after one run re-encodes one task, not all of them
        # (at 10,000 tasks, encoding every event took the event loop ~100 ms per save).
        self._encoded: dict[str, bytes] = {}
        self._dirty = False
        self._saving: asyncio.Task[None] | None = None
        self._last_save = float("-inf")  # loop time

    # --- reading -------------------------------------------------------------------------

    def events(self, name: str) -> list[Event]:
        return list(self._events.get(name, ()))

    def status(self, name: str) -> str:
        return status_of(self.events(name))

    def names(self) -> list[str]:
        return list(self._events)

    def last_applied_revision(self, name: str) -> str | None:
        """The revision the newest successful run applied (Flux's lastAppliedRevision)."""
        return self._applied.get(name)

    def last_attempted_revision(self, name: str) -> str | None:
        """The revision the newest run tried (Flux's lastAttemptedRevision)."""
        kept = self._events.get(name)
        return (kept[0].revision or None) if kept else None

    # --- changing ------------------------------------------------------------------------

    def record(self, event: Event) -> None:
        kept = self._events.setdefault(event.task_name, deque(maxlen=KEEP))
        kept.appendleft(event)
        self._encoded.pop(event.task_name, None)
        if event.success and event.revision:
            self._applied[event.task_name] = event.revision
        if event.success and event.digest:
            self._digests[event.task_name] = event.digest
        elif not event.success:
            self._digests.pop(event.task_name, None)  # a failed apply may have changed things
        self._changed()

    def applied_digest(self, name: str) -> str | None:
        """The digest of the task's newest successful apply, if it is still the newest
        apply (a failure since forgets it)."""
        return self._digests.get(name)

    def carry_applied(self, name: str, old: str, new: str) -> None:
        """A new revision with the same definition (a commit that changed other files, a
        comment): what was applied at `old` is applied at `new` too."""
        if old and new and self._applied.get(name) == old:
            self._applied[name] = new
            self._changed()

    def forget(self, name: str) -> None:
        self._encoded.pop(name, None)
        self._digests.pop(name, None)
        applied = self._applied.pop(name, None)
        if self._events.pop(name, None) is not None or applied is not None:
            self._changed()

    def retain(self, names: Iterable[str]) -> None:
        """Drop the events of every task not named (tasks deleted while we were down)."""
        keep = set(names)
        for name in [n for n in {*self._events, *self._applied} if n not in keep]:
            self.forget(name)

    def _changed(self) -> None:
        self.version += 1
        self._dirty = True
        if self.path is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.save()
            return
        if self._saving is None or self._saving.done():
            self._saving = loop.create_task(self._save_pending(), name="status:save")

    # --- persistence ---------------------------------------------------------------------

    def load(self) -> None:
        if self.path is None:
            return
        try:
            data = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return
        except (OSError, orjson.JSONDecodeError) as exc:
            log.error("task events in %s cannot be read, starting without them: %s", self.path, exc)
            return
        self._events.clear()
        self._encoded.clear()
        self._applied.clear()
        self._digests.clear()
        for name, events in (data.get("tasks") or {}).items():
            try:
                parsed = [Event.from_json(e) for e in events][:KEEP]
            except (KeyError, TypeError, ValueError) as exc:
                log.error("task events of %s in %s are damaged, dropped: %s", name, self.path, exc)
                continue
            self._events[name] = deque(parsed, maxlen=KEEP)
        applied = data.get("applied") or {}
        if isinstance(applied, dict):
            self._applied = {str(k): str(v) for k, v in applied.items() if v}
        digests = data.get("digests") or {}
        if isinstance(digests, dict):
            self._digests = {str(k): str(v) for k, v in digests.items() if v}
        self.version += 1

    def _snapshot(self) -> bytes:
        """{"format", "tasks", "applied", "digests"}, from each task's cached encoding."""
        parts = []
        for name, events in self._events.items():
            encoded = self._encoded.get(name)
            if encoded is None:
                records = [e.to_record() for e in events]
                encoded = orjson.dumps(name) + b":" + orjson.dumps(records)
                self._encoded[name] = encoded
            parts.append(encoded)
        rest = orjson.dumps({"applied": self._applied, "digests": self._digests})
        return b"".join(
            (b'{"format":', orjson.dumps(_FORMAT), b',"tasks":{', b",".join(parts), b"},", rest[1:])
        )

    def save(self) -> None:
        if self.path is None:
            return
        self._dirty = False
        private_dir(self.path.parent)
        atomic_write(self.path, self._snapshot(), mode=0o600)

    async def _save_pending(self) -> None:
        loop = asyncio.get_running_loop()
        while self._dirty:
            wait = self._last_save + SAVE_INTERVAL - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)  # changes meanwhile go into this one save
            self._last_save = loop.time()
            self._dirty = False
            data = self._snapshot()
            assert self.path is not None
            path = self.path
            try:
                await asyncio.to_thread(_write, path, data)
            except OSError as exc:
                log.error("task events could not be saved to %s: %s", path, exc)
                return

    async def flush(self) -> None:
        """Wait until every recorded change is on disk."""
        while self._saving is not None and not self._saving.done():
            await asyncio.shield(self._saving)
        if self._dirty:
            await asyncio.to_thread(self.save)


def _write(path: Path, data: bytes) -> None:
    private_dir(path.parent)
    atomic_write(path, data, mode=0o600)
