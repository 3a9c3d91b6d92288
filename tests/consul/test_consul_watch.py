"""Blocking-query watchers against the in-test Consul server over real HTTP: index
handling, error classes and their backoff, restarts, sharing between subscribers."""

from __future__ import annotations

from typing import Any

import pytest
from consulfake import FakeConsul
from consulkit import RecordingSleep, make_client
from helpers import async_wait_for

from reconciler.consul import (
    CatalogServicesQuery,
    ConsulClient,
    ConsulError,
    ConsulWatchers,
    HealthServiceQuery,
    KVQuery,
    Pacing,
    Query,
    Update,
    WatchStatus,
    retry_policy,
)
from reconciler.consul.convert import catalog_services

pytestmark = pytest.mark.anyio

WEB = HealthServiceQuery("web")


class Seen:
    def __init__(self) -> None:
        self.updates: list[Update] = []
        self.errors: list[tuple[Query, ConsulError]] = []

    def __call__(self, update: Update) -> None:
        self.updates.append(update)

    def error(self, query: Query, err: ConsulError) -> None:
        self.errors.append((query, err))

    def ids(self, n: int = -1) -> list[str]:
        data: Any = self.updates[n].data
        return [i.id for i in data]


async def test_index_advances_and_each_change_is_delivered(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    await consul.register("web", id="web-1", port=80)
    seen = Seen()
    sub = watchers.subscribe(WEB, seen)
    await async_wait_for(lambda: len(seen.updates) == 1, what="the first data")
    assert seen.updates[0].first and seen.ids() == ["web-1"]
    first = consul.requests_to("/v1/health/service/web")[0]
    assert first.param("index") is None  # hcat omits the index while it is 0
    assert first.param("passing") == "1"
    await async_wait_for(lambda: consul.in_flight == 1, what="a long poll")
    poll = consul.requests_to("/v1/health/service/web")[-1]
    assert poll.param("index") == str(consul.index) and poll.param("wait") == "5000ms"

    await consul.register("web", id="web-2", node="node-2", port=81)
    await async_wait_for(lambda: len(seen.updates) == 2, what="the registration")
    assert seen.ids() == ["web-1", "web-2"] and not seen.updates[1].first
    assert seen.updates[1].index == consul.index
    state = sub.state()
    assert state is not None and state.index == consul.index
    assert state.status is WatchStatus.WATCHING and state.last_change is not None

    await consul.deregister("web-1")
    await async_wait_for(lambda: len(seen.updates) == 3, what="the deregistration")
    assert seen.ids() == ["web-2"]
    assert [i.id for i in sub.snapshot()] == ["web-2"]  # type: ignore[attr-defined]


async def test_unrelated_index_bumps_notify_nobody(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    await consul.register("web", port=80)
    seen = Seen()
    sub = watchers.subscribe(WEB, seen)
    await async_wait_for(lambda: len(seen.updates) == 1, what="the first data")
    await consul.register("db", port=5432)  # another service: the index moves
    await consul.kv_put("flag", "on")
    await consul.touch()
    target = consul.index
    await async_wait_for(
        lambda: (s := sub.state()) is not None and s.index == target, what="the new index"
    )
    assert len(seen.updates) == 1
    await consul.set_status("web", "warning")  # a real change for this query
    await async_wait_for(lambda: len(seen.updates) == 2, what="the health change")
    assert seen.ids() == []  # passing only: a warning instance leaves


async def test_an_index_that_goes_backwards_resets_to_zero(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    consul.index = 500
    await consul.register("web", port=80)
    seen = Seen()
    sub = watchers.subscribe(WEB, seen)
    await async_wait_for(lambda: len(seen.updates) == 1, what="the first data")
    await async_wait_for(lambda: consul.in_flight == 1, what="a long poll at 501")
    await consul.restore_snapshot(40)  # wakes the poll with index 40 < 501
    await async_wait_for(
        lambda: (s := sub.state()) is not None and s.index == 40, what="the reset index"
    )
    polls = consul.requests_to("/v1/health/service/web")
    params = [r.param("index") for r in polls]
    # 501 came back as 40: the next query goes without an index, then blocks on 40.
    assert params[:3] == [None, "501", None]
    await async_wait_for(lambda: consul.in_flight == 1, what="a long poll at 40")
    assert consul.requests_to("/v1/health/service/web")[-1].param("index") == "40"
    assert len(seen.updates) == 1  # same data: the reset is invisible to subscribers
    await consul.register("web", id="web-2", port=81)
    await async_wait_for(lambda: len(seen.updates) == 2, what="a change after the reset")


async def test_a_400_is_not_retried_and_is_reported(
    consul: FakeConsul, watchers: ConsulWatchers, sleeps: RecordingSleep
) -> None:
    seen = Seen()
    bad = HealthServiceQuery("web", filter="Nonsense == 1")
    sub = watchers.subscribe(bad, seen, on_error=seen.error)
    await async_wait_for(lambda: len(seen.errors) == 1, what="the error")
    query, err = seen.errors[0]
    assert query == bad and "Unexpected response code: 400" in str(err)
    assert "expression evaluator" in str(err)
    state = sub.state()
    assert state is not None and state.status is WatchStatus.FAILED and state.error == str(err)
    assert len(consul.requests_to("/v1/health/service/web")) == 1
    assert sleeps.calls == []
    assert not seen.updates


async def test_a_500_resets_the_index_and_retries_with_backoff(
    consul: FakeConsul, watchers: ConsulWatchers, sleeps: RecordingSleep
) -> None:
    await consul.register("web", port=80)
    seen = Seen()
    sub = watchers.subscribe(WEB, seen, on_error=seen.error)
    await async_wait_for(lambda: len(seen.updates) == 1, what="the first data")
    await async_wait_for(lambda: consul.in_flight == 1, what="a long poll")
    index = consul.index
    consul.fail(500, "rpc error", path="/v1/health/service/web", times=3)
    await consul.register("web", id="web-2", port=81)  # wakes the poll; the next 3 fail
    await async_wait_for(lambda: len(seen.updates) == 2, what="recovery")
    backoff = [s for s in sleeps.calls if s >= 1]
    # 2^n s + [0, 2^n/2) s for retries 0, 1, 2.
    assert len(backoff) == 3
    assert 1 <= backoff[0] < 1.5 and 2 <= backoff[1] < 3 and 4 <= backoff[2] < 6
    polls = consul.requests_to("/v1/health/service/web")
    # The poll that woke failed; each retry goes without an index, the last succeeds.
    assert [r.param("index") for r in polls[1:5]] == [str(index), None, None, None]
    assert not seen.errors  # recovered within the retry budget
    state = sub.state()
    assert state is not None and state.retries == 0 and state.error == ""


async def test_other_errors_keep_the_index(
    consul: FakeConsul, watchers: ConsulWatchers, sleeps: RecordingSleep
) -> None:
    await consul.register("web", port=80)
    seen = Seen()
    watchers.subscribe(WEB, seen)
    await async_wait_for(lambda: len(seen.updates) == 1, what="the first data")
    await async_wait_for(lambda: consul.in_flight == 1, what="a long poll")
    index = consul.index
    consul.fail(429, "Your IP is issuing too many concurrent connections", times=1)
    await consul.touch()
    await async_wait_for(lambda: len([s for s in sleeps.calls if s >= 1]) == 1, what="a retry")
    await async_wait_for(lambda: consul.in_flight == 1, what="a long poll again")
    polls = consul.requests_to("/v1/health/service/web")
    # The woken poll (index=index) hit the 429; the retry asks with that same index.
    assert [r.param("index") for r in polls[1:3]] == [str(index), str(index)]


async def test_retries_running_out_are_reported_and_retrying_goes_on(
    consul: FakeConsul, client: ConsulClient, sleeps: RecordingSleep
) -> None:
    import random

    pacing = Pacing(sleep=sleeps, retry=retry_policy(max_retries=2, rnd=random.Random(1)))
    watchers = ConsulWatchers(client, pacing=pacing)
    try:
        consul.fail(503, "upstream down", times=6)
        seen = Seen()
        sub = watchers.subscribe(WEB, seen, on_error=seen.error)
        await async_wait_for(lambda: len(seen.errors) == 1, what="the reported failure")
        state = sub.state()
        assert state is not None and state.status is WatchStatus.FAILING
        assert "503" in state.error
        await consul.register("web", port=80)
        await async_wait_for(lambda: len(seen.updates) == 1, what="recovery after the budget")
        assert len(seen.errors) == 1  # reported once, not once per retry
        waits = [s for s in sleeps.calls if s >= 1]
        assert len(waits) == 6 and 1 <= waits[0] < 1.5 and 4 <= waits[2] < 6
        assert waits[3] >= 8 and waits[5] >= 32  # the backoff keeps growing past the budget
        state = sub.state()
        assert state is not None and state.status is WatchStatus.WATCHING
    finally:
        await watchers.aclose()


async def test_consul_restarted_on_the_same_port(
    consul: FakeConsul, watchers: ConsulWatchers, sleeps: RecordingSleep
) -> None:
    consul.index = 900
    await consul.register("web", port=80)
    seen = Seen()
    sub = watchers.subscribe(WEB, seen, on_error=seen.error)
    await async_wait_for(lambda: len(seen.updates) == 1, what="the first data")
    await async_wait_for(lambda: consul.in_flight == 1, what="a long poll")
    await consul.stop()  # the long poll is cut; reconnecting is refused
    await async_wait_for(
        lambda: len([s for s in sleeps.calls if s >= 1]) >= 2, what="two refused retries"
    )
    state = sub.state()
    assert state is not None and state.status is WatchStatus.RETRYING
    assert "ConnectError" in state.error or "Read" in state.error
    # It comes back with a fresh raft index, far below ours (dev mode loses its data).
    consul.index = 3
    consul.requests.clear()
    await consul.start()
    await consul.register("web", id="web-2", port=81)
    await async_wait_for(lambda: len(seen.updates) == 2, what="the change after the restart")
    assert seen.ids() == ["web", "web-2"]
    # The first query after the outage carries no index: it cannot hang on index 901.
    assert consul.requests_to("/v1/health/service/web")[0].param("index") is None
    assert not seen.errors


async def test_missing_index_header_still_delivers_and_polls(
    consul: FakeConsul, watchers: ConsulWatchers, sleeps: RecordingSleep, pacing: Pacing
) -> None:
    consul.omit_index = True
    await consul.register("web", port=80)
    seen = Seen()
    sub = watchers.subscribe(WEB, seen)
    await async_wait_for(lambda: len(seen.updates) == 1, what="the data")
    await async_wait_for(lambda: sleeps.calls.count(pacing.no_index_poll) >= 2, what="polling")
    state = sub.state()
    assert state is not None and not state.blocking and state.index == 0
    assert all(r.param("index") is None for r in consul.requests_to("/v1/health/service/web"))
    await consul.register("web", id="web-2", port=81)
    await async_wait_for(lambda: len(seen.updates) == 2, what="a change seen by polling")
    consul.omit_index = False
    await async_wait_for(lambda: consul.in_flight == 1, what="blocking again")
    state = sub.state()
    assert state is not None and state.blocking and state.index == consul.index


async def test_an_unparsable_index_header_is_an_error_retried(
    consul: FakeConsul, watchers: ConsulWatchers, sleeps: RecordingSleep
) -> None:
    consul.bad_index = "12abc"
    await consul.register("web", port=80)
    seen = Seen()
    sub = watchers.subscribe(WEB, seen)
    await async_wait_for(lambda: len([s for s in sleeps.calls if s >= 1]) >= 1, what="a retry")
    state = sub.state()
    assert state is not None and "Failed to parse X-Consul-Index: '12abc'" in state.error
    assert not seen.updates
    consul.bad_index = None
    await async_wait_for(lambda: len(seen.updates) == 1, what="data once the header is good")


async def test_the_minimum_gap_between_answers(
    consul: FakeConsul, client: ConsulClient, sleeps: RecordingSleep
) -> None:
    import random

    # A frozen clock: every answer looks instant, however loaded the machine is.
    pacing = Pacing(sleep=sleeps, rnd=random.Random(5), monotonic=lambda: 100.0)
    watchers = ConsulWatchers(client, pacing=pacing)
    try:
        await consul.register("web", port=80)
        seen = Seen()
        watchers.subscribe(WEB, seen)
        await async_wait_for(lambda: len(seen.updates) == 1, what="the first data")
        assert sleeps.calls == []  # no gap before the first data
        for n in range(3):
            await async_wait_for(lambda: consul.in_flight == 1, what="a long poll")
            await consul.register("web", id=f"web-{n}", port=90 + n)
            await async_wait_for(lambda n=n: len(seen.updates) == n + 2, what="the change")
        # Each answer after the first is followed by the rest of 100 ms + 0-20 ms.
        assert len(sleeps.calls) >= 3 and all(0.1 <= s <= 0.12 for s in sleeps.calls)
        assert len(set(sleeps.calls)) > 1  # the dither
    finally:
        await watchers.aclose()


async def test_two_subscribers_share_one_long_poll(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    await consul.register("web", port=80)
    a, b = Seen(), Seen()
    sub_a = watchers.subscribe(HealthServiceQuery("web"), a)
    sub_b = watchers.subscribe(HealthServiceQuery("web"), b)
    other = watchers.subscribe(HealthServiceQuery("web", datacenter="dc1"), Seen())
    assert len(watchers) == 2  # the dc makes another query
    await async_wait_for(lambda: len(a.updates) == 1 and len(b.updates) == 1, what="data")
    await async_wait_for(lambda: consul.in_flight == 2, what="the long polls")
    plain = [r for r in consul.requests_to("/v1/health/service/web") if r.param("dc") is None]
    # One first query, then long polls on the current index (more than one only if a
    # wait ran out on a slow machine).
    assert plain[0].param("index") is None
    assert {r.param("index") for r in plain[1:]} == {str(consul.index)}
    assert a.updates[0].data is b.updates[0].data  # one answer, handed to both

    await sub_a.close()
    await consul.register("web", id="web-2", port=81)
    await async_wait_for(lambda: len(b.updates) == 2, what="b's update")
    assert len(a.updates) == 1
    await sub_b.close()
    await async_wait_for(lambda: consul.in_flight == 1, what="the shared poll to end")
    assert len(watchers) == 1 and watchers.state(HealthServiceQuery("web")) is None
    await other.close()
    assert len(watchers) == 0


async def test_a_late_subscriber_gets_the_current_data_first(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    await consul.register("web", port=80)
    a, b = Seen(), Seen()
    watchers.subscribe(WEB, a)
    await async_wait_for(lambda: len(a.updates) == 1, what="a's data")
    watchers.subscribe(WEB, b)
    await async_wait_for(lambda: len(b.updates) == 1, what="b's data")
    assert b.updates[0].first and b.updates[0].data == a.updates[0].data
    first_queries = [r for r in consul.requests_to("/v1/health/service/web") if not r.blocking]
    assert len(first_queries) == 1  # b was served from the running watcher


async def test_projections_notify_only_the_subscribers_whose_view_changed(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    def matching(regexp: str) -> Any:
        return lambda data: catalog_services(data, regexp)

    await consul.register("web", port=80, tags=["b", "a"])
    web, db = Seen(), Seen()
    q = CatalogServicesQuery()
    watchers.subscribe(q, web, project=matching("^web"))
    watchers.subscribe(q, db, project=matching("^db"))
    assert len(watchers) == 1
    await async_wait_for(lambda: len(web.updates) == 1 and len(db.updates) == 1, what="data")
    assert web.updates[0].data == {"web": ["a", "b"]} and db.updates[0].data == {}
    await consul.register("db", port=5432)
    await async_wait_for(lambda: len(db.updates) == 2, what="db's update")
    assert db.updates[1].data == {"db": []}
    await consul.register("web", id="web-2", node="node-2", port=80, tags=["c"])
    await async_wait_for(lambda: len(web.updates) == 2, what="web's tags")
    assert web.updates[1].data == {"web": ["a", "b", "c"]}
    assert len(db.updates) == 2


async def test_passing_only_unless_the_filter_names_checks_status(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    await consul.register("api", id="api-1", port=1, status="passing")
    await consul.register("api", id="api-2", port=2, status="critical")
    await consul.register("api", id="api-3", port=3, status="warning", tags=["tag_a"])
    default, every, tagged = Seen(), Seen(), Seen()
    watchers.subscribe(HealthServiceQuery("api"), default)
    watchers.subscribe(HealthServiceQuery("api", filter='Checks.Status != ""'), every)
    watchers.subscribe(HealthServiceQuery("api", filter='Service.Tags contains "tag_a"'), tagged)
    await async_wait_for(
        lambda: all(len(s.updates) == 1 for s in (default, every, tagged)), what="data"
    )
    assert default.ids(0) == ["api-1"]
    statuses: Any = every.updates[0].data
    assert [(i.id, i.status) for i in statuses] == [
        ("api-1", "passing"),
        ("api-2", "critical"),
        ("api-3", "warning"),
    ]
    assert tagged.ids(0) == []  # tag_a is on a warning instance: passing=1 drops it
    sent = {r.param("filter"): r.param("passing") for r in consul.requests}
    assert sent == {None: "1", 'Checks.Status != ""': None, 'Service.Tags contains "tag_a"': "1"}


async def test_kv_key_and_prefix(consul: FakeConsul, watchers: ConsulWatchers) -> None:
    key, tree = Seen(), Seen()
    watchers.subscribe(KVQuery("path"), key)
    watchers.subscribe(KVQuery("/path", recurse=True), tree)
    await async_wait_for(lambda: bool(key.updates and tree.updates), what="the empty answers")
    assert key.updates[0].data == () and tree.updates[0].data == ()  # 404: no such key
    await consul.kv_put("path", 'say "hi"\n${x}')
    await async_wait_for(lambda: len(key.updates) == 2 and len(tree.updates) == 2, what="put")
    assert key.updates[1].data == (("path", 'say "hi"\n${x}'),)
    await consul.kv_put("path/prefixed", "")
    await async_wait_for(lambda: len(tree.updates) == 3, what="the child")
    assert tree.updates[2].data == (("path", 'say "hi"\n${x}'), ("path/prefixed", ""))
    await consul.kv_put("unrelated", "x")
    await consul.kv_delete("path")
    await async_wait_for(lambda: len(key.updates) == 3, what="the delete")
    assert key.updates[2].data == ()
    assert len(key.updates) == 3  # the child and the unrelated key never notified the key
    polls = consul.requests_to("/v1/kv/path")
    assert any("recurse" in r.params for r in polls) and any(
        "recurse" not in r.params for r in polls
    )


async def test_watchers_wait_for_the_gate(consul: FakeConsul, client: ConsulClient) -> None:
    import asyncio

    opened = asyncio.Event()

    async def gate() -> None:
        await opened.wait()

    watchers = ConsulWatchers(client, gate=gate)
    try:
        await consul.register("web", port=80)
        seen = Seen()
        sub = watchers.subscribe(WEB, seen)
        # A full round trip through the server: a watcher that ignored the gate would
        # have sent its first query by now.
        await client.get("/v1/status/leader")
        assert consul.requests_to("/v1/health/service/web") == []
        state = sub.state()
        assert state is not None and state.status is WatchStatus.STARTING
        opened.set()
        await async_wait_for(lambda: len(seen.updates) == 1, what="data once the gate opens")
    finally:
        await watchers.aclose()


async def test_the_token_is_sent(consul: FakeConsul) -> None:
    consul.token = "s3cr3t"
    await consul.register("web", port=80)
    good = make_client(consul, token="s3cr3t")
    bad = make_client(consul)
    try:
        answer = await good.get("/v1/health/service/web")
        assert answer.index == consul.index and len(answer.body) == 1
        assert consul.requests[-1].headers["x-consul-token"] == "s3cr3t"
        with pytest.raises(ConsulError, match="403"):
            await bad.get("/v1/health/service/web")
    finally:
        await good.aclose()
        await bad.aclose()


async def test_invalid_queries_give_consuls_message(
    consul: FakeConsul, watchers: ConsulWatchers, sleeps: RecordingSleep
) -> None:
    # OSS Consul rejects a namespace with a 400: reported at once, never retried.
    seen = Seen()
    ns = watchers.subscribe(KVQuery("k", namespace="team"), seen, on_error=seen.error)
    await async_wait_for(lambda: len(seen.errors) == 1, what="the namespace error")
    assert "Namespaces are a Consul Enterprise feature" in str(seen.errors[0][1])
    state = ns.state()
    assert state is not None and state.status is WatchStatus.FAILED
    # An unknown datacenter is a 500: retried (the datacenter may join), reset each time.
    dc = watchers.subscribe(KVQuery("k", datacenter="mars"), seen, on_error=seen.error)
    await async_wait_for(lambda: len([s for s in sleeps.calls if s >= 1]) >= 2, what="retries")
    state = dc.state()
    assert state is not None and state.status is WatchStatus.RETRYING
    assert "No path to datacenter" in state.error
    assert all(r.param("index") is None for r in consul.requests if r.param("dc") == "mars")


async def test_a_new_subscriber_asks_again_after_a_rejection(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    consul.fail(400, "Invalid query", path="/v1/health/service/web")
    first = Seen()
    watchers.subscribe(WEB, first, on_error=first.error)
    await async_wait_for(lambda: len(first.errors) == 1, what="the rejection")
    await consul.register("web", port=80)
    second = Seen()
    sub = watchers.subscribe(WEB, second)
    await async_wait_for(lambda: len(second.updates) == 1, what="a fresh answer")
    assert len(watchers) == 1 and len(first.updates) == 1  # both share the new watcher
    state = sub.state()
    assert state is not None and state.status is WatchStatus.WATCHING


async def test_losing_the_leader_for_a_while(
    consul: FakeConsul, watchers: ConsulWatchers, sleeps: RecordingSleep
) -> None:
    await consul.register("web", port=80)
    seen = Seen()
    sub = watchers.subscribe(WEB, seen)
    await async_wait_for(lambda: len(seen.updates) == 1, what="the first data")
    await async_wait_for(lambda: consul.in_flight == 1, what="a long poll")
    consul.leader = ""
    await consul.touch()  # the poll wakes into "No cluster leader" (a 500)
    await async_wait_for(lambda: len([s for s in sleeps.calls if s >= 1]) >= 2, what="retries")
    state = sub.state()
    assert state is not None and "No cluster leader" in state.error
    consul.leader = "127.0.0.1:8300"
    await consul.register("web", id="web-2", port=81)
    await async_wait_for(lambda: len(seen.updates) == 2, what="the change after the election")
    last_change = sub.state().last_change  # type: ignore[union-attr]
    await consul.touch()
    target = consul.index
    await async_wait_for(lambda: sub.state().index == target, what="the unrelated bump")  # type: ignore[union-attr]
    assert sub.state().last_change == last_change  # type: ignore[union-attr]


async def test_a_failing_subscriber_does_not_stop_the_others(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    def broken(update: Update) -> None:
        raise RuntimeError("subscriber bug")

    await consul.register("web", port=80)
    seen = Seen()
    watchers.subscribe(WEB, broken)
    watchers.subscribe(WEB, seen)
    await async_wait_for(lambda: len(seen.updates) == 1, what="the first data")
    await consul.register("web", id="web-2", port=81)
    await async_wait_for(lambda: len(seen.updates) == 2, what="the next change")


async def test_answers_that_are_not_consuls_shape_are_retried(
    consul: FakeConsul, watchers: ConsulWatchers, sleeps: RecordingSleep
) -> None:
    await consul.register("web", port=80)
    consul.fail(200, "<html>proxy error</html>", times=1)
    consul.fail(200, '{"not": "a list"}', times=1)
    seen = Seen()
    watchers.subscribe(WEB, seen)
    await async_wait_for(lambda: len(seen.updates) == 1, what="data after two bad answers")
    assert len([s for s in sleeps.calls if s >= 1]) == 2
    assert len(consul.requests_to("/v1/health/service/web")) >= 3


async def test_per_query_indexes_wake_only_the_query_that_changed(pacing: Pacing) -> None:
    async with FakeConsul(shared_index=False) as consul:
        other = make_client(consul)
        watchers = ConsulWatchers(other, pacing=pacing)
        try:
            await consul.register("web", port=80)
            await consul.register("db", port=5432)
            web, db = Seen(), Seen()
            watchers.subscribe(WEB, web)
            watchers.subscribe(HealthServiceQuery("db"), db)
            await async_wait_for(lambda: consul.in_flight == 2, what="two long polls")
            web_polls = len(consul.requests_to("/v1/health/service/web"))
            for n in range(3):
                await consul.register("db", id=f"db-{n}", port=n)
                await async_wait_for(lambda n=n: len(db.updates) == n + 2, what="db's change")
            await consul.kv_put("unrelated", "x")
            await async_wait_for(lambda: consul.in_flight == 2, what="both polling again")
            # web's long poll was never woken: no new request, the same index.
            assert len(consul.requests_to("/v1/health/service/web")) == web_polls
            assert len(web.updates) == 1
            web_state, db_state = watchers.state(WEB), watchers.state(HealthServiceQuery("db"))
            assert web_state is not None and db_state is not None
            assert web_state.index < db_state.index == consul.index - 1
        finally:
            await watchers.aclose()
            await other.aclose()
