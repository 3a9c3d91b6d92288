"""The /v1 API under load from a second process on loopback.

With N tasks loaded: requests/s and p99 of `GET /v1/tasks/{name}` and `GET /v1/tasks`,
each next to a bare Starlette endpoint returning the same bytes, served the same way in
the same run (the ratio is the figure), and `POST /v1/tasks` create-to-201 latency
(including the fsync) next to a bare atomic write of the same file.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2

from bench.report import Section, Target, table
from bench.runner import _child_env, percentile
from bench.workspace import Workspace
from reconciler._core.fsutil import atomic_write

DURATION_S = 5
REPEATS = 3
CONNECTIONS = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wrk(url: str, duration: int) -> tuple[float, float]:
    """(requests/s, p99 ms) from wrk pinned to core 1."""
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{duration}s",
            "--latency",
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    return rps, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def _python_load(url: str, duration: int) -> tuple[float, float]:
    """Fallback when wrk is not installed: asyncio clients in this process."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration
    async with httpx2.AsyncClient(timeout=30) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                (await client.get(url)).raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return len(latencies) / duration, percentile(latencies, 99)


def _load(url: str, duration: int) -> tuple[float, float]:
    if shutil.which("wrk") and shutil.which("taskset"):
        return _wrk(url, duration)
    return asyncio.run(_python_load(url, duration))


def _posts(api: str, root: Path, count: int) -> tuple[list[float], list[float]]:
    """Sequential creates through the API, and the same bytes written atomically."""
    api_ms: list[float] = []
    with httpx2.Client(base_url=api, timeout=30) as client:
        for i in range(count):
            body = {
                "task": {
                    "name": f"bench_post_{i}",
                    "module": "./m",
                    "condition": {"services": {"names": ["web"]}},
                }
            }
            started = time.perf_counter()
            response = client.post("/v1/tasks", json=body)
            api_ms.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 201, response.text
    floor_ms: list[float] = []
    sample = (root / "bench_post_0.hcl").read_bytes()
    for i in range(count):
        started = time.perf_counter()
        atomic_write(root / f".floor-{i}.hcl", sample, exclusive=True)
        floor_ms.append((time.perf_counter() - started) * 1000)
    for i in range(count):
        (root / f".floor-{i}.hcl").unlink()
    return api_ms, floor_ms


def run_api_throughput(root: Path, name: str, *, duration: int, posts: int) -> dict[str, Any]:
    api_port, bare_port = _free_port(), _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.api_server", str(root), str(api_port), str(bare_port), name],
        stdout=subprocess.PIPE,
        text=True,
        env=_child_env(),
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline().split()
        assert ready and ready[0] == "READY", ready
        result: dict[str, Any] = {
            "tasks": int(ready[1]),
            "one_bytes": int(ready[2]),
            "list_bytes": int(ready[3]),
        }
        for label, path in (("one", f"/v1/tasks/{name}"), ("list", "/v1/tasks")):
            runs: dict[str, list[tuple[float, float]]] = {"api": [], "bare": []}
            # Interleaved repetitions: the machine is shared, so one run of each can be
            # minutes apart in conditions; the median of alternating runs is fairer.
            for _ in range(REPEATS):
                for side, port in (("api", api_port), ("bare", bare_port)):
                    url = f"http://127.0.0.1:{port}{path}"
                    _load(url, 1)  # warm-up
                    runs[side].append(_load(url, duration))
            for side, values in runs.items():
                result[f"{label}_{side}"] = (
                    statistics.median(v[0] for v in values),
                    statistics.median(v[1] for v in values),
                )
        api_ms, floor_ms = _posts(f"http://127.0.0.1:{api_port}", root, posts)
        result["post_api"] = (percentile(api_ms, 50), percentile(api_ms, 99))
        result["post_floor"] = (percentile(floor_ms, 50), percentile(floor_ms, 99))
        result["client"] = (
            "wrk" if shutil.which("wrk") else "python (install wrk for better numbers)"
        )
        return result
    finally:
        proc.terminate()
        proc.wait(30)


def bench_api(ws: Workspace) -> Section:
    count = 10_000 if not ws.settings.quick else 1_000
    corpus = ws.corpus(count)
    root = ws.root / f"api-{count}"
    shutil.copytree(corpus.hcl_root, root)
    name = _first_task_name(root)
    r = run_api_throughput(
        root,
        name,
        duration=2 if ws.settings.quick else DURATION_S,
        posts=50 if ws.settings.quick else 200,
    )
    section = Section("api", "API throughput")
    section.lines += [
        f"{r['tasks']:,} tasks loaded; load from a second process on loopback ({r['client']}, "
        f"{CONNECTIONS} connections; median of {REPEATS} interleaved {DURATION_S} s runs, each "
        "after a 1 s warm-up); server "
        "pinned to core 0, client to core 1. The bare endpoint is a Starlette route returning "
        f"the same bytes ({r['one_bytes']:,} B for one task, {r['list_bytes']:,} B for the "
        "list), served by uvicorn in the same process.",
        "",
    ]
    rows = []
    for label, route in (("one", "GET /v1/tasks/{name}"), ("list", "GET /v1/tasks")):
        (api_rps, api_p99), (bare_rps, bare_p99) = r[f"{label}_api"], r[f"{label}_bare"]
        rows.append(
            [
                route,
                f"{api_rps:,.0f}",
                f"{api_p99:.2f}",
                f"{bare_rps:,.0f}",
                f"{bare_p99:.2f}",
                f"{api_rps / bare_rps:.2f}x",
            ]
        )
    section.lines += table(["route", "req/s", "p99 ms", "bare req/s", "bare p99 ms", "ratio"], rows)
    (p50, p99), (f50, f99) = r["post_api"], r["post_floor"]
    section.lines += [
        "",
        "`POST /v1/tasks` (sequential, new task each time): from request to 201, which "
        "includes rendering, the atomic durable write (fsync of file and directory) and the "
        "reconcile of that file; the floor is `atomic_write` of the same bytes alone.",
        "",
        *table(
            ["", "p50 ms", "p99 ms"],
            [
                ["create to 201", f"{p50:.2f}", f"{p99:.2f}"],
                ["floor: atomic write", f"{f50:.2f}", f"{f99:.2f}"],
            ],
        ),
    ]
    ratio = r["one_api"][0] / r["one_bare"][0]
    section.targets.append(
        Target(
            f"GET /v1/tasks/{{name}} throughput vs bare endpoint, {count:,} tasks",
            ">= 0.7x",
            f"{ratio:.2f}x",
            ratio >= 0.7 if count >= 10_000 else None,
        )
    )
    return section


def _first_task_name(root: Path) -> str:
    for path in sorted(root.rglob("*.hcl")):
        m = re.search(r'name\s*=\s*"([^"]+)"', path.read_text())
        if m:
            return m.group(1)
    raise RuntimeError("no task in the corpus")
