"""Waiting for the Consul cluster to have a leader, without holding anything else up.

hcat (internal/dependency/client_set.go hasLeader) asks `/v1/status/leader` until it names
a leader, sleeping 2, 4, 8, 16 and 32 s in between, and gives up with "no consul leader
detected" once the next sleep would exceed a minute; CTS then exits. Here the wait runs
as a background task: the API serves meanwhile, a health endpoint reads `state()`, and
only the watchers wait on `wait_ready()`. Past the minute the state says "no consul
leader detected" and the asking goes on once a minute, so a cluster that recovers later
is picked up without a restart. An unreachable agent is one more reason to keep asking
(hcat fails at once on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from reconciler.consul.client import ConsulAPI, ConsulError
from reconciler.consul.retry import Sleep

log = logging.getLogger("reconciler.consul")

FIRST_SLEEP = 2.0  # hcat doubles a 1 s start before its first sleep
MAX_SLEEP = 60.0  # hcat's maxRetryWait
NO_LEADER = "no consul leader detected"


class LeaderStatus(StrEnum):
    WAITING = "waiting"  # asking; no leader seen yet
    READY = "ready"  # a leader was named; watchers run
    NO_LEADER = "no_leader"  # still none after the minute hcat allows; still asking


@dataclass(frozen=True)
class LeaderState:
    status: LeaderStatus
    leader: str  # the leader's address once READY
    error: str  # the last reason there is no leader yet
    attempts: int
    since: float  # wall-clock time of the last status change


class LeaderWait:
    def __init__(
        self,
        client: ConsulAPI,
        *,
        sleep: Sleep = asyncio.sleep,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._sleep = sleep
        self._now = now
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._state = LeaderState(LeaderStatus.WAITING, "", "", 0, now())

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="consul leader")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def state(self) -> LeaderState:
        return self._state

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    def _set(self, status: LeaderStatus, *, leader: str = "", error: str = "") -> None:
        since = self._now() if status is not self._state.status else self._state.since
        self._state = LeaderState(status, leader, error, self._state.attempts + 1, since)

    async def _run(self) -> None:
        sleep = FIRST_SLEEP
        while True:
            try:
                leader = await self._client.leader()
                error = "" if leader else "the cluster has no leader yet"
            except ConsulError as err:
                leader, error = "", str(err)
            if leader:
                self._set(LeaderStatus.READY, leader=leader)
                log.info("consul: leader %s", leader)
                self._ready.set()
                return
            if sleep > MAX_SLEEP:
                if self._state.status is not LeaderStatus.NO_LEADER:
                    log.error(
                        "consul: %s (%s); still asking every %gs", NO_LEADER, error, MAX_SLEEP
                    )
                self._set(LeaderStatus.NO_LEADER, error=f"{NO_LEADER}: {error}")
                await self._sleep(MAX_SLEEP)
                continue
            self._set(LeaderStatus.WAITING, error=error)
            log.info("consul: waiting for a leader (%s); next try in %gs", error, sleep)
            await self._sleep(sleep)
            sleep *= 2
