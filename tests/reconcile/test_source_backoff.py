"""An unavailable source is retried with a growing delay; a hint still tries at once."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from helpers import async_wait_for, task_hcl

from reconciler._core.backoff import Backoff
from reconciler.api.status import source_problems
from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.registry.store import Registry
from reconciler.sources.base import SourceUpdate
from reconciler.sources.directory import DirectorySource


def test_delays_double_from_the_first_to_the_cap() -> None:
    backoff = Backoff(first=1.0, cap=300.0, jitter=0.2, uniform=lambda: 0.0)
    assert [backoff.delay(n) for n in range(1, 12)] == [
        1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300,
    ]  # fmt: skip
    assert backoff.delay(10**6) == 300  # days of failures: no overflow


def test_jitter_only_shortens_and_each_wait_is_longer_than_the_last() -> None:
    rng = random.Random(7)
    backoff = Backoff(first=1.0, cap=300.0, jitter=0.2, uniform=rng.random)
    for _ in range(200):
        delays = [backoff.delay(n) for n in range(1, 15)]
        assert all(0.8 * min(300, 2 ** (n - 1)) <= d <= min(300, 2 ** (n - 1))
                   for n, d in enumerate(delays, 1))  # fmt: skip
        growing = [d for d in delays if d < 0.8 * 300]
        assert growing == sorted(growing)


def test_invalid_backoff_is_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(first=0)
    with pytest.raises(ValueError):
        Backoff(first=10, cap=1)


class CountingDirectory(DirectorySource):
    """A real directory source that records when each full scan was attempted."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.attempts: list[float] = []
        self.clock = asyncio.get_running_loop().time

    def full_scan(self) -> SourceUpdate:
        self.attempts.append(self.clock())
        return super().full_scan()


@asynccontextmanager
async def running(
    root: Path, backoff: Backoff
) -> AsyncIterator[tuple[CountingDirectory, SourceLoop]]:
    source = CountingDirectory(root)
    loop = SourceLoop(source, Reconciler(Registry()), backoff=backoff)
    await loop.initial_load()
    runner = asyncio.create_task(loop.run())
    try:
        yield source, loop
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        loop.close()


def test_attempts_are_spaced_by_the_growing_delay(tmp_path: Path) -> None:
    async def main() -> None:
        backoff = Backoff(first=0.05, cap=0.4, jitter=0.0)
        async with running(tmp_path / "missing", backoff) as (source, loop):
            await async_wait_for(lambda: len(source.attempts) >= 7, timeout=30, what="attempts")
            gaps = [b - a for a, b in zip(source.attempts, source.attempts[1:], strict=False)]
            wanted = [backoff.delay(n) for n in range(1, len(gaps) + 1)]
            # The loop never tries sooner than the backoff says (later is fine: a busy CPU).
            for gap, delay in zip(gaps, wanted, strict=True):
                assert gap >= delay * 0.95, (gaps, wanted)
            assert loop.status.failures >= 7 and loop.status.error is not None
            assert loop.status.next_retry is not None

    asyncio.run(main())


def test_a_hint_makes_an_attempt_at_once_and_recovery_resets(tmp_path: Path) -> None:
    async def main() -> None:
        root = tmp_path / "tasks"
        # A minute between attempts: anything sooner was asked for.
        backoff = Backoff(first=60.0, cap=600.0, jitter=0.0)
        async with running(root, backoff) as (source, loop):
            assert len(source.attempts) == 1 and loop.status.failures == 1
            problems = source_problems(loop.reconciler)
            assert len(problems) == 1
            assert "does not exist" in problems[0] and "1 failed attempt;" in problems[0]
            assert re.search(r"next attempt at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", problems[0])

            loop.hint(None)  # a webhook, SIGHUP
            await async_wait_for(lambda: len(source.attempts) == 2, what="the hinted attempt")
            assert loop.status.failures == 2
            assert "2 failed attempts" in source_problems(loop.reconciler)[0]

            root.mkdir()
            (root / "a.hcl").write_text(task_hcl("a"))
            loop.hint(None)
            # The error clears when the scan succeeds; the tasks land once they are applied.
            await async_wait_for(lambda: "a" in loop.reconciler.registry, what="recovery")
            assert loop.status.error is None
            assert (loop.status.failures, loop.status.next_retry) == (0, None)
            assert source_problems(loop.reconciler) == []

    asyncio.run(main())


def test_a_partial_pass_does_not_end_the_outage_but_asks_for_a_full_one(tmp_path: Path) -> None:
    async def main() -> None:
        root = tmp_path / "tasks"
        source = DirectorySource(root)
        loop = SourceLoop(source, Reconciler(Registry()), backoff=Backoff(first=60.0))
        await loop.initial_load()
        assert loop.status.error is not None
        root.mkdir()
        (root / "a.hcl").write_text(task_hcl("a"))
        (root / "b.hcl").write_text(task_hcl("b"))
        async with loop.lock:
            await loop.sync_paths(["a.hcl"])  # what an API write does
        assert loop.status.error is not None  # b.hcl has not been read yet
        runner = asyncio.create_task(loop.run())
        try:
            await async_wait_for(
                lambda: {"a", "b"} <= set(loop.reconciler.registry.names()), what="the full pass"
            )
            assert loop.status.error is None
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            loop.close()

    asyncio.run(main())


class Passes:
    def __init__(self) -> None:
        self.seen: list[tuple[str, bool]] = []

    def run_finished(self, task: str, success: bool, seconds: float) -> None:
        pass

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        pass

    def source_pass(self, source: str, ok: bool, seconds: float) -> None:
        assert seconds >= 0
        self.seen.append((source, ok))

    def webhook(self, accepted: bool) -> None:
        pass


@pytest.mark.anyio
async def test_every_pass_is_reported_to_the_recorder(tmp_path: Path) -> None:
    root = tmp_path / "tasks"
    root.mkdir()
    (root / "a.hcl").write_text(task_hcl("a"))
    source = DirectorySource(root)
    recorder = Passes()
    loop = SourceLoop(source, Reconciler(Registry()), recorder=recorder)
    await loop.initial_load()
    (root / "a.hcl").unlink()
    root.rmdir()
    async with loop.lock:
        await loop._pass(full=True, paths=set())
    assert recorder.seen == [(source.name, True), (source.name, False)]
