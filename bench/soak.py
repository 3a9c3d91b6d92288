"""Soak: `reconciler start` with a git source under mixed load for a long while.

20 API clients (each creating, enabling/disabling and deleting its own tasks), a human
editing task files in a clone of the remote and pushing, and signed webhook calls, all at
once against the daemon in its own process. At the end, with the load stopped and the
daemon settled: the task files on the remote, the files in the daemon's clone and the
registry agree exactly, every acknowledged API change and every human push is in them,
and the daemon's RSS has grown by at most 10% since the warm-up.

Runs do not matter here: `true` stands in for Terraform, so that the load measures the
daemon (write-back, commits, pushes, fetches, reconciles) and not Terraform.

`python -m bench.soak [--seconds N]` (default 600) prints the numbers;
`python -m bench --only soak` runs it as a report section (60 s with --quick). It is not
part of `make test`, nor of a plain `make bench`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.report import Section, Target, table
from bench.runner import REPO, percentile
from bench.workspace import Workspace
from reconciler.taskfiles.load import load_task_file

DEFAULT_SECONDS = 600.0
CLIENTS = 20
HUMAN_TASKS = 10
SECRET = "soak-secret"
RSS_GROWTH_LIMIT = 0.10
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "human",
    "GIT_AUTHOR_EMAIL": "human@localhost",
    "GIT_COMMITTER_NAME": "human",
    "GIT_COMMITTER_EMAIL": "human@localhost",
    "GIT_CONFIG_NOSYSTEM": "1",
}
MODULE_TF = 'variable "services" {\n  type = any\n}\n'

# name -> (enabled, description): what the comparison at the end looks at.
Tasks = dict[str, tuple[bool, str]]


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_GIT_ENV},
        capture_output=True,
        text=True,
        check=check,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def _human_task(name: str, description: str) -> str:
    return (
        f'task {{\n  name        = "{name}"\n  description = "{description}"\n'
        f'  module      = "../../m"\n  condition "services" {{\n    names = ["web"]\n  }}\n}}\n'
    )


class Api:
    def __init__(self, port: int) -> None:
        self.port = port

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = 60
    ) -> tuple[int, Any]:
        """(status, JSON body); status 0 when no answer came."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")
        except (OSError, http.client.HTTPException):
            return 0, None

    def webhook(self) -> int:
        body = b'{"ref": "refs/heads/main"}'
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/v1/source/webhook",
            data=body,
            method="POST",
            headers={"X-Hub-Signature-256": f"sha256={digest}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return int(response.status)
        except urllib.error.HTTPError as err:
            return err.code
        except (OSError, http.client.HTTPException):
            return 0

    def tasks(self) -> Tasks:
        status, body = self.call("GET", "/v1/tasks")
        if status != 200:
            raise RuntimeError(f"GET /v1/tasks: {status} {body}")
        return {t["name"]: (bool(t["enabled"]), t["description"] or "") for t in body["tasks"]}


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def record(self, what: str, status: int, elapsed_s: float, body: Any) -> None:
        with self.lock:
            self.statuses[f"{what} {status}"] += 1
            self.latencies_ms.append(elapsed_s * 1000)
            if status == 0 or status >= 500:
                error = body.get("error", {}).get("message") if isinstance(body, dict) else body
                self.unexpected.append(f"{what} {status}: {error}"[:300])


class Client(threading.Thread):
    """Creates, toggles and deletes its own tasks; `model` is what was acknowledged."""

    def __init__(self, index: int, api: Api, stop: threading.Event, stats: Stats, seed: int):
        super().__init__(name=f"client-{index}", daemon=True)
        self.index = index
        self.api = api
        self.stop = stop
        self.stats = stats
        self.rng = random.Random(seed)
        self.model: Tasks = {}
        self.uncertain: set[str] = set()  # no answer: either state is possible

    def run(self) -> None:
        made = 0
        while not self.stop.is_set():
            names = sorted(set(self.model) - self.uncertain)
            roll = self.rng.random()
            if len(names) < 3 or (len(names) < 12 and roll < 0.4):
                made += 1
                name = f"c{self.index:02d}-{made:05d}"
                enabled = self.rng.random() < 0.8
                body = {
                    "task": {
                        "name": name,
                        "module": "../m",
                        "enabled": enabled,
                        "condition": {"services": {"names": ["web"]}},
                    }
                }
                what, after = "POST", (enabled, "")
                started = time.perf_counter()
                status, answer = self.api.call("POST", "/v1/tasks", body)
            elif roll < 0.75:
                name = self.rng.choice(names)
                enabled = not self.model[name][0]
                what, after = "PATCH", (enabled, "")
                started = time.perf_counter()
                status, answer = self.api.call("PATCH", f"/v1/tasks/{name}", {"enabled": enabled})
            else:
                name = self.rng.choice(names)
                what, after = "DELETE", None
                started = time.perf_counter()
                status, answer = self.api.call("DELETE", f"/v1/tasks/{name}")
            self.stats.record(what, status, time.perf_counter() - started, answer)
            if 200 <= status < 300:
                if after is None:
                    self.model.pop(name, None)
                else:
                    self.model[name] = after
            elif status == 0 or status >= 500:
                self.uncertain.add(name)


class Editor(threading.Thread):
    """A human: edits the description of one of their task files, commits, pushes (pull
    --rebase and push again when the daemon pushed first), then calls the webhook."""

    def __init__(self, human: Path, api: Api, stop: threading.Event, seed: int) -> None:
        super().__init__(name="editor", daemon=True)
        self.human = human
        self.api = api
        self.stop = stop
        self.rng = random.Random(seed)
        self.model: Tasks = {f"h{i:02d}": (True, "initial") for i in range(HUMAN_TASKS)}
        self.pushes = 0
        self.push_retries = 0
        self.failures: list[str] = []

    def run(self) -> None:
        edit = 0
        while not self.stop.is_set():
            edit += 1
            name = self.rng.choice(sorted(self.model))
            description = f"edit {edit}"
            (self.human / "tasks" / "human" / f"{name}.hcl").write_text(
                _human_task(name, description)
            )
            _git(self.human, "commit", "-qam", f"edit {name}")
            for _ in range(50):
                if _git(self.human, "push", "-q", "origin", "main", check=False).returncode == 0:
                    break
                self.push_retries += 1
                _git(self.human, "pull", "-q", "--rebase", "origin", "main", check=False)
            else:
                self.failures.append(f"could not push edit {edit}")
                break
            self.pushes += 1
            self.model[name] = (True, description)
            self.api.webhook()
            self.stop.wait(self.rng.uniform(0.3, 0.8))


class Webhooks(threading.Thread):
    def __init__(self, api: Api, stop: threading.Event) -> None:
        super().__init__(name="webhooks", daemon=True)
        self.api = api
        self.stop = stop
        self.calls: Counter[int] = Counter()

    def run(self) -> None:
        while not self.stop.is_set():
            self.calls[self.api.webhook()] += 1
            self.stop.wait(0.25)


def _parse_tree(files: dict[str, bytes]) -> Tasks:
    out: Tasks = {}
    for rel, data in sorted(files.items()):
        loaded = load_task_file(data, rel)
        if loaded.problems:
            raise AssertionError(f"{rel} does not load: {loaded.problems}")
        for task in loaded.tasks:
            spec = task.spec
            if spec.name in out:
                raise AssertionError(f"task {spec.name} defined twice")
            out[spec.name] = (spec.is_enabled, spec.description or "")
    return out


def remote_tasks(bare: Path) -> Tasks:
    listing = _git(bare, "ls-tree", "-r", "--name-only", "main", "--", "tasks").stdout.split()
    files = {
        rel: subprocess.run(
            ["git", "show", f"main:{rel}"], cwd=bare, capture_output=True, check=True
        ).stdout
        for rel in listing
        if rel.endswith(".hcl")
    }
    return _parse_tree(files)


def clone_tasks(clone: Path) -> Tasks:
    root = clone / "tasks"
    return _parse_tree(
        {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.hcl"))}
    )


def _setup(root: Path, port: int) -> tuple[Path, Path, Path]:
    bare, human = root / "remote.git", root / "human"
    _git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(root, "clone", "-q", str(bare), str(human))
    _git(human, "checkout", "-q", "-B", "main")
    (human / "m").mkdir()
    (human / "m" / "main.tf").write_text(MODULE_TF)
    (human / "tasks" / "human").mkdir(parents=True)
    for i in range(HUMAN_TASKS):
        name = f"h{i:02d}"
        (human / "tasks" / "human" / f"{name}.hcl").write_text(_human_task(name, "initial"))
    _git(human, "add", "-A")
    _git(human, "commit", "-qm", "initial")
    _git(human, "push", "-q", "origin", "main")
    (root / "catalog").mkdir(exist_ok=True)
    config = root / "config.hcl"
    config.write_text(
        f'port = {port}\nworking_dir = "state"\n'
        'driver "terraform" {\n  path = "/bin/true"\n}\n'
        'catalog "directory" {\n  path = "catalog"\n}\n'  # empty: no Consul agent needed
        f'source "git" {{\n  url = "{bare}"\n  path = "tasks"\n  push = true\n'
        f'  webhook_secret = "{SECRET}"\n  poll_interval = "10s"\n}}\n'
    )
    return bare, human, config


def _wait(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except (RuntimeError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


def run_soak(seconds: float, root: Path | None = None, seed: int | None = None) -> dict[str, Any]:
    seed = random.SystemRandom().randrange(1 << 32) if seed is None else seed
    own_root = root is None
    root = Path(tempfile.mkdtemp(prefix="reconciler-soak-")) if root is None else root
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    bare, human, config = _setup(root, port)
    api = Api(port)
    log = (root / "daemon.log").open("wb")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli.main", "start", f"-config-file={config}"],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        _wait(lambda: api.call("GET", "/v1/health", timeout=5)[0] == 200, 120, "the daemon")
        rss_started = _rss_kib(proc.pid)
        stop = threading.Event()
        stats = Stats()
        rng = random.Random(seed)
        clients = [Client(i, api, stop, stats, rng.randrange(1 << 32)) for i in range(CLIENTS)]
        editor = Editor(human, api, stop, rng.randrange(1 << 32))
        hooks = Webhooks(api, stop)
        threads: list[threading.Thread] = [*clients, editor, hooks]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        # The baseline for growth: after a warm-up under the same load (allocator arenas,
        # caches, the first tasks), not the idle process.
        warmup = min(max(seconds * 0.1, 10.0), seconds / 2)
        samples: list[tuple[float, int]] = []
        while time.monotonic() - started < seconds:
            time.sleep(min(5.0, seconds / 20))
            if proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {proc.returncode}; see {log.name}")
            samples.append((time.monotonic() - started, _rss_kib(proc.pid)))
        stop.set()
        for thread in threads:
            thread.join(120)
        load_s = time.monotonic() - started
        rss_warm = next((kib for t, kib in samples if t >= warmup), samples[0][1])

        # Settle: one more fetch, then everything must agree.
        api.webhook()
        expected: Tasks = dict(editor.model)
        uncertain: set[str] = set()
        for client in clients:
            expected.update(client.model)
            uncertain |= client.uncertain
        for name in uncertain:
            expected.pop(name, None)

        def settled() -> bool:
            registry = {k: v for k, v in api.tasks().items() if k not in uncertain}
            remote = {k: v for k, v in remote_tasks(bare).items() if k not in uncertain}
            return registry == remote == expected

        clone = root / "state" / ".reconciler" / "git" / "git"
        agree = True
        try:
            _wait(settled, 120, "files, registry and remote to agree")
        except RuntimeError:
            agree = False
        registry, remote, cloned = api.tasks(), remote_tasks(bare), clone_tasks(clone)
        agree = agree and registry == remote == cloned
        health = api.call("GET", "/v1/health")[0]
        rss_end = _rss_kib(proc.pid)
        commits = int(_git(bare, "rev-list", "--count", "main").stdout.strip())
        unpushed = _git(clone, "rev-list", "--count", "origin/main..main").stdout.strip()
        proc.send_signal(signal.SIGTERM)
        exit_code = proc.wait(60)
        latencies = stats.latencies_ms
        return {
            "seed": seed,
            "seconds": load_s,
            "requests": len(latencies),
            "requests_per_s": len(latencies) / load_s,
            "statuses": dict(sorted(stats.statuses.items())),
            "unexpected": stats.unexpected[:20],
            "unexpected_count": len(stats.unexpected),
            "latency_ms": {
                "p50": statistics.median(latencies) if latencies else 0.0,
                "p99": percentile(latencies, 99) if latencies else 0.0,
                "max": max(latencies, default=0.0),
            },
            "human_pushes": editor.pushes,
            "human_push_retries": editor.push_retries,
            "human_failures": editor.failures,
            "webhook_calls": dict(hooks.calls),
            "tasks_at_end": len(registry),
            "uncertain": sorted(uncertain),
            "remote_commits": commits,
            "unpushed_at_end": int(unpushed or 0),
            "agree": agree,
            "health_at_end": health,
            "exit_code": exit_code,
            "rss_kib": {
                "started": rss_started,
                "warm": rss_warm,
                "end": rss_end,
                "max": max(kib for _, kib in samples),
            },
            "rss_growth": (rss_end - rss_warm) / rss_warm,
            "rss_samples": samples,
        }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        log.close()
        if own_root:
            shutil.rmtree(root, ignore_errors=True)


def summary_rows(result: dict[str, Any]) -> list[list[str]]:
    rss = {k: f"{v / 1024:.1f}" for k, v in result["rss_kib"].items()}
    lat = {k: f"{v:.0f}" for k, v in result["latency_ms"].items()}
    hooks = sorted(result["webhook_calls"].items())
    return [
        ["duration under load", f"{result['seconds']:.0f} s"],
        ["API requests", f"{result['requests']:,} ({result['requests_per_s']:.1f}/s)"],
        ["API latency p50 / p99 / max", f"{lat['p50']} / {lat['p99']} / {lat['max']} ms"],
        ["answers", ", ".join(f"{k}: {v}" for k, v in result["statuses"].items())],
        ["5xx or no answer", str(result["unexpected_count"])],
        [
            "human pushes (retries after a rejected push)",
            f"{result['human_pushes']} ({result['human_push_retries']})",
        ],
        ["webhook calls", ", ".join(f"{k}: {v}" for k, v in hooks)],
        ["commits on the remote", f"{result['remote_commits']:,}"],
        ["tasks at the end", str(result["tasks_at_end"])],
        ["files, registry and remote agree", "yes" if result["agree"] else "**no**"],
        [
            "RSS started / after warm-up / end / max",
            f"{rss['started']} / {rss['warm']} / {rss['end']} / {rss['max']} MiB",
        ],
        ["RSS growth since warm-up", f"{result['rss_growth'] * 100:+.1f}%"],
    ]


def bench_soak(ws: Workspace) -> Section:
    seconds = 60.0 if ws.settings.quick else DEFAULT_SECONDS
    result = run_soak(seconds, ws.root / "soak")
    section = Section("soak", "Soak: 20 API clients, a human pushing, webhooks")
    section.lines += [
        f"`reconciler start` with a git source (`push = true`) against a local bare remote, "
        f"{CLIENTS} API clients, one human editing and pushing, signed webhook calls every "
        f"250 ms; seed {result['seed']}.",
        "",
        *table(["measurement", "value"], summary_rows(result), "lr"),
    ]
    full = not ws.settings.quick
    section.targets += [
        Target(
            "files, registry and remote agree at the end",
            "exactly",
            "yes" if result["agree"] else "no",
            result["agree"],
        ),
        Target(
            f"RSS growth over {seconds:.0f} s",
            f"<= {RSS_GROWTH_LIMIT * 100:.0f}%",
            f"{result['rss_growth'] * 100:+.1f}%",
            result["rss_growth"] <= RSS_GROWTH_LIMIT if full else None,
        ),
    ]
    return section


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="time under load")
    parser.add_argument("--seed", type=int, help="replay a run")
    parser.add_argument("--keep", type=Path, help="keep the remote, clone and log here")
    args = parser.parse_args(argv)
    result = run_soak(args.seconds, args.keep, args.seed)
    print("\n".join(table(["measurement", "value"], summary_rows(result), "lr")))
    for line in result["unexpected"]:
        print(f"  unexpected: {line}")
    if result["uncertain"]:
        print(f"  no answer for: {', '.join(result['uncertain'])}")
    ok = result["agree"] and result["rss_growth"] <= RSS_GROWTH_LIMIT and result["exit_code"] == 0
    print("soak: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main(sys.argv[1:]))
