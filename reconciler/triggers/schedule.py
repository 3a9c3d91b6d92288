"""`condition "schedule"`: the cron trigger source, firing in local time as CTS does.

The expression is read by reconciler.taskfiles.cron, the same code that validated it, so a
schedule that validates runs. Should one still find no next time (a year that is over),
the task gets an error in its status instead of a log line nobody reads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from reconciler.registry.store import LiveTask
from reconciler.taskfiles.conditions import kind_of
from reconciler.taskfiles.cron import cron_iterator, next_fire
from reconciler.taskfiles.model import TaskSpec
from reconciler.triggers.sources import Fire, ReportError, Trigger

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

__all__ = ["Clock", "CronSource", "cron_iterator", "local_now", "next_fire", "run_schedule"]


def local_now() -> datetime:
    return datetime.now().astimezone()


class ScheduleError(Exception):
    pass


async def run_schedule(
    name: str, expr: str, fire: Callable[[], None], *, clock: Clock = local_now
) -> None:
    """Call `fire` at every time the expression names, until cancelled. Raises
    ScheduleError when the expression has no next time."""
    last = clock()
    while True:
        try:
            when = next_fire(expr, last)
        except (ValueError, KeyError) as exc:
            raise ScheduleError(f'schedule "{expr}" has no next time to run: {exc}') from None
        delay = (when - clock()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)
        last = when
        fire()


class CronSource:
    """One timer task per task whose condition has a cron expression (its kind's `cron`:
    `condition "schedule"`)."""

    name = "schedule"

    def __init__(self, *, clock: Clock = local_now) -> None:
        self.clock = clock
        self._fire: Fire | None = None
        self._report: ReportError | None = None
        self._timers: dict[str, tuple[str, asyncio.Task[None]]] = {}
        self._closed = False

    def start(self, fire: Fire, report: ReportError) -> None:
        self._fire, self._report = fire, report

    def owns_start(self, spec: TaskSpec) -> bool:
        return False

    def track(self, task: LiveTask) -> None:
        name, c = task.spec.name, task.spec.condition
        # Disabled tasks keep their timer: the scheduler ignores their ticks, and enabling
        # them needs no new timer.
        expr = kind_of(c).cron(c) if c is not None else None
        current = self._timers.get(name)
        if current is not None and current[0] == expr and not current[1].done():
            return
        self.forget(name)
        if expr and not self._closed:
            timer = asyncio.get_running_loop().create_task(
                self._run(name, expr), name=f"schedule:{name}"
            )
            self._timers[name] = (expr, timer)

    def forget(self, name: str) -> None:
        current = self._timers.pop(name, None)
        if current is not None:
            current[1].cancel()
            if self._report is not None:
                self._report(name, None)

    async def _run(self, name: str, expr: str) -> None:
        def tick() -> None:
            if self._fire is not None:
                self._fire(Trigger(name, "schedule", only_if_changed=True, skip_unchanged=False))

        try:
            await run_schedule(name, expr, tick, clock=self.clock)
        except ScheduleError as exc:
            log.error("task %s: %s", name, exc)
            if self._report is not None:
                self._report(name, str(exc))

    def watching(self) -> dict[str, str]:
        return {name: expr for name, (expr, timer) in self._timers.items() if not timer.done()}

    def describe(self, name: str) -> Mapping[str, object] | None:
        current = self._timers.get(name)
        if current is None or current[1].done():
            return None
        expr = current[0]
        try:
            upcoming: str | None = next_fire(expr, self.clock()).isoformat()
        except (ValueError, KeyError):
            upcoming = None
        return {"cron": expr, "next_fire": upcoming}

    async def close(self) -> None:
        self._closed = True
        timers = [timer for _, timer in self._timers.values()]
        self._timers.clear()
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
