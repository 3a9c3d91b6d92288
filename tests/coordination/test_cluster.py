"""Leader election on a real etcd: one leader among three members, CTS's redirect
messages, the cluster status, handover when the leader leaves, and fencing when a member
loses etcd (it stops being leader before its lease can expire, and rejoins)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import http.server
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme
from etcdkit import EtcdServer, etcd_server
from helpers import async_wait_for

from reconciler.coordination.cluster import NOT_CONNECTED, Cluster
from reconciler.coordination.etcd import Etcd, EtcdError
from reconciler.settings.model import SECOND, EtcdTLSSettings, HighAvailabilitySettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def etcd(tmp_path: Path) -> Iterator[EtcdServer]:
    with etcd_server(tmp_path / "etcd") as server:
        yield server


def settings(server: EtcdServer, address: str, ttl: int = 2) -> HighAvailabilitySettings:
    return HighAvailabilitySettings(
        cluster_name="prod",
        endpoints=(server.url,),
        session_ttl=ttl * SECOND,
        address=address,
    )


@contextlib.asynccontextmanager
async def members(
    server: EtcdServer, *ids: str, addresses: dict[str, str] | None = None
) -> AsyncIterator[dict[str, Cluster]]:
    addresses = addresses if addresses is not None else {i: f"http://{i}:8558" for i in ids}
    clusters = {i: Cluster(settings(server, addresses.get(i, "")), i) for i in ids}
    tasks = {i: asyncio.create_task(c.run()) for i, c in clusters.items()}
    try:
        yield clusters
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for c in clusters.values():
            await c.close()


def leaders(clusters: dict[str, Cluster]) -> list[str]:
    return [i for i, c in clusters.items() if c.is_leader()]


async def test_one_leader_and_followers_that_name_it(etcd: EtcdServer) -> None:
    async with members(etcd, "cts-01", "cts-02", "cts-03") as clusters:
        await async_wait_for(
            lambda: (
                len(leaders(clusters)) == 1
                and all(c.leader is not None and len(c.members) == 3 for c in clusters.values())
            ),
            timeout=20,
        )
        [leader] = leaders(clusters)
        assert clusters[leader].gate() is None
        assert clusters[leader].term > 0
        for member_id, c in clusters.items():
            if member_id != leader:
                assert c.gate() == f"redirect requests to leader '{leader}' at http://{leader}:8558"
            status = c.status()
            assert status["cluster_name"] == "prod"
            assert status["members"] == [
                {"id": i, "address": f"http://{i}:8558", "healthy": True, "leader": i == leader}
                for i in sorted(clusters)
            ]


async def test_a_leader_without_an_address_and_a_leader_unknown(etcd: EtcdServer) -> None:
    async with members(etcd, "a", addresses={"a": ""}) as first:
        await async_wait_for(lambda: first["a"].is_leader(), timeout=20)
        async with members(etcd, "b") as second:
            await async_wait_for(lambda: second["b"].leader is not None, timeout=20)
            assert second["b"].gate() == "redirect requests to leader 'a'"
    lonely = Cluster(settings(etcd, "http://c:8558"), "c")
    assert lonely.gate() == "redirect requests to leader"  # not connected: no leader known
    await lonely.close()


async def test_leaving_hands_over_at_once_and_the_term_grows(etcd: EtcdServer) -> None:
    # A long session: only the revoked lease can explain a quick handover.
    long = {i: Cluster(settings(etcd, "", ttl=60), i) for i in ("x", "y")}
    runs = {i: asyncio.create_task(c.run()) for i, c in long.items()}
    try:
        await async_wait_for(lambda: len(leaders(long)) == 1, timeout=20)
        [first] = leaders(long)
        term = long[first].term
        runs.pop(first).cancel()
        await long[first].close()
        other = next(i for i in long if i != first)
        await async_wait_for(lambda: long[other].is_leader(), timeout=30)
        assert long[other].term > term
        assert not long[first].is_leader()
    finally:
        for task in runs.values():
            task.cancel()
        await asyncio.gather(*runs.values(), return_exceptions=True)
        await long["x" if "x" in runs else "y"].close()


async def test_a_member_cut_off_from_etcd_fences_itself_and_rejoins(etcd: EtcdServer) -> None:
    async with members(etcd, "solo") as clusters:
        solo = clusters["solo"]
        await async_wait_for(solo.is_leader, timeout=20)
        etcd.stop()
        # No renewal can succeed now: the gate closes (at the last renewal's send time
        # plus the lease's remaining seconds, before etcd can expire the lease).
        await async_wait_for(lambda: solo.gate() is not None, timeout=10)
        await async_wait_for(lambda: solo.problem is not None, timeout=10)
        assert solo.gate() == "redirect requests to leader"
        etcd.start()
        await async_wait_for(solo.is_leader, timeout=30)
        assert solo.problem is None


class _NotEtcd(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = b"<html>a proxy's error page</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


async def test_the_client_tries_the_next_endpoint(etcd: EtcdServer) -> None:
    dead = f"http://127.0.0.1:{EtcdServer(Path('/nonexistent')).client_port}"
    impostor = http.server.HTTPServer(("127.0.0.1", 0), _NotEtcd)
    threading.Thread(target=impostor.serve_forever, daemon=True).start()
    other = f"http://127.0.0.1:{impostor.server_address[1]}"
    alone = Etcd([other], timeout=2)
    try:
        with pytest.raises(EtcdError, match="not an etcd answer"):
            await alone.grant(5)
    finally:
        await alone.aclose()
    client = Etcd([dead, other, etcd.url], timeout=2)
    try:
        lease = await client.grant(5)
        revision, existing = await client.create("k/leader", b"me", lease=lease)
        assert revision > 0 and existing is None
        again, existing = await client.create("k/leader", b"you", lease=lease)
        assert again == 0 and existing is not None and existing.value == b"me"
        assert [kv.key for kv in await client.get_prefix("k/")] == ["k/leader"]
        await client.revoke(lease)
        assert await client.get("k/leader") is None
    finally:
        await client.aclose()
        impostor.shutdown()
        impostor.server_close()


async def test_etcd_over_tls_with_a_client_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    server, client = ca.issue_cert("127.0.0.1", "localhost"), ca.issue_cert("cts-01")
    files = {
        name: tmp_path / f"{name}.pem"
        for name in ("ca", "server", "server-key", "client", "client-key")
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["server"]))
    server.private_key_pem.write_to_path(str(files["server-key"]))
    client.cert_chain_pems[0].write_to_path(str(files["client"]))
    client.private_key_pem.write_to_path(str(files["client-key"]))
    tls = (files["server"], files["server-key"], files["ca"])
    with etcd_server(tmp_path / "etcd", tls) as etcd:
        assert etcd.url.startswith("https://")
        good = dataclasses.replace(
            settings(etcd, ""),
            tls=EtcdTLSSettings(files["ca"], files["client"], files["client-key"]),
        )
        async with running(Cluster(good, "cts-01")) as member:
            await async_wait_for(member.is_leader, timeout=20)
        # Without the client certificate etcd refuses the session: never leader.
        bare = dataclasses.replace(good, tls=EtcdTLSSettings(ca_cert=files["ca"]))
        async with running(Cluster(bare, "cts-02")) as refused:
            await async_wait_for(lambda: refused.problem not in (None, NOT_CONNECTED), timeout=20)
            assert not refused.is_leader()
            assert "no etcd endpoint answered" in str(refused.problem), refused.problem


@contextlib.asynccontextmanager
async def running(member: Cluster) -> AsyncIterator[Cluster]:
    task = asyncio.create_task(member.run())
    try:
        yield member
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await member.close()


async def test_claims_lock_a_task_and_a_cut_off_run_is_stopped(etcd: EtcdServer) -> None:
    sharded = {
        i: Cluster(dataclasses.replace(settings(etcd, ""), shard_runs=True), i) for i in "ab"
    }
    runs = [asyncio.create_task(c.run()) for c in sharded.values()]
    try:
        a, b = sharded["a"], sharded["b"]
        await async_wait_for(lambda: a.owner_of("t") is not None and len(b.members) == 2)
        mine = a if a.owns("t") else b
        other = b if mine is a else a
        async with other.claim("t", True) as refused:
            assert refused.refusal == f"task t runs on member {mine.id}"
        async with mine.claim("t", True) as claim:
            assert claim.refusal is None and claim.applied is None
            mine.publish_applied("t", "digest-1")
            # An API run on the other member (ownership aside) finds the lock taken.
            async with other.claim("t", False) as busy:
                assert busy.refusal == f"task t is running on member {mine.id}"
        async with other.claim("t", False) as free:
            assert free.refusal is None
            assert free.applied == "digest-1"  # written before the lock was released

        async def long_run() -> None:
            async with mine.claim("t", True) as held:
                assert held.refusal is None
                etcd.stop()  # cut off: no renewal can succeed any more
                await asyncio.Event().wait()  # an apply that outlasts any session

        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.create_task(long_run()), 60)
    finally:
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        for c in sharded.values():
            await c.close()


async def test_leadership_never_outlasts_the_last_renewal_plus_the_ttl(etcd: EtcdServer) -> None:
    """Checked on an injected clock: one TTL after the latest renewal was sent, the gate
    is closed even though this member's loop has noticed nothing yet."""
    skew = [0.0]
    sent: list[float] = []

    def clock() -> float:
        now = time.monotonic() + skew[0]
        sent.append(now)
        return now

    member = Cluster(settings(etcd, "", ttl=30), "solo", clock=clock)
    async with running(member):
        await async_wait_for(member.is_leader, timeout=20)
        newest = max(sent)  # no renewal is sent before a third of the TTL
        skew[0] = newest + member.ttl - time.monotonic()
        assert not member.is_leader()
        assert member.gate() is not None
