"""Waiting for a Consul leader in the background, against the in-test server."""

from __future__ import annotations

import pytest
from consulfake import FakeConsul
from consulkit import RecordingSleep
from helpers import async_wait_for

from reconciler.consul import (
    ConsulClient,
    ConsulWatchers,
    HealthServiceQuery,
    LeaderStatus,
    LeaderWait,
    Update,
)

pytestmark = pytest.mark.anyio


async def test_a_leader_at_once(consul: FakeConsul, client: ConsulClient) -> None:
    wait = LeaderWait(client, sleep=RecordingSleep())
    wait.start()
    try:
        await wait.wait_ready()
        state = wait.state()
        assert state.status is LeaderStatus.READY and state.leader == "127.0.0.1:8300"
        assert wait.ready and state.attempts == 1
    finally:
        await wait.stop()


async def test_watchers_start_once_a_leader_is_elected(
    consul: FakeConsul, client: ConsulClient, sleeps: RecordingSleep
) -> None:
    consul.leader = ""
    await consul.register("web", port=80)
    wait = LeaderWait(client, sleep=sleeps)
    watchers = ConsulWatchers(client, gate=wait.wait_ready)
    wait.start()
    seen: list[Update] = []
    try:
        watchers.subscribe(HealthServiceQuery("web"), seen.append)
        await async_wait_for(lambda: len(sleeps.calls) >= 3, what="three unanswered asks")
        state = wait.state()
        assert state.status is LeaderStatus.WAITING and "no leader" in state.error
        assert sleeps.calls[:3] == [2.0, 4.0, 8.0]  # hcat hasLeader: 2, 4, 8 ... s
        # Nothing but the leader endpoint was asked meanwhile.
        assert {r.path for r in consul.requests} == {"/v1/status/leader"}
        assert not seen
        consul.leader = "10.0.0.9:8300"
        await async_wait_for(lambda: len(seen) == 1, what="the first data")
        assert wait.state().status is LeaderStatus.READY
        assert wait.state().leader == "10.0.0.9:8300"
    finally:
        await watchers.aclose()
        await wait.stop()


async def test_no_leader_after_a_minute_is_reported_and_asking_goes_on(
    consul: FakeConsul, client: ConsulClient, sleeps: RecordingSleep
) -> None:
    consul.leader = ""
    wait = LeaderWait(client, sleep=sleeps)
    wait.start()
    try:
        await async_wait_for(
            lambda: wait.state().status is LeaderStatus.NO_LEADER, what="the give-up point"
        )
        # hcat sleeps 2+4+8+16+32 s, then the next sleep would pass a minute.
        assert sleeps.calls[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
        assert wait.state().error.startswith("no consul leader detected")
        await async_wait_for(lambda: len(sleeps.calls) >= 7, what="more asking")
        assert sleeps.calls[5:7] == [60.0, 60.0]
        consul.leader = "10.0.0.9:8300"
        await wait.wait_ready()
        assert wait.state().status is LeaderStatus.READY
    finally:
        await wait.stop()


async def test_an_unreachable_agent_is_waited_for(
    consul: FakeConsul, client: ConsulClient, sleeps: RecordingSleep
) -> None:
    await consul.stop()
    wait = LeaderWait(client, sleep=sleeps)
    wait.start()
    try:
        await async_wait_for(lambda: len(sleeps.calls) >= 2, what="two refused asks")
        state = wait.state()
        assert state.status is LeaderStatus.WAITING and "ConnectError" in state.error
        await consul.start()
        await wait.wait_ready()
    finally:
        await wait.stop()
