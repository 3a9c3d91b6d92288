"""Past the connection budget, services are watched through Consul's cluster-wide indexes
(`/v1/health/state/any`, `/v1/catalog/services`) and read only when they may have
changed: against the in-test server with per-query indexes, as Consul has them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from consulfake import FakeConsul
from consulkit import make_client
from helpers import async_wait_for

from reconciler.consul import ConsulClient, ConsulWatchers, HealthServiceQuery, Pacing
from reconciler.consul.connection import client_config
from reconciler.consul.feed import MODE
from reconciler.consul.watchers import Update, long_poll_budget
from reconciler.settings.model import ConsulSettings, ConsulTransportSettings

pytestmark = pytest.mark.anyio

CAP = 8  # connections; the budget is 6 long polls
NAMES = [f"svc{i:02d}" for i in range(20)]


class Seen:
    def __init__(self) -> None:
        self.updates: dict[str, list[Update]] = {}

    def __call__(self, update: Update) -> None:
        self.updates.setdefault(update.query.name, []).append(update)  # type: ignore[attr-defined]

    def count(self, name: str) -> int:
        return len(self.updates.get(name, []))

    def last(self, name: str) -> Any:
        return self.updates[name][-1].data


@pytest.fixture
async def fake() -> AsyncIterator[FakeConsul]:
    async with FakeConsul(shared_index=False) as f:
        for name in NAMES:
            await f.register(name, id=f"{name}-1", port=80)
        yield f


@pytest.fixture
async def capped(fake: FakeConsul) -> AsyncIterator[ConsulClient]:
    c = make_client(fake, transport=ConsulTransportSettings(max_conns_per_host=CAP))
    yield c
    await c.aclose()


@pytest.fixture
async def indexed(capped: ConsulClient, pacing: Pacing) -> AsyncIterator[ConsulWatchers]:
    w = ConsulWatchers(capped, pacing=pacing, max_connections=CAP)
    yield w
    await w.aclose()


async def watch_all(watchers: ConsulWatchers, names: list[str]) -> Seen:
    seen = Seen()
    for name in names:
        watchers.subscribe(HealthServiceQuery(name), seen)
    await async_wait_for(lambda: all(seen.count(n) == 1 for n in names), what="every first answer")
    return seen


def reads(fake: FakeConsul, name: str) -> int:
    return len(fake.requests_to(f"/v1/health/service/{name}"))


async def settled(fake: FakeConsul, watchers: ConsulWatchers) -> None:
    """Both feeds of the default datacenter are blocked in their long polls."""
    await async_wait_for(
        lambda: watchers.indexed and fake.in_flight == 2, what="the two index long polls"
    )


def test_the_budget_leaves_room_for_short_requests() -> None:
    assert long_poll_budget(None) is None
    assert long_poll_budget(64) == 56
    assert long_poll_budget(8) == 6
    assert client_config(ConsulSettings()).max_connections == 64
    assert (
        client_config(
            ConsulSettings(transport=ConsulTransportSettings(max_conns_per_host=0))
        ).max_connections
        is None
    )


async def test_many_services_hold_few_connections_and_each_change_reaches_its_watcher(
    fake: FakeConsul, indexed: ConsulWatchers
) -> None:
    seen = await watch_all(indexed, NAMES)
    assert indexed.indexed and indexed.budget == 6
    await settled(fake, indexed)
    assert fake.peak_connections <= CAP
    # No service holds a long poll: only the two indexes block.
    for name in NAMES:
        assert all(not r.blocking for r in fake.requests_to(f"/v1/health/service/{name}"))
    state = indexed.state(HealthServiceQuery("svc00"))
    assert state is not None and state.mode == MODE
    feed = next(iter(indexed.feeds.values()))

    # A new instance, with its check: only that service is read, and no full sweep.
    before = {n: reads(fake, n) for n in NAMES}
    await fake.register("svc07", id="svc07-2", node="node-2", port=81)
    await async_wait_for(lambda: seen.count("svc07") == 2, what="the new instance")
    assert [i.id for i in seen.last("svc07")] == ["svc07-1", "svc07-2"]
    await settled(fake, indexed)
    assert {n: reads(fake, n) - before[n] for n in NAMES if reads(fake, n) != before[n]} == {
        "svc07": 1
    }
    assert feed.marked_all == 0

    # An instance turns critical: it leaves the passing instances.
    await fake.set_status("svc03-1", "critical")
    await async_wait_for(lambda: seen.count("svc03") == 2, what="the critical instance")
    assert seen.last("svc03") == ()

    # A re-registration with a new port changes no check: no service can be pinned, so
    # every service is read; only the changed one notifies.
    await fake.register("svc11", id="svc11-1", port=8080)
    await async_wait_for(lambda: seen.count("svc11") == 2, what="the new port")
    assert [i.port for i in seen.last("svc11")] == [8080]
    assert feed.marked_all == 1

    # A deregistration.
    await fake.deregister("svc05-1")
    await async_wait_for(lambda: seen.count("svc05") == 2, what="the deregistration")
    assert seen.last("svc05") == ()

    await settled(fake, indexed)
    assert fake.peak_connections <= CAP
    changed = {"svc07", "svc03", "svc11", "svc05"}
    assert all(seen.count(n) == 1 for n in NAMES if n not in changed)


async def test_a_service_that_does_not_exist_yet_is_seen_when_registered(
    fake: FakeConsul, indexed: ConsulWatchers
) -> None:
    seen = await watch_all(indexed, [*NAMES, "later"])
    assert seen.last("later") == ()
    await settled(fake, indexed)
    await fake.register("later", id="later-1", port=90)
    await async_wait_for(lambda: seen.count("later") == 2, what="the new service")
    assert [i.id for i in seen.last("later")] == ["later-1"]


async def test_a_restored_snapshot_and_a_restart_do_not_lose_changes(
    fake: FakeConsul, indexed: ConsulWatchers
) -> None:
    seen = await watch_all(indexed, NAMES)
    await settled(fake, indexed)
    await fake.restore_snapshot(5)
    await fake.register("svc02", id="svc02-2", node="node-2", port=81)
    await async_wait_for(lambda: seen.count("svc02") == 2, what="a change after the restore")

    await fake.stop()
    await fake.start()  # same port
    await fake.register("svc09", id="svc09-1", port=9090)  # services-only, after the gap
    await async_wait_for(lambda: seen.count("svc09") == 2, what="a change after a restart")
    assert [i.port for i in seen.last("svc09")] == [9090]


async def test_back_to_long_polls_once_few_services_remain(
    fake: FakeConsul, indexed: ConsulWatchers
) -> None:
    seen = Seen()
    subs = [indexed.subscribe(HealthServiceQuery(n), seen) for n in NAMES]
    await async_wait_for(lambda: all(seen.count(n) == 1 for n in NAMES), what="first answers")
    assert indexed.indexed
    for sub in subs[3:]:
        await sub.close()
    assert not indexed.indexed and not indexed.feeds
    state = indexed.state(HealthServiceQuery("svc01"))
    assert state is not None and state.mode == "long poll"
    await async_wait_for(lambda: fake.in_flight == 3, what="one long poll per service")
    await fake.register("svc01", id="svc01-1", port=81)
    await async_wait_for(lambda: seen.count("svc01") == 2, what="the change over a long poll")
    assert fake.requests_to("/v1/health/service/svc01")[-1].blocking


async def test_without_a_cap_every_query_has_its_own_long_poll(
    fake: FakeConsul, pacing: Pacing
) -> None:
    client = make_client(fake, transport=ConsulTransportSettings(max_conns_per_host=0))
    watchers = ConsulWatchers(client, pacing=pacing, max_connections=None)
    try:
        await watch_all(watchers, NAMES)
        assert not watchers.indexed and watchers.budget is None
        await async_wait_for(lambda: fake.in_flight == len(NAMES), what="a long poll each")
        assert fake.peak_connections >= len(NAMES)
    finally:
        await watchers.aclose()
        await client.aclose()
