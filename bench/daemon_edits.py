"""Edit-to-live through the daemon: `reconciler start` as a child process with 10,000 task
files, an edit renamed into place, and an HTTP read as the probe.

Two daemons: one whose tasks are disabled (idle: nothing runs) and one whose tasks start
their first runs with the real Terraform at start (the start-up's runs are going while the
edits land). Each edit changes one task's `description` (a temp file renamed over the
task file, as editors and the API write); the probe reads `GET /v1/tasks/{name}` on a
kept-alive connection until it shows the new description. The same-run baseline is that
GET alone.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import time
from typing import Any

from bench.report import Section, Target, table
from bench.runner import percentile
from bench.terraform_daemon import Daemon
from bench.workspace import Workspace

EDIT_GAP_S = 0.05


def _task(name: str, *, enabled: bool, description: str = "") -> str:
    return (
        f'task {{\n  name = "{name}"\n  description = "{description}"\n'
        f"  enabled = {'true' if enabled else 'false'}\n"
        '  module = "../modules/print-services"\n'
        '  condition "services" {\n    names = ["web"]\n  }\n}\n'
    )


class Probe:
    """GET on one kept-alive connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str) -> Any:
        self.conn.request("GET", path)
        resp = self.conn.getresponse()
        return json.loads(resp.read())

    def close(self) -> None:
        self.conn.close()


def _edits(daemon: Daemon, tasks: int, edits: int, *, enabled: bool) -> dict[str, Any]:
    probe = Probe(daemon.port)
    rng = random.Random(7)
    try:
        baseline: list[float] = []
        for _ in range(200):
            t0 = time.perf_counter()
            probe.get("/v1/tasks/t0000")
            baseline.append(time.perf_counter() - t0)
        samples: list[float] = []
        polls = 0
        for n in range(edits):
            name = f"t{rng.randrange(tasks):05d}"
            target = daemon.root / "tasks" / f"{name}.hcl"
            tmp = target.with_name(f".{target.name}.tmp")
            wanted = f"edit {n}"
            tmp.write_text(_task(name, enabled=enabled, description=wanted))
            t0 = time.perf_counter()
            os.rename(tmp, target)
            deadline = time.monotonic() + 60
            while probe.get(f"/v1/tasks/{name}")["task"]["description"] != wanted:
                polls += 1
                if time.monotonic() > deadline:
                    raise RuntimeError(f"edit {n} of {name} not live after 60 s")
            samples.append(time.perf_counter() - t0)
            time.sleep(EDIT_GAP_S)
        status = probe.get("/v1/status")
        return {
            "baseline": baseline,
            "samples": samples,
            "polls": polls,
            "runs": status.get("runs", {}),
        }
    finally:
        probe.close()


def _run(ws: Workspace, tasks: int, edits: int, *, enabled: bool) -> dict[str, Any]:
    root = ws.root / ("edits-running" if enabled else "edits-idle")
    daemon = Daemon(root, pool=True)
    for i in range(tasks):
        name = f"t{i:05d}"
        (root / "tasks" / f"{name}.hcl").write_text(_task(name, enabled=enabled))
    try:
        api_s = daemon.start()
        deadline = time.monotonic() + 600
        while len(daemon.get("/v1/tasks")["tasks"]) < tasks:
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not list every task within 600 s")
            time.sleep(0.2)
        result = _edits(daemon, tasks, edits, enabled=enabled)
        result["api_s"] = api_s
        return result
    finally:
        daemon.stop()


def _row(label: str, samples: list[float]) -> list[str]:
    ms = sorted(s * 1000 for s in samples)
    return [label, *(f"{percentile(ms, q):.2f}" for q in (50, 90, 99)), f"{ms[-1]:.2f}"]


def bench_daemon_edits(ws: Workspace) -> Section:
    tasks = 1_000 if ws.settings.quick else 10_000
    edits = 30 if ws.settings.quick else 100
    idle = _run(ws, tasks, edits, enabled=False)
    running = _run(ws, tasks, edits, enabled=True)
    rows = [
        _row("GET /v1/tasks/{name} alone (baseline)", idle["baseline"]),
        _row("rename -> GET shows it, idle", idle["samples"]),
        _row("GET alone, start-up runs going (baseline)", running["baseline"]),
        _row("rename -> GET shows it, start-up runs going", running["samples"]),
    ]
    p99_idle = percentile(sorted(idle["samples"]), 99) * 1000
    p99_running = percentile(sorted(running["samples"]), 99) * 1000
    base = percentile(sorted(idle["baseline"]), 50) * 1000
    runs = running["runs"]
    lines = [
        f"End to end: `reconciler start` as a child process, {tasks:,} task files in a "
        f"directory source, {edits} edits per daemon, each a temp file renamed over a random "
        f"task's file changing its `description`, {EDIT_GAP_S * 1000:g} ms apart; the time "
        "runs from `os.rename()` until `GET /v1/tasks/{name}` (one kept-alive connection, "
        "polled back to back) shows the new description, so it includes the probe's own "
        f"round trip (baseline p50 {base:.2f} ms). Idle: every task disabled, nothing runs. "
        f"Start-up runs going: every task enabled, their first runs with the real Terraform "
        f"on 2 warm workers under way throughout (when the edits ended: {runs.get('applied', 0):,} "
        f"of {runs.get('tasks', tasks):,} applied). The API listed every task "
        f"{idle['api_s']:.1f} s (idle) and {running['api_s']:.1f} s (running) after start.",
        "",
        *table(["measurement (ms)", "p50", "p90", "p99", "max"], rows),
    ]
    return Section(
        "daemon-edits",
        "Edit-to-live through the daemon",
        lines,
        [
            Target(f"edit-to-live p99 through the daemon, {tasks:,} tasks, idle", "<= 10 ms",
                   f"{p99_idle:.1f} ms", p99_idle <= 10),
            Target(f"edit-to-live p99 through the daemon, {tasks:,} tasks, start-up runs going",
                   "<= 10 ms", f"{p99_running:.1f} ms", p99_running <= 10),
        ],
    )  # fmt: skip
