"""Consul conditions through the daemon: `reconciler start` as a child process with the
embedded catalog, or with the in-test Consul server in another child process, and the real
Terraform driver; many tasks watching a set of services.

Measured from outside: a service file is rewritten, and the affected tasks' run events
say when each run started (`start_time`: the run was taken from the task's queue, before
it waits for a pool worker). Buffer periods are off, so the figure is the trigger path
itself (file watch + debounce, the in-process blocking query, the trigger source, the run
queue); with a buffer period, add its `min`. The baseline, in the same run, is the same
change with one task watching one service. Idle CPU is the daemon's (and its workers')
CPU time over a quiet period after every task has applied: no busy polling means ~0.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.consul_scale import SERVER, _raise_open_files
from bench.report import Section, Target, table
from bench.runner import REPO, _child_env, percentile
from bench.terraform_daemon import _children, _free_port, _rss_mb
from bench.workspace import Workspace

MODULE = REPO / "examples" / "modules" / "print-services"
WORKERS = 2
CLK = os.sysconf("SC_CLK_TCK")


def _service(name: str, port: int) -> str:
    return (
        f'service {{\n  name    = "{name}"\n  id      = "{name}-1"\n'
        f'  address = "10.0.0.1"\n  port    = {port}\n}}\n'
    )


def _task(name: str, service: str) -> str:
    return (
        f'task {{\n  name = "{name}"\n  module = "../modules/print-services"\n'
        f'  condition "services" {{\n    names = ["{service}"]\n  }}\n}}\n'
    )


def _cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except OSError:
        return 0.0


def _wall(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class CatalogDaemon:
    def __init__(self, root: Path, tasks: int, services: int, *, consul: bool = False) -> None:
        """`consul`: the in-test Consul server (a child process) instead of the catalog."""
        self.root = root
        shutil.rmtree(root, ignore_errors=True)
        (root / "tasks").mkdir(parents=True)
        (root / "catalog").mkdir()
        shutil.copytree(MODULE, root / "modules" / "print-services")
        self.services = [f"svc{i:04d}" for i in range(services)]
        self.server: subprocess.Popen[str] | None = None
        if consul:
            _raise_open_files()
            self.server = subprocess.Popen(
                [sys.executable, "-c", SERVER, str(services), str(REPO / "tests")],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=_child_env(),
                text=True,
            )
            assert self.server.stdout is not None
            backend = f'consul {{\n  address = "127.0.0.1:{int(self.server.stdout.readline())}"\n'
            backend += "  service_registration {\n    enabled = false\n  }\n}\n"
        else:
            for name in self.services:
                (root / "catalog" / f"{name}.hcl").write_text(_service(name, 80))
            backend = 'catalog "directory" {\n  path = "catalog"\n}\n'
        self.watchers: dict[str, list[str]] = {s: [] for s in self.services}
        for i in range(tasks):
            name, service = f"t{i:04d}", self.services[i % services]
            self.watchers[service].append(name)
            (root / "tasks" / f"{name}.hcl").write_text(_task(name, service))
        self.tasks = tasks
        self.port = _free_port()
        (root / "config.hcl").write_text(
            f'log_level = "WARN"\nport = {self.port}\nworking_dir = "work"\n'
            f'driver "terraform" {{\n  workers = {WORKERS}\n}}\n'
            "buffer_period {\n  enabled = false\n}\n"
            f"{backend}"
            'source "directory" {\n  path = "tasks"\n}\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "start", "-config-file=config.hcl"],
            cwd=self.root,
            env=_child_env(),
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "daemon.log").open("wb"),
        )
        deadline = time.monotonic() + 900
        while True:
            try:
                counts = self.get("/v1/status")["task_summary"]["status"]
                if counts.get("successful", 0) >= self.tasks:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the daemon did not apply every task:\n" + self.log())
            time.sleep(0.2)

    def log(self) -> str:
        return (self.root / "daemon.log").read_text()[-3000:]

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=60) as r:
            return json.loads(r.read())

    def started_after(self, task: str, t0: float) -> float | None:
        events = self.get(f"/v1/status/tasks/{task}?include=events")[task]["events"]
        starts = [_wall(e["start_time"]) for e in events if _wall(e["start_time"]) >= t0]
        return min(starts) if starts else None

    def change(self, service: str, port: int) -> list[float]:
        """Rewrite one service file (or re-register the service in Consul with a new port);
        seconds until each watching task's run started."""
        if self.server is not None:
            assert self.server.stdin is not None and self.server.stdout is not None
            self.server.stdin.write(f"port {service} {port}\n")
            self.server.stdin.flush()
            t0 = float(self.server.stdout.readline())
        else:
            path = self.root / "catalog" / f"{service}.hcl"
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(_service(service, port))
            t0 = time.time()
            os.replace(tmp, path)
        waiting = list(self.watchers[service])
        out: list[float] = []
        deadline = time.monotonic() + 60
        while waiting:
            for task in list(waiting):
                started = self.started_after(task, t0)
                if started is not None:
                    out.append(started - t0)
                    waiting.remove(task)
            if time.monotonic() > deadline:
                raise RuntimeError(f"no run of {waiting} after a change of {service}")
            time.sleep(0.005)
        # Let the runs end before the next change (they would queue behind each other).
        while any(self.get(f"/v1/status/tasks/{t}")[t]["active"] for t in self.watchers[service]):
            time.sleep(0.01)
        return out

    def cpu(self) -> float:
        assert self.proc is not None
        return _cpu_s(self.proc.pid) + sum(_cpu_s(p) for p in _children(self.proc.pid))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.server is not None and self.server.poll() is None:
            assert self.server.stdin is not None
            self.server.stdin.close()
            self.server.terminate()
            self.server.wait(30)


def measure(
    root: Path, tasks: int, services: int, changes: int, idle_s: float, *, consul: bool = False
) -> dict[str, Any]:
    daemon = CatalogDaemon(root, tasks, services, consul=consul)
    t0 = time.perf_counter()
    try:
        daemon.start()
    except BaseException:
        daemon.stop()
        raise
    first_start = time.perf_counter() - t0
    try:
        cpu0, w0 = daemon.cpu(), time.perf_counter()
        time.sleep(idle_s)
        idle_cpu = (daemon.cpu() - cpu0) / (time.perf_counter() - w0)
        rnd = random.Random(7)
        latencies: list[float] = []
        for n in range(changes):
            latencies += daemon.change(rnd.choice(daemon.services), 1000 + n)
        assert daemon.proc is not None
        return {
            "first_start": first_start,
            "idle_cpu": idle_cpu,
            "latencies": latencies,
            "rss": _rss_mb(daemon.proc.pid),
        }
    finally:
        daemon.stop()


def bench_consul_daemon(ws: Workspace) -> Section:
    quick = ws.settings.quick
    tasks, services, changes = (100, 20, 5) if quick else (1000, 200, 20)
    idle = 10.0 if quick else 60.0
    base = measure(ws.root / "consul-base", 1, 1, changes, 2.0)
    big = measure(ws.root / "consul-big", tasks, services, changes, idle)
    agent_base = measure(ws.root / "consul-agent-base", 1, 1, changes, 2.0, consul=True)
    agent = measure(ws.root / "consul-agent", tasks, services, changes, idle, consul=True)

    def row(what: str, r: dict[str, Any]) -> list[str]:
        lat = sorted(r["latencies"])
        p50, p99 = percentile(lat, 50) * 1000, percentile(lat, 99) * 1000
        return [
            what,
            str(len(lat)),
            f"{p50:.0f}",
            f"{p99:.0f}",
            f"{r['idle_cpu'] * 100:.2f}%",
            f"{r['first_start']:.1f}",
            f"{r['rss']:.0f}",
        ]

    big_p99 = percentile(sorted(big["latencies"]), 99)
    base_p99 = percentile(sorted(base["latencies"]), 99)
    agent_p99 = percentile(sorted(agent["latencies"]), 99)
    agent_base_p99 = percentile(sorted(agent_base["latencies"]), 99)
    lines = [
        "End to end through `reconciler start` (child process), the embedded catalog and the "
        f"real Terraform ({WORKERS} pool workers): {tasks} tasks, each watching one of "
        f"{services} services; {changes} random service changes. Change-to-run-start is from "
        "the `os.replace` of the service file to the affected tasks' run events' `start_time`; "
        "buffer periods off (with one, add its `min`). Idle CPU: the daemon and its workers "
        f"over {idle:.0f} s after every task applied.",
        "",
        *table(
            [
                "setup",
                "runs",
                "change-to-run-start p50 ms",
                "p99 ms",
                "idle CPU",
                "first start s",
                "daemon RSS MB",
            ],
            [
                row("catalog, baseline: 1 task, 1 service", base),
                row(f"catalog, {tasks} tasks, {services} services", big),
                row("in-test Consul, baseline: 1 task, 1 service", agent_base),
                row(f"in-test Consul, {tasks} tasks, {services} services", agent),
            ],
        ),
        "",
        f"Ratio of p99 to the baseline's: {big_p99 / base_p99:.1f}x (catalog), "
        f"{agent_p99 / agent_base_p99:.1f}x (in-test Consul).",
        "",
        "With the in-test Consul server (a child process speaking Consul's HTTP API, "
        "per-query indexes), the change is a re-registration of the service with a new port, "
        "timed from just before the server applies it. 200 watched services are past the "
        "connection budget (56 long polls under the default cap of 64), so the daemon "
        "watches them through the cluster-wide indexes; such a re-registration changes no "
        "check, so every watched service is read again (the slowest kind of change, see the "
        "next section).",
    ]
    targets = [
        Target(
            f"idle CPU of the daemon with every task watching (no busy polling), {label}",
            "~0 (< 1%)",
            f"{r['idle_cpu'] * 100:.2f}%",
            None if quick else r["idle_cpu"] < 0.01,
        )
        for label, r in (("catalog", big), ("in-test Consul", agent))
    ]
    return Section("consul", "Consul conditions through the daemon", lines, targets)
