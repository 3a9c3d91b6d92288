"""Service names built against backtracking regular expressions, through `reconciler
start`: a task whose condition is `regexp = "^([a-z0-9]+-?)+$"` over a catalog that holds,
besides ordinary names, names of 40 to 60 letters ending in `!` (with a backtracking
engine each costs 2^n steps). Measured: `/v1/health` latency while the catalog holds them
and while the hostile names arrive, against the same daemon with ordinary names only
(the baseline, same run)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.report import Section, Target, table
from bench.runner import _child_env, percentile
from bench.terraform_daemon import _free_port
from bench.workspace import Workspace

PATTERN = "^([a-z0-9]+-?)+$"
TARGET_MS = 50.0


def _service(root: Path, name: str, id: str) -> None:
    (root / "catalog" / f"{id}.hcl").write_text(
        f'service {{\n  name = "{name}"\n  id = "{id}"\n  address = "10.0.0.1"\n  port = 80\n}}\n'
    )


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=5):
            return True
    except OSError:
        return False


def _health_ms(port: int, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=60) as r:
            r.read()
        out.append((time.perf_counter() - started) * 1000)
    return out


def measure(root: Path, hostile: int, requests: int) -> dict[str, float]:
    shutil.rmtree(root, ignore_errors=True)
    (root / "catalog").mkdir(parents=True)
    (root / "mod").mkdir()
    (root / "mod" / "main.tf").write_text('variable "services" {\n  type = any\n}\n')
    for i in range(20):
        _service(root, f"web-{i}", f"web-{i}")
    port = _free_port()
    (root / "config.hcl").write_text(
        f'log_level = "WARN"\nport = {port}\nworking_dir = "work"\n'
        'task {\n  name = "by-regexp"\n  module = "./mod"\n'
        f'  condition "services" {{\n    regexp = "{PATTERN}"\n  }}\n}}\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli.main", "start", "-config-file=config.hcl"],
        cwd=root,
        env=_child_env(),
        stdout=subprocess.DEVNULL,
        stderr=(root / "daemon.log").open("wb"),
    )
    try:
        deadline = time.monotonic() + 300
        tfvars = root / "work" / "by-regexp" / "terraform.tfvars"
        while not (tfvars.exists() and _answers(port)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((root / "daemon.log").read_text()[-3000:])
            time.sleep(0.1)
        # The names arrive while the health checks run: each is matched as it comes.
        for i in range(hostile):
            _service(root, "a" * (40 + i % 21) + "!", f"hostile-{i}")
        during = _health_ms(port, requests)
        time.sleep(1.0)  # the catalog has settled
        after = _health_ms(port, requests)
    finally:
        proc.terminate()
        proc.wait(60)
    samples = during + after
    return {"p50": percentile(samples, 50), "p99": percentile(samples, 99), "max": max(samples)}


def bench_hostile_names(ws: Workspace) -> Section:
    requests = 50 if ws.settings.quick else 200
    hostile = 5 if ws.settings.quick else 20
    base = measure(ws.root / "hostile-base", 0, requests)
    bad = measure(ws.root / "hostile", hostile, requests)
    rows = [
        [
            "ordinary names only (baseline)",
            *(f"{base[k]:.2f}" for k in ("p50", "p99", "max")),
            "1.0x",
        ],
        [
            f"plus {hostile} hostile names arriving",
            *(f"{bad[k]:.2f}" for k in ("p50", "p99", "max")),
            f"{bad['p99'] / base['p99']:.1f}x",
        ],
    ]
    lines = [
        "End to end: `reconciler start` as a child process, the embedded catalog, one task "
        f'with `regexp = "{PATTERN}"`; {2 * requests} sequential `GET /v1/health` while '
        "the hostile names (40 to 60 letters and a `!`) are written to the catalog and after.",
        "",
        *table(["catalog", "p50 ms", "p99 ms", "max ms", "p99 vs baseline"], rows),
    ]
    targets = [
        Target(
            "/v1/health p99 while the catalog holds ReDoS names",
            f"<= {TARGET_MS:.0f} ms",
            f"{bad['p99']:.1f} ms",
            bad["p99"] <= TARGET_MS,
        )
    ]
    return Section("hostile", "Hostile service names (regexp conditions)", lines, targets)
