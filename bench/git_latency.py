"""Benchmark: the git source's latencies against a local bare remote.

push-to-live  a human commits and pushes one edited task file, then calls the webhook;
              time from the webhook call to the registry holding the new definition,
              with N tasks in the repository (the SourceLoop's debounce included).
              Baseline: a plain clone following the same push (`git fetch` + `git reset
              --hard`), what any follower has to do at least.
create-to-201 `POST /v1/tasks` through the API app with `push = true`: write, commit,
              push, reconcile, answer. Baseline: `git add` + `git commit` + `git push` of
              one file from a plain clone.

`run_git_latency()` returns the numbers as a dict; `bench_git(ws)` wraps them as a
report Section for `python -m bench` (register it as BENCHMARKS["git"]);
`python -m bench.git_latency [--quick]` prints a small table.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2

from bench.report import Section, Target, table
from bench.runner import percentile
from bench.workspace import Workspace
from reconciler.api.app import ApiContext, create_app
from reconciler.api.webhooks import WEBHOOK_PATH, webhook_routes
from reconciler.commands.service import TaskCommands
from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.reconcile.writeback import WriteBack
from reconciler.registry.store import Registry, RegistryChange
from reconciler.sources.git import GitOptions, GitSource

P99_LIMIT_MS = 1000.0
SECRET = "bench-secret"
_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@localhost",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@localhost",
}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_ENV},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _task(name: str, description: str = "") -> str:
    extra = f'  description = "{description}"\n' if description else ""
    return (
        f'task {{\n  name = "{name}"\n  module = "./mod"\n{extra}'
        f'  condition "services" {{\n    names = ["{name}-svc"]\n  }}\n}}\n'
    )


def _rel(i: int) -> str:
    return f"tasks/d{i % 10}/t{i:04}.hcl"


def _make_remote(root: Path, count: int) -> tuple[Path, Path]:
    bare, human = root / "remote.git", root / "human"
    _git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    _git(root, "clone", "-q", str(bare), str(human))
    _git(human, "checkout", "-q", "-B", "main")
    for i in range(count):
        path = human / _rel(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_task(f"t{i:04}"))
    _git(human, "add", "-A")
    _git(human, "commit", "-q", "-m", "initial")
    _git(human, "push", "-q", "origin", "main")
    return bare, human


def _stats(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "p50": percentile(ms, 50),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "mean": statistics.fmean(ms),
    }


class _Live:
    """The real core over a GitSource with the webhook route, as the daemon wires it."""

    def __init__(self, source: GitSource) -> None:
        self.registry = Registry()
        self.reconciler = Reconciler(self.registry)
        self.loop = SourceLoop(source, self.reconciler, rescan_interval=300)
        self.writeback = WriteBack(self.reconciler, {source.name: self.loop}, source.name)
        app = create_app(
            ApiContext(TaskCommands(self.reconciler, self.writeback)),
            extra_routes=webhook_routes({SECRET: lambda: self.loop.hint(None)}),
        )
        self.client = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://bench"
        )


async def _push_to_live(root: Path, bare: Path, human: Path, pushes: int) -> dict[str, Any]:
    source = GitSource(GitOptions(url=str(bare), path="tasks"), root / "daemon")
    live = _Live(source)
    started = time.perf_counter()
    await live.loop.initial_load()
    load_s = time.perf_counter() - started
    runner = asyncio.create_task(live.loop.run())
    follower = root / "follower"
    _git(root, "clone", "-q", str(bare), str(follower))
    seen: dict[str, asyncio.Event] = {}

    def listener(change: RegistryChange) -> None:
        for _, new in change.updated:
            event = seen.get(new.spec.name)
            if event is not None and new.spec.description == "edit":
                event.set()

    live.registry.subscribe(listener)
    samples, baseline = [], []
    try:
        for n in range(pushes):
            i = (n * 37) % len(live.registry)
            name = f"t{i:04}"
            (human / _rel(i)).write_text(_task(name, "edit"))
            _git(human, "commit", "-qam", f"edit {name}")
            _git(human, "push", "-q", "origin", "main")
            seen[name] = asyncio.Event()
            body = f'{{"after": "{n}"}}'.encode()
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            t0 = time.perf_counter()
            response = await live.client.post(
                WEBHOOK_PATH, content=body, headers={"X-Hub-Signature-256": signature}
            )
            assert response.status_code == 202, response.text
            await asyncio.wait_for(seen[name].wait(), 30)
            samples.append(time.perf_counter() - t0)
            # Put the task back so the next edit of it is a change again.
            (human / _rel(i)).write_text(_task(name))
            _git(human, "commit", "-qam", f"revert {name}")
            _git(human, "push", "-q", "origin", "main")
            t0 = time.perf_counter()
            _git(follower, "fetch", "-q", "origin", "main")
            _git(follower, "reset", "-q", "--hard", "origin/main")
            baseline.append(time.perf_counter() - t0)
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await live.client.aclose()
        source.close()
    return {
        "tasks": len(live.registry),
        "initial_load_s": load_s,
        "push_to_live_ms": _stats(samples),
        "follow_baseline_ms": _stats(baseline),
    }


async def _create_to_201(root: Path, bare: Path, creates: int) -> dict[str, Any]:
    source = GitSource(GitOptions(url=str(bare), path="tasks", push=True), root / "api")
    live = _Live(source)
    await live.loop.initial_load()
    plain = root / "plain"
    _git(root, "clone", "-q", str(bare), str(plain))
    samples, baseline = [], []
    try:
        for n in range(creates):
            task = {
                "name": f"api{n:03}",
                "module": "./mod",
                "condition": {"services": {"names": ["web"]}},
            }
            t0 = time.perf_counter()
            response = await live.client.post("/v1/tasks", json={"task": task})
            samples.append(time.perf_counter() - t0)
            assert response.status_code == 201, response.text
            _git(plain, "pull", "-q", "--ff-only", "origin", "main")
            (plain / "tasks" / f"plain{n:03}.hcl").write_text(_task(f"plain{n:03}"))
            t0 = time.perf_counter()
            _git(plain, "add", "-A")
            _git(plain, "commit", "-qm", f"create task plain{n:03}")
            _git(plain, "push", "-q", "origin", "main")
            baseline.append(time.perf_counter() - t0)
            await asyncio.to_thread(source.full_scan)  # follow the plain pushes too
    finally:
        await live.client.aclose()
        source.close()
    return {"create_to_201_ms": _stats(samples), "commit_push_baseline_ms": _stats(baseline)}


def run_git_latency(
    *, tasks: int = 1000, pushes: int = 50, creates: int = 50, root: Path | None = None
) -> dict[str, Any]:
    """Both measurements; times in milliseconds (p50, p99, max, mean)."""
    with contextlib.ExitStack() as stack:
        if root is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="git-bench-")))
        root.mkdir(parents=True, exist_ok=True)
        bare, human = _make_remote(root, tasks)
        result = asyncio.run(_push_to_live(root, bare, human, pushes))
        result.update(asyncio.run(_create_to_201(root, bare, creates)))
        result.update({"pushes": pushes, "creates": creates})
        return result


def rows(result: dict[str, Any]) -> list[list[str]]:
    keys = ("p50", "p99", "max", "mean")
    names = [
        ("push -> webhook -> registry updated", "push_to_live_ms"),
        ("baseline: plain clone fetch + reset", "follow_baseline_ms"),
        ("POST /v1/tasks -> 201 (commit + push)", "create_to_201_ms"),
        ("baseline: plain add + commit + push", "commit_push_baseline_ms"),
    ]
    return [[label, *(f"{result[key][k]:.1f}" for k in keys)] for label, key in names]


def bench_git(ws: Workspace) -> Section:
    quick = ws.settings.quick
    count, pushes = (200, 10) if quick else (1000, 50)
    result = run_git_latency(tasks=count, pushes=pushes, creates=pushes, root=ws.root / "git")
    p99 = result["push_to_live_ms"]["p99"]
    section = Section("git", "Git source latency")
    section.lines += [
        f"{result['tasks']:,} tasks in a local bare repository (initial load "
        f"{result['initial_load_s']:.2f} s); {pushes} pushes, each editing one task file; "
        f"{pushes} API creates with `push = true`. Times in ms.",
        "",
        *table(["measurement", "p50", "p99", "max", "mean"], rows(result)),
    ]
    section.targets.append(
        Target(
            f"push-to-live p99 with {count:,} tasks",
            f"<= {P99_LIMIT_MS:g} ms",
            f"{p99:.0f} ms",
            None if quick else p99 <= P99_LIMIT_MS,
        )
    )
    return section


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    pushes = 10 if quick else 50
    result = run_git_latency(tasks=200 if quick else 1000, pushes=pushes, creates=pushes)
    print(f"{result['tasks']} tasks, {result['pushes']} pushes, {result['creates']} creates (ms)")
    print("\n".join(table(["measurement", "p50", "p99", "max", "mean"], rows(result))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
