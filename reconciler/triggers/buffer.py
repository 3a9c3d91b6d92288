"""Buffer periods: a trigger source wrapped around another, holding its triggers back until
they settle (hcat buffer_period.go, cts-spec 6).

Per task, with the period the task gets after inheritance (reconciler.taskfiles.buffer):

- the first trigger starts a timer for `min` and sets a deadline of now + `max`;
- each further trigger restarts the timer for `min`, but never past the deadline;
- when the timer fires, the latest trigger is handed on: the task runs once.

A trigger marked `buffered=False` (a task's first run when its data first arrives) goes
straight through and drops whatever was held for the task: it runs with the latest data
anyway. Schedule tasks have no buffer period (the cron source is not wrapped at all).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from reconciler.registry.store import LiveTask
from reconciler.taskfiles.buffer import EffectiveBuffer, effective_buffer
from reconciler.taskfiles.durations import format_duration
from reconciler.taskfiles.model import GlobalDefaults, TaskSpec
from reconciler.triggers.sources import Fire, ReportError, Trigger, TriggerSource

log = logging.getLogger("reconciler.runs.scheduler")

NS = 1e9


class Handle(Protocol):
    def cancel(self) -> None: ...


class Timers(Protocol):
    """Time for the buffer: monotonic seconds and one-shot callbacks (a fake in tests)."""

    def now(self) -> float: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle: ...


class LoopTimers:
    """The running event loop's clock and timers."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Handle:
        return asyncio.get_running_loop().call_later(delay, callback)


@dataclass
class _Held:
    trigger: Trigger  # the latest one
    deadline: float  # first trigger + max
    fire_at: float
    handle: Handle


class BufferedSource:
    """Wraps `inner`; runs in the event loop."""

    def __init__(
        self,
        inner: TriggerSource,
        defaults: GlobalDefaults,
        *,
        timers: Timers | None = None,
    ) -> None:
        self.inner = inner
        self.name = inner.name
        self._defaults = defaults
        self._timers: Timers = timers or LoopTimers()
        self._fire: Fire | None = None
        self._periods: dict[str, EffectiveBuffer] = {}
        self._specs: dict[str, TaskSpec] = {}
        self._held: dict[str, _Held] = {}
        self._closed = False

    def start(self, fire: Fire, report: ReportError) -> None:
        self._fire = fire
        self.inner.start(self._trigger, report)

    def owns_start(self, spec: TaskSpec) -> bool:
        return self.inner.owns_start(spec)

    def track(self, task: LiveTask) -> None:
        spec = task.spec
        period = effective_buffer(spec, self._defaults)
        if self._periods.get(spec.name) != period:
            _warn_corrected(task)
        self._periods[spec.name] = period
        self._specs[spec.name] = spec
        self.inner.track(task)

    def set_defaults(self, defaults: GlobalDefaults) -> None:
        """The daemon's buffer period changed (a reload): tasks that inherit it use the
        new one for their next trigger; a trigger already held keeps its deadline."""
        self._defaults = defaults
        self._periods = {
            name: effective_buffer(spec, defaults) for name, spec in self._specs.items()
        }

    def forget(self, name: str) -> None:
        self._periods.pop(name, None)
        self._specs.pop(name, None)
        self._drop(name)
        self.inner.forget(name)

    def _drop(self, name: str) -> None:
        held = self._held.pop(name, None)
        if held is not None:
            held.handle.cancel()

    # --- holding triggers back -----------------------------------------------------------

    def _trigger(self, trigger: Trigger) -> None:
        if self._closed:
            return
        period = self._periods.get(trigger.task)
        if not trigger.buffered or period is None or not period.enabled or period.min <= 0:
            self._drop(trigger.task)
            self._pass(trigger)
            return
        now = self._timers.now()
        held = self._held.get(trigger.task)
        if held is None:
            deadline = now + period.max / NS
        else:
            held.handle.cancel()
            deadline = held.deadline
        fire_at = min(now + period.min / NS, deadline)
        handle = self._timers.call_later(max(0.0, fire_at - now), lambda: self._due(trigger.task))
        self._held[trigger.task] = _Held(trigger, deadline, fire_at, handle)

    def _due(self, name: str) -> None:
        held = self._held.pop(name, None)
        if held is not None and not self._closed:
            self._pass(held.trigger)

    def _pass(self, trigger: Trigger) -> None:
        if self._fire is not None:
            self._fire(trigger)

    # --- views ---------------------------------------------------------------------------

    def watching(self) -> dict[str, str]:
        return self.inner.watching()

    def describe(self, name: str) -> Mapping[str, object] | None:
        inner = self.inner.describe(name)
        period = self._periods.get(name)
        if inner is None or period is None:
            return inner
        out = dict(inner)
        out["buffer_period"] = {
            "enabled": period.enabled,
            "min": format_duration(period.min),
            "max": format_duration(period.max),
        }
        held = self._held.get(name)
        out["buffer_deadline"] = self._wall(held.fire_at) if held is not None else None
        return out

    def _wall(self, at: float) -> str:
        """A time on the buffer's clock as wall-clock ISO 8601."""
        wall = time.time() + (at - self._timers.now())
        return datetime.fromtimestamp(wall, UTC).isoformat()

    async def close(self) -> None:
        self._closed = True
        for name in list(self._held):
            self._drop(name)
        await self.inner.close()


def _warn_corrected(task: LiveTask) -> None:
    bp = task.spec.buffer_period
    if bp is None or bp.min is None or bp.max is None or bp.min <= bp.max:
        return
    where = f"{task.provenance.path or task.provenance.file}:{task.provenance.line}"
    log.warning(
        "task %s (%s): buffer_period min %s is greater than max %s; max is raised to min",
        task.spec.name,
        where,
        format_duration(bp.min),
        format_duration(bp.max),
    )


def buffered(source: TriggerSource, defaults: GlobalDefaults) -> BufferedSource:
    """`source` with every task's buffer period applied to its triggers."""
    return BufferedSource(source, defaults)
