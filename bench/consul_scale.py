"""Many distinct watched services against the in-test Consul server (a child process, so
client and server share neither an event loop nor a GIL): connections held, and the time
from a change in the server until the watcher's subscriber sees it.

Partial: the watchers alone (ConsulClient + ConsulWatchers, one HealthServiceQuery per
service), not the daemon. The baseline, in the same run, is 10 watched services.
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import subprocess
import sys
import time

from bench.report import Section, Target, table
from bench.runner import REPO, _child_env, percentile
from bench.workspace import Workspace
from reconciler.settings.model import Consul
from reconciler.triggers.consul import ConsulClient, ConsulWatchers, HealthServiceQuery
from reconciler.triggers.consul.config import client_config
from reconciler.triggers.consul.watchers import Update

SERVER = """
import asyncio, sys, time
sys.path.insert(0, sys.argv[2])
from consulfake import FakeConsul

async def main() -> None:
    fake = FakeConsul(shared_index=False)
    await fake.start()
    for i in range(int(sys.argv[1])):
        await fake.register(f"svc{i:04d}", id=f"svc{i:04d}-1", port=80)
    print(fake.port, flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().split():
        if line[0] == "change":
            t0 = time.time()
            await fake.register(line[1], id=line[1] + "-1", port=int(line[2]))
            print(f"{t0}", flush=True)
        elif line[0] == "conns":
            print(len(fake._connections), flush=True)

asyncio.run(main())
"""


def _tcp_connections(pid: int, port: int) -> int:
    """Established TCP connections of `pid` to `port` on loopback."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            remote, state, inode = parts[2], parts[3], parts[9]
            if state == "01" and inode in inodes and int(remote.split(":")[1], 16) == port:
                count += 1
    return count


def _raise_open_files() -> None:
    """2,000 connections need more than the usual 1,024 descriptors (the child inherits)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _measure(n: int, changes: int) -> dict[str, float]:
    _raise_open_files()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(n), str(REPO / "tests")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=_child_env(),
        text=True,
    )
    assert server.stdin is not None and server.stdout is not None
    port = int(server.stdout.readline())
    client = ConsulClient(client_config(Consul(address=f"127.0.0.1:{port}"), wait=300))
    watchers = ConsulWatchers(client)
    seen: dict[str, float] = {}
    first: set[str] = set()

    def changed(update: Update) -> None:
        name = update.query.name  # type: ignore[attr-defined]
        if update.first:
            first.add(name)
        else:
            seen[name] = time.time()

    names = [f"svc{i:04d}" for i in range(n)]
    try:
        for name in names:
            watchers.subscribe(HealthServiceQuery(name=name), changed)
        deadline = time.monotonic() + 120
        while len(first) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(first)} of {n} watchers answered")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        held = _tcp_connections(os.getpid(), port)
        rnd = random.Random(7)
        latencies: list[float] = []
        for k in range(changes):
            name = rnd.choice(names)
            seen.pop(name, None)
            server.stdin.write(f"change {name} {1000 + k}\n")
            server.stdin.flush()
            t0 = float(await asyncio.to_thread(server.stdout.readline))
            deadline = time.monotonic() + 30
            while name not in seen:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the change of {name} was not seen")
                await asyncio.sleep(0.001)
            latencies.append(seen[name] - t0)
            await asyncio.sleep(0.15)  # past the watcher's minimum gap between queries
        return {
            "held": held,
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
        }
    finally:
        await watchers.aclose()
        await client.aclose()
        server.stdin.close()
        server.terminate()
        server.wait(30)


def bench_consul_scale(ws: Workspace) -> Section:
    n, changes = (200, 20) if ws.settings.quick else (2000, 100)
    base = asyncio.run(_measure(10, changes))
    big = asyncio.run(_measure(n, changes))
    rows = [
        [
            f"{label}: {count} services",
            f"{r['held']:.0f}",
            f"{r['p50'] * 1000:.1f}",
            f"{r['p99'] * 1000:.1f}",
        ]
        for label, count, r in (("baseline", 10, base), ("watched", n, big))
    ]
    lines = [
        "Partial (the watchers alone, not the daemon): one `HealthServiceQuery` watcher per "
        "service against the in-test Consul server in a child process (per-service indexes, "
        f"as Consul has them); {changes} changes, each a re-registration of a random service. "
        "Latency is from just before the server applies the change until the subscriber's "
        "callback. Connections: established TCP connections from the client to the server.",
        "",
        *table(["setup", "connections held", "change seen p50 ms", "p99 ms"], rows),
        "",
        "No connection cap is implemented: each long poll holds its own connection.",
    ]
    targets = [
        Target(
            f"connections held with {n} watched services",
            "<= 64",
            f"{big['held']:.0f}",
            None if ws.settings.quick else big["held"] <= 64,
        ),
        Target(
            f"change seen with {n} watched services, p99",
            "<= 2 s",
            f"{big['p99'] * 1000:.0f} ms",
            None if ws.settings.quick else big["p99"] <= 2.0,
        ),
    ]
    return Section("consul-scale", "Consul watchers at scale (partial)", lines, targets)
