"""Many distinct watched services against the in-test Consul server (a child process, so
client and server share neither an event loop nor a GIL): connections held, and the time
from a change in the server until the watcher's subscriber sees it, by kind of change.

Partial: the watchers alone (ConsulClient + ConsulWatchers with the default connection cap
of 64, one HealthServiceQuery per service), not the daemon. The baseline, in the same run,
is 10 watched services (one long poll each, under the cap).
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
from reconciler.consul import ConsulClient, ConsulWatchers, HealthServiceQuery
from reconciler.consul.connection import client_config
from reconciler.consul.watchers import Update
from reconciler.settings.model import ConsulSettings

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
    added = 0
    while line := (await reader.readline()).decode().split():
        kind, name = line[0], line[1]
        t0 = time.time()
        if kind == "port":  # a re-registration, same check: the catalog moves, no check
            await fake.register(name, id=name + "-1", port=int(line[2]))
        elif kind == "add":  # a new instance with its check
            added += 1
            await fake.register(name, id=f"{name}-x{added}", node="node-2", port=80)
        elif kind == "status":  # the instance's check turns critical, or passing again
            inst = fake.instances[("node-1", name + "-1")]
            await fake.set_status(inst.id, "critical" if inst.status == "passing" else "passing")
        print(f"{t0}", flush=True)

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


KINDS = {
    "add": "a new instance (with its check)",
    "status": "a check turns critical / passing",
    "port": "a re-registration with a new port (no check changes)",
}


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
    config = client_config(ConsulSettings(address=f"127.0.0.1:{port}"), wait=300)
    client = ConsulClient(config)
    watchers = ConsulWatchers(client, max_connections=config.max_connections)
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
        latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for k in range(changes):
            name = rnd.choice(names)
            kind = list(KINDS)[k % len(KINDS)]
            seen.pop(name, None)
            server.stdin.write(f"{kind} {name} {1000 + k}\n")
            server.stdin.flush()
            t0 = float(await asyncio.to_thread(server.stdout.readline))
            deadline = time.monotonic() + 30
            while name not in seen:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the change of {name} was not seen")
                await asyncio.sleep(0.001)
            latencies[kind].append(seen[name] - t0)
            await asyncio.sleep(0.15)  # past the watcher's minimum gap between queries
        held = max(held, _tcp_connections(os.getpid(), port))
        everything = [x for values in latencies.values() for x in values]
        out = {
            "held": held,
            "indexed": float(watchers.indexed),
            "p50": percentile(everything, 50),
            "p99": percentile(everything, 99),
        }
        for kind, values in latencies.items():
            out[f"{kind} p50"] = percentile(values, 50)
            out[f"{kind} p99"] = percentile(values, 99)
        return out
    finally:
        await watchers.aclose()
        await client.aclose()
        server.stdin.close()
        server.terminate()
        server.wait(30)


def bench_consul_scale(ws: Workspace) -> Section:
    n, changes = (200, 30) if ws.settings.quick else (2000, 120)
    base = asyncio.run(_measure(10, changes))
    big = asyncio.run(_measure(n, changes))
    rows = []
    for label, count, r in (("baseline", 10, base), ("watched", n, big)):
        mode = "cluster-wide indexes" if r["indexed"] else "a long poll each"
        rows.append(
            [
                f"{label}: {count} services ({mode})",
                f"{r['held']:.0f}",
                f"{r['p50'] * 1000:.1f}",
                f"{r['p99'] * 1000:.1f}",
                *(
                    f"{r[kind + ' p50'] * 1000:.0f} / {r[kind + ' p99'] * 1000:.0f}"
                    for kind in KINDS
                ),
            ]
        )
    lines = [
        "Partial (the watchers alone, not the daemon): one `HealthServiceQuery` watcher per "
        "service, `transport { max_conns_per_host }` at its default of 64, against the in-test "
        "Consul server in a child process (per-query indexes, as Consul has them: "
        "`/v1/health/state/any` moves with the checks, `/v1/catalog/services` with the "
        f"services). {changes} changes to random services, the three kinds in turn. Latency is "
        "from just before the server applies the change until the subscriber's callback. "
        "Connections: the most established TCP connections from the client to the server, "
        "counted after the start and after the changes.",
        "",
        *table(
            [
                "setup",
                "connections held",
                "change seen p50 ms",
                "p99 ms",
                *(f"{label}: p50 / p99 ms" for label in KINDS.values()),
            ],
            rows,
        ),
        "",
        "Past the budget (56 long polls of 64 connections) every service is watched through "
        "the two cluster-wide indexes and read once when they name it. A re-registration "
        "that changes no check cannot be pinned to a service, so every watched service is "
        "read again (the slowest column).",
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
