"""Services matched by a regexp: the catalog names them, shared health watchers follow
their instances."""

from __future__ import annotations

import pytest
from consulfake import FakeConsul
from helpers import async_wait_for

from reconciler.consul import ConsulWatchers, HealthServiceQuery
from reconciler.consul.regexp import Instances, RegexpServicesWatch

pytestmark = pytest.mark.anyio


def ids(instances: Instances) -> list[str]:
    return [i.id for i in instances]


async def test_matching_services_and_their_health(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    seen: list[Instances] = []
    watch = RegexpServicesWatch(watchers, "^web", seen.append)
    watch.start()
    try:
        await async_wait_for(lambda: len(seen) == 1, what="the empty baseline")
        assert seen[0] == ()
        await consul.register("web", id="web-1", port=80)
        await async_wait_for(lambda: len(seen) == 2, what="the first match")
        assert ids(seen[1]) == ["web-1"]
        await consul.register("db", port=5432)  # does not match: nothing
        await consul.register("web-admin", port=81)
        await async_wait_for(lambda: len(seen) == 3, what="a second matching service")
        assert ids(seen[2]) == ["web-1", "web-admin"]
        assert len(seen) == 3
        # A health change alone is seen (CTS only follows the catalog index).
        await consul.set_status("web-1", "critical")
        await async_wait_for(lambda: len(seen) == 4, what="the critical instance leaving")
        assert ids(seen[3]) == ["web-admin"]
        assert watch.snapshot() == seen[3]
        # Its health watcher is shared with a task that watches web-admin by name.
        assert watchers.state(HealthServiceQuery("web-admin")) is not None
        await consul.deregister("web-admin")
        await async_wait_for(lambda: len(seen) == 5, what="the deregistration")
        assert seen[4] == ()
        await async_wait_for(
            lambda: watchers.state(HealthServiceQuery("web-admin")) is None,
            what="the unmatched service's watcher to stop",
        )
    finally:
        await watch.close()
    assert len(watchers) == 0
