"""Concurrent API writers through the daemon: `reconciler start` as a child process, 20
clients at once, each creating its tasks, then disabling them, then deleting them, against
a directory source and a git source that pushes to a local bare remote. One client alone
on the same daemon is the same-run baseline.

Creates run Terraform's init + validate on the warm pool (2 workers) before the write; the
PATCHes and DELETEs are file changes only (no `run` parameter).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench.report import Section, Target, table
from bench.runner import percentile
from bench.terraform_daemon import Daemon, create_body, until_applied
from bench.workspace import Workspace
from reconciler._core.fsutil import atomic_write

CLIENTS = 20
PHASES = ("create", "disable", "delete")


class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        raw = resp.read()
        return resp.status, json.loads(raw) if raw else None

    def close(self) -> None:
        self.conn.close()


def _one(client: Client, phase: str, name: str) -> None:
    if phase == "create":
        status, answer = client.call("POST", "/v1/tasks", create_body(name))
        want = 201
    elif phase == "disable":
        status, answer = client.call("PATCH", f"/v1/tasks/{name}", {"enabled": False})
        want = 200
    else:
        status, answer = client.call("DELETE", f"/v1/tasks/{name}")
        want = 202
    if status != want:
        raise RuntimeError(f"{phase} {name}: {status} {answer}")


def _phase(port: int, phase: str, names: list[list[str]]) -> dict[str, Any]:
    """Every client does `phase` for each of its names; latencies and the phase's wall
    time (from the first request to the last answer)."""
    latencies: list[float] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(len(names) + 1)

    def work(mine: list[str]) -> None:
        client = Client(port)
        try:
            start.wait()
            for name in mine:
                t0 = time.perf_counter()
                _one(client, phase, name)
                with lock:
                    latencies.append(time.perf_counter() - t0)
        except BaseException as exc:  # reported after the phase
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(mine,)) for mine in names]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise RuntimeError(f"{phase}: {errors[0]}")
    return {"ops": len(latencies), "wall_s": wall, "latencies": latencies}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) the process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(daemon: Daemon, per_client: int, prefix: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    alone = [[f"{prefix}solo{i}" for i in range(per_client)]]
    many = [[f"{prefix}c{c}t{i}" for i in range(per_client)] for c in range(CLIENTS)]
    for who, names in (("solo", alone), ("many", many)):
        for phase in PHASES:
            assert daemon.proc is not None
            cpu = _cpu_s(daemon.proc.pid)
            out[f"{who}-{phase}"] = r = _phase(daemon.port, phase, names)
            # The daemon's own CPU per write (its Terraform workers are other processes).
            r["cpu_ms"] = (_cpu_s(daemon.proc.pid) - cpu) * 1000 / r["ops"]
            if phase == "create":
                # Each new task runs once: let those runs end, so that the next phases
                # measure the writes rather than a share of two cores busy with Terraform.
                until_applied(daemon, sum(len(n) for n in names))
    return out


def _git_daemon(root: Path) -> Daemon:
    """A daemon whose only task source is a clone of a local bare repository, push on."""
    daemon = Daemon(root, pool=True)
    remote = root / "remote.git"
    seed = root / "seed"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "clone", "-q", str(remote), str(seed)], check=True)
    (seed / "tasks").mkdir()
    (seed / "tasks" / "README.md").write_text("tasks\n")
    for args in (["add", "-A"], ["commit", "-q", "-m", "seed"], ["push", "-q", "origin", "main"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=seed, check=True
        )
    config = (root / "config.hcl").read_text()
    config = config.replace(
        'source "directory" {\n  path = "tasks"\n  allow_empty = true\n}\n',
        f'source "git" {{\n  url = "{remote}"\n  branch = "main"\n  path = "tasks"\n'
        "  push = true\n}\n",
    )
    (root / "config.hcl").write_text(config)
    # Modules resolve against the task files' directory in the clone: give it the module.
    subprocess.run(["cp", "-r", str(root / "modules"), str(seed)], check=True)
    for args in (["add", "-A"], ["commit", "-q", "-m", "module"], ["push", "-q", "origin", "main"]):
        subprocess.run(
            ["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], cwd=seed, check=True
        )
    return daemon


def _run(ws: Workspace, kind: str, per_client: int) -> dict[str, dict[str, Any]]:
    root = ws.root / f"writers-{kind}"
    daemon = _git_daemon(root) if kind == "git" else Daemon(root, pool=True)
    try:
        daemon.start()
        return _measure(daemon, per_client, "")
    finally:
        daemon.stop()


def _row(kind: str, phase: str, r: dict[str, dict[str, Any]]) -> list[str]:
    many, solo = r[f"many-{phase}"], r[f"solo-{phase}"]
    ms = sorted(x * 1000 for x in many["latencies"])
    solo_ms = sorted(x * 1000 for x in solo["latencies"])
    solo_rate = solo["ops"] / solo["wall_s"]
    rate = many["ops"] / many["wall_s"]
    return [
        kind,
        phase,
        f"{rate:.0f}",
        f"{percentile(ms, 50):.0f}",
        f"{percentile(ms, 99):.0f}",
        f"{percentile(solo_ms, 50):.0f}",
        f"{solo_rate:.0f}",
        f"{rate / solo_rate:.1f}x",
        f"{many['cpu_ms']:.1f}",
    ]


def _floors(root: Path, commits: int) -> dict[str, float]:
    """What the machine itself takes for the steps a write cannot skip, in ms: a durable
    atomic file write, one `git commit` of one file (add + commit), a push of `commits`
    commits to a local bare repository."""
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, float] = {}
    t0 = time.perf_counter()
    for i in range(50):
        atomic_write(root / f"f{i}.hcl", b"task {}\n" * 10)
    out["fsync"] = (time.perf_counter() - t0) * 1000 / 50
    remote, clone = root / "remote.git", root / "clone"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    subprocess.run(["git", "clone", "-q", str(remote), str(clone)], check=True, capture_output=True)
    ident = ["-c", "user.name=b", "-c", "user.email=b@b"]

    def git(*args: str) -> None:
        subprocess.run(["git", *ident, *args], cwd=clone, check=True, capture_output=True)

    (clone / "seed").write_text("seed\n")
    git("add", "-A")
    git("commit", "-q", "-m", "seed")
    git("push", "-q", "origin", "HEAD:main")
    t0 = time.perf_counter()
    for i in range(commits):
        (clone / f"t{i}.hcl").write_text(f"task {i}\n")
        git("add", "--", f"t{i}.hcl")
        git("commit", "-q", "-m", f"t{i}", "--", f"t{i}.hcl")
    out["commit"] = (time.perf_counter() - t0) * 1000 / commits
    t0 = time.perf_counter()
    git("push", "-q", "origin", "HEAD:main")
    out["push"] = (time.perf_counter() - t0) * 1000
    return out


def bench_writers(ws: Workspace) -> Section:
    per_client = 2 if ws.settings.quick else 5
    results = {kind: _run(ws, kind, per_client) for kind in ("directory", "git")}
    floors = _floors(ws.root / "writers-floors", CLIENTS)
    solo_create = percentile(
        sorted(x * 1000 for x in results["directory"]["solo-create"]["latencies"]), 50
    )
    rows = [_row(kind, phase, r) for kind, r in results.items() for phase in PHASES]
    lines = [
        f"End to end: `reconciler start` as a child process; {CLIENTS} clients at once (one "
        f"kept-alive connection each), each creating {per_client} tasks, then disabling "
        "them, then deleting them; each phase starts when every client is ready and ends "
        "with the last answer; the PATCH and DELETE phases start once the created tasks' "
        "first runs have ended. Baseline: one client alone doing the same on the same daemon "
        "just before. Creates include Terraform's init + validate on the warm pool "
        "(2 workers); the git source pushes each change to a local bare repository before "
        "answering (`push = true`).",
        "",
        *table(
            ["source", "operation", f"{CLIENTS} clients: ops/s", "p50 ms", "p99 ms",
             "one client: p50 ms", "one client: ops/s", "ops/s ratio",
             "daemon CPU ms per write"],
            rows,
        ),
        "",
        "The floors, measured on this machine in the same run: a durable atomic write of "
        f"one task file (write, fsync, rename, fsync of the directory) {floors['fsync']:.2f} ms; "
        f"one `git add` + `git commit` of one file {floors['commit']:.1f} ms (the batch makes "
        f"its commits in one `git fast-import` instead); one `git push` of {CLIENTS} commits "
        f"to a local bare repository {floors['push']:.0f} ms. A create waits for Terraform's "
        f"init + validate on one of the 2 warm workers ({solo_create:.0f} ms p50 for one client "
        f"alone): the pool's ceiling is about {2000 / solo_create:.0f} creates/s. The daemon "
        "runs its event loop on one core: 1000 / (daemon CPU ms per write) is its ceiling "
        "for that operation on this machine.",
    ]  # fmt: skip

    def rate(kind: str, phase: str) -> float:
        r = results[kind][f"many-{phase}"]
        return float(r["ops"] / r["wall_s"])

    def p99(kind: str, phase: str) -> float:
        return percentile(sorted(x * 1000 for x in results[kind][f"many-{phase}"]["latencies"]), 99)

    sized = None if ws.settings.quick else True
    targets = []
    for phase in ("disable", "delete"):
        r, p = rate("directory", phase), p99("directory", phase)
        targets.append(
            Target(
                f"directory source {phase}, {CLIENTS} clients",
                ">= 300 ops/s, p99 <= 100 ms",
                f"{r:.0f} ops/s, p99 {p:.0f} ms",
                (r >= 300 and p <= 100) if sized else None,
            )
        )
    r = rate("directory", "create")
    targets.append(
        Target(
            f"directory source create with init, {CLIENTS} clients",
            ">= 80 ops/s",
            f"{r:.0f} ops/s",
            r >= 80 if sized else None,
        )
    )
    for phase in PHASES:
        r, p = rate("git", phase), p99("git", phase)
        targets.append(
            Target(
                f"git source (push) {phase}, {CLIENTS} clients",
                ">= 100 ops/s, p99 <= 1 s",
                f"{r:.0f} ops/s, p99 {p:.0f} ms",
                (r >= 100 and p <= 1000) if sized else None,
            )
        )
    return Section("writers", "Concurrent API writers", lines, targets)  # fmt: skip
