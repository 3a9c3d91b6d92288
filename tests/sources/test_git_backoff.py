"""An unreachable remote is retried with backoff; a webhook's hint fetches at once."""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

from gitkit import Remote, source, tasks
from helpers import async_wait_for

from reconciler._core.backoff import Backoff
from reconciler.api.status import source_problems
from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.registry.store import Registry


def test_unreachable_remote_waits_for_the_backoff_but_not_for_a_hint(tmp_path: Path) -> None:
    async def main() -> None:
        remote = Remote.create(tmp_path, tasks("a"))
        src = source(remote, tmp_path / "work")
        registry = Registry()
        # Polling every 50 ms, a minute of backoff: only hints can explain quick attempts.
        loop = SourceLoop(
            src, Reconciler(registry), rescan_interval=0.05, backoff=Backoff(first=60.0, jitter=0)
        )
        await loop.initial_load()
        runner = asyncio.create_task(loop.run())
        try:
            away = tmp_path / "away.git"
            os.rename(remote.bare, away)
            await async_wait_for(lambda: loop.status.failures == 1, what="the first failure")
            message = source_problems(loop.reconciler)[0]
            assert "source 'git' is unavailable" in message and "next attempt at" in message
            for n in (2, 3):
                loop.hint(None)  # what a signed webhook call does
                await async_wait_for(lambda n=n: loop.status.failures == n, what=f"attempt {n}")  # type: ignore[misc]
            assert set(registry.names()) == {"a"}

            os.rename(away, remote.bare)
            remote.commit_and_push(tasks("b"))
            loop.hint(None)
            await async_wait_for(lambda: "b" in registry, what="the fetch after the outage")
            assert loop.status.error is None and loop.status.failures == 0
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
            loop.close()
            src.close()

    asyncio.run(main())
