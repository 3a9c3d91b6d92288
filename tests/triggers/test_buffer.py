"""Buffer periods (cts-spec 6) on an injected clock: exact, and no real waiting."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
from helpers import async_wait_for
from runfakes import create, live, make_scheduler, spec

from reconciler.registry.store import LiveTask, RegistryChange
from reconciler.taskfiles.model import BufferPeriodConfig, GlobalDefaults, TaskSpec
from reconciler.triggers.buffer import BufferedSource
from reconciler.triggers.schedule import CronSource
from reconciler.triggers.sources import Fire, ReportError, Trigger

S = 1_000_000_000
DEFAULTS = GlobalDefaults(True, 5 * S, 20 * S)


class FakeTimers:
    def __init__(self) -> None:
        self.time = 0.0
        self.pending: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0

    def now(self) -> float:
        return self.time

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeHandle:
        self._seq += 1
        entry = (self.time + delay, self._seq, callback)
        self.pending.append(entry)
        return FakeHandle(self, entry)

    def advance(self, seconds: float) -> None:
        end = self.time + seconds
        while True:
            due = sorted(e for e in self.pending if e[0] <= end)
            if not due:
                break
            entry = due[0]
            self.pending.remove(entry)
            self.time = entry[0]
            entry[2]()
        self.time = end


class FakeHandle:
    def __init__(self, timers: FakeTimers, entry: tuple[float, int, Callable[[], None]]) -> None:
        self.timers, self.entry = timers, entry

    def cancel(self) -> None:
        if self.entry in self.timers.pending:
            self.timers.pending.remove(self.entry)


class Inner:
    name = "manual"

    def __init__(self) -> None:
        self.fire: Fire | None = None
        self.tracked: set[str] = set()

    def start(self, fire: Fire, report: ReportError) -> None:
        self.fire = fire

    def owns_start(self, spec: TaskSpec) -> bool:
        return False

    def track(self, task: LiveTask) -> None:
        self.tracked.add(task.spec.name)

    def forget(self, name: str) -> None:
        self.tracked.discard(name)

    def watching(self) -> dict[str, str]:
        return {n: "x" for n in self.tracked}

    def describe(self, name: str) -> Mapping[str, object] | None:
        return {"inner": True} if name in self.tracked else None

    async def close(self) -> None:
        pass


def make(
    buffer: BufferPeriodConfig | None = None, defaults: GlobalDefaults = DEFAULTS
) -> tuple[BufferedSource, Inner, FakeTimers, list[Trigger]]:
    inner, timers, fired = Inner(), FakeTimers(), []
    source = BufferedSource(inner, defaults, timers=timers)
    source.start(fired.append, lambda name, error: None)
    source.track(live(spec("t", buffer_period=buffer)))
    return source, inner, timers, fired


def send(inner: Inner, reason: str = "change", *, buffered: bool = True) -> None:
    assert inner.fire is not None
    inner.fire(Trigger("t", reason, buffered=buffered))


def test_a_single_change_fires_after_min() -> None:
    _, inner, timers, fired = make()
    send(inner)
    timers.advance(4.9)
    assert fired == []
    timers.advance(0.1)
    assert [t.reason for t in fired] == ["change"]


def test_each_change_restarts_min_and_the_latest_trigger_wins() -> None:
    _, inner, timers, fired = make()
    send(inner, "a")
    timers.advance(3)
    send(inner, "b")
    timers.advance(4.9)  # 7.9 s after the first, 4.9 after the last
    assert fired == []
    timers.advance(0.1)
    assert [t.reason for t in fired] == ["b"]


def test_a_steady_stream_fires_at_max_after_the_first() -> None:
    _, inner, timers, fired = make()
    send(inner, "0")
    for n in range(1, 10):  # a change every 4 s: min never runs out
        timers.advance(4)
        send(inner, str(n))
    # At 20 s, the deadline, with the latest trigger (the one of 16 s); the one of 20 s
    # starts the next period.
    assert [t.reason for t in fired] == ["4"]
    assert timers.time == 36


def test_unbuffered_triggers_and_disabled_periods_go_straight_through() -> None:
    _, inner, timers, fired = make()
    send(inner, "held")
    send(inner, "start", buffered=False)
    assert [t.reason for t in fired] == ["start"]
    timers.advance(60)
    assert [t.reason for t in fired] == ["start"]  # what was held went with it
    _, inner, timers, fired = make(BufferPeriodConfig(enabled=False))
    send(inner)
    assert len(fired) == 1
    _, inner, timers, fired = make(defaults=GlobalDefaults(False, 0, 0))
    send(inner)
    assert len(fired) == 1


def test_a_task_period_overrides_the_global_one_and_min_above_max_is_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        source, inner, timers, fired = make(BufferPeriodConfig(min=2 * S, max=1 * S))
    assert "buffer_period min 2s is greater than max 1s" in caplog.text
    send(inner)
    timers.advance(2)
    assert len(fired) == 1
    described = source.describe("t")
    assert described is not None and described["inner"] is True
    assert described["buffer_period"] == {"enabled": True, "min": "2s", "max": "2s"}
    assert described["buffer_deadline"] is None
    send(inner)
    described = source.describe("t")
    assert described is not None and isinstance(described["buffer_deadline"], str)


def test_forget_and_close_fire_nothing() -> None:
    source, inner, timers, fired = make()
    send(inner)
    source.forget("t")
    timers.advance(60)
    assert fired == [] and timers.pending == []
    source.track(live(spec("t")))
    send(inner)


@pytest.mark.anyio
async def test_close_drops_what_is_held() -> None:
    source, inner, timers, fired = make()
    send(inner)
    await source.close()
    timers.advance(60)
    assert fired == []


@pytest.mark.anyio
async def test_a_burst_gives_one_run_through_the_scheduler(tmp_path: Path) -> None:
    inner = Inner()
    buffer = BufferedSource(inner, GlobalDefaults(True, S // 20, S // 5))  # 50 ms / 200 ms
    registry, scheduler, fake = make_scheduler(tmp_path, sources=[CronSource(), buffer])
    create(registry, live(spec("t")))
    await scheduler.idle()
    for n in range(5):
        send(inner, f"change {n}")
    await async_wait_for(lambda: len(fake.ops("t", "apply")) == 1, timeout=5)
    await scheduler.idle()
    assert "buffer_period" in scheduler.waiting_on("t")["manual"]
    registry.apply(RegistryChange(deleted=(live(spec("t")),)))
    assert scheduler.waiting_on("t") == {}
    await scheduler.shutdown(0)
    assert len(fake.ops("t", "apply")) == 1
