"""kill -9 of the daemon at random points during 200 API writes, for a directory source
and for a git source pushing to a bare remote.

After each kill the daemon is started again and must show exactly the acknowledged
changes (a 2xx was received) plus, for a request cut off by the kill, either its old or
its new state: in the files, in the registry and, for git, on the remote, with one commit
per applied change. No file is torn and no temp file is left. The kill points are drawn
from a seeded generator; the seed is printed (set FAULTS_SEED to replay one).
"""

from __future__ import annotations

import http.client
import os
import random
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from daemonkit import MODULE_TF, Daemon, free_port, running, task_files, temp_files
from gitkit import Remote, git
from helpers import task_hcl, wait_for, without_consul

from reconciler._core.fsutil import TEMP_PREFIX
from reconciler.taskfiles.load import load_task_file

WRITES = 200
KILLS = 4

State = bool | None  # enabled, or None: the task does not exist
# Checks the files, the registry (and the remote) against the model after a restart.
Check = Callable[[Daemon, dict[str, bool]], None]


@dataclass
class Outcome:
    acked: int = 0  # writes answered 2xx
    refused: int = 0  # writes answered 4xx/5xx (nothing changed)
    cut: int = 0  # writes cut off by a kill
    applied_cut: int = 0  # of those, the ones found applied after the restart
    latencies: list[float] = field(default_factory=list, repr=False)


def seed() -> int:
    value = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(1 << 32))
    print(f"kill -9 test seed: FAULTS_SEED={value}")
    return value


def task_body(name: str, enabled: bool) -> dict[str, object]:
    return {
        "task": {
            "name": name,
            "module": "../m",
            "enabled": enabled,
            "condition": {"services": {"names": ["web"]}},
        }
    }


def config_text(port: int, source: str) -> str:
    # Runs do not matter here, writes do: `true` stands in for Terraform, so that 200
    # creates cost milliseconds each (real Terraform runs are covered elsewhere).
    return (
        f'port = {port}\nworking_dir = "state"\n'
        'driver "terraform" {\n  path = "/bin/true"\n}\n' + source
    )


def drive(daemon: Daemon, rng: random.Random, check: Check) -> Outcome:
    """WRITES API writes with KILLS kill -9 at random moments; after each kill, a restart
    and `check` of everything against the model."""
    model: dict[str, bool] = {}
    out = Outcome()
    kill_at = set(rng.sample(range(10, WRITES), KILLS))
    created = 0
    for i in range(WRITES):
        names = sorted(model)
        roll = rng.random()
        if len(names) < 5 or roll < 0.45:
            created += 1
            name, enabled = f"t{created:03d}", rng.random() < 0.8
            method, path, body = "POST", "/v1/tasks", task_body(name, enabled)
            before, after = None, enabled
        elif roll < 0.8:
            name = rng.choice(names)
            method, path = "PATCH", f"/v1/tasks/{name}"
            body = {"enabled": not model[name]}
            before, after = model[name], not model[name]
        else:
            name = rng.choice(names)
            method, path, body = "DELETE", f"/v1/tasks/{name}", None
            before, after = model[name], None

        killer: threading.Timer | None = None
        if i in kill_at:
            # Somewhere inside this request or just after it: up to 1.5 typical latencies.
            typical = statistics.median(out.latencies[-20:]) if out.latencies else 0.01
            killer = threading.Timer(rng.uniform(0, 1.5 * typical), daemon.kill9)
            killer.start()
        started = time.monotonic()
        try:
            status, answer = daemon.call(method, path, body)
        except (OSError, http.client.HTTPException):
            status, answer = 0, None
        if killer is None:
            assert status // 100 == 2, f"{method} {path}: {status} {answer}"
            out.latencies.append(time.monotonic() - started)
        if status // 100 == 2:
            out.acked += 1
            _set(model, name, after)
        elif status:
            out.refused += 1  # an answer that is not a 2xx: nothing may have changed
        if killer is not None:
            killer.join()
            daemon.proc.wait(30)  # type: ignore[union-attr]
            daemon.start()
            if status == 0:
                out.cut += 1
                found = daemon.tasks().get(name)
                assert found in (before, after), (
                    f"{method} {path} cut off by the kill: {name} is {found}, expected "
                    f"{before} (not applied) or {after} (applied)"
                )
                if found != before:
                    out.applied_cut += 1
                _set(model, name, found)
            check(daemon, model)
    check(daemon, model)
    assert daemon.stop() == 0
    return out


def _set(model: dict[str, bool], name: str, state: State) -> None:
    if state is None:
        model.pop(name, None)
    else:
        model[name] = state


def registry_equals(daemon: Daemon, expected: dict[str, bool]) -> None:
    # A deleted task stays visible until a run in progress ends: poll.
    wait_for(lambda: daemon.tasks() == expected, timeout=30, what="the registry to be the files")


def directory_setup(tmp_path: Path) -> tuple[Path, int, Check]:
    """A daemon's config over a directory source, its port, and the check of the files
    and the registry against the model after each restart."""
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "main.tf").write_text(MODULE_TF)
    port = free_port()
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(config_text(port, 'source "directory" {\n  path = "tasks"\n}\n'))

    def check(daemon: Daemon, model: dict[str, bool]) -> None:
        assert temp_files(tasks) == []
        files = task_files(tasks)
        assert files == model
        registry_equals(daemon, model)

    return config, port, check


def test_kill9_during_api_writes_directory_source(tmp_path: Path) -> None:
    rng = random.Random(seed())
    config, port, check = directory_setup(tmp_path)
    with running(config, port, tmp_path / "daemon.log") as daemon:
        out = drive(daemon, rng, check)
    print(f"directory source: {out}")
    assert out.acked + out.refused + out.cut == WRITES


def remote_tasks(remote: Remote, folder: str) -> dict[str, bool]:
    """name -> enabled for the tasks on the remote's main branch; fails on a torn file."""
    found: dict[str, bool] = {}
    listing = git(remote.bare, "ls-tree", "-r", "--name-only", "main", "--", folder)
    for rel in listing.split():
        if not rel.endswith(".hcl"):
            continue
        data = subprocess.run(
            ["git", "show", f"main:{rel}"], cwd=remote.bare, capture_output=True, check=True
        ).stdout
        loaded = load_task_file(data, rel)
        assert not loaded.problems, f"{rel} on the remote is torn or broken: {loaded.problems}"
        for task in loaded.tasks:
            found[task.spec.name] = task.spec.is_enabled
    return found


def git_setup(tmp_path: Path) -> tuple[Path, int, Check, Remote]:
    """A daemon's config over a git source pushing to a bare remote, its port, the check
    of the work tree, the remote and the registry against the model after each restart,
    and the remote."""
    remote = Remote.create(tmp_path, {"m/main.tf": MODULE_TF, "tasks/README.md": "tasks\n"})
    port = free_port()
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(
        config_text(
            port,
            f'source "git" {{\n  url = "{remote.url}"\n  path = "tasks"\n  push = true\n}}\n',
        )
    )
    clone = tmp_path / "state" / ".reconciler" / "git" / "git"
    heads = [remote.head()]

    def check(daemon: Daemon, model: dict[str, bool]) -> None:
        assert temp_files(clone) == []
        assert task_files(clone / "tasks") == model  # the work tree
        assert remote_tasks(remote, "tasks") == model  # pushed, nothing left behind
        registry_equals(daemon, model)
        head = remote.head()
        # Never a force-push: every earlier remote head is in the new history.
        assert all(
            subprocess.run(
                ["git", "merge-base", "--is-ancestor", old, head], cwd=remote.bare
            ).returncode
            == 0
            for old in heads
        )
        heads.append(head)
        assert daemon.health()[0] == 200, daemon.health()

    return config, port, check, remote


def test_kill9_during_api_writes_git_source(tmp_path: Path) -> None:
    rng = random.Random(seed())
    config, port, check, remote = git_setup(tmp_path)
    with running(config, port, tmp_path / "daemon.log") as daemon:
        out = drive(daemon, rng, check)
    print(f"git source: {out}")
    assert out.acked + out.refused + out.cut == WRITES
    # One commit per applied change: none lost, none doubled.
    actions = [m for m in remote.messages(10 * WRITES) if "Reconciler-Action:" in m]
    assert len(actions) == out.acked + out.applied_cut


def test_temp_files_left_by_a_killed_write_are_removed_at_start(tmp_path: Path) -> None:
    """What a kill between the temp file's write and its rename leaves is swept at the
    next start; other hidden files (an editor's) are not ours and stay."""
    tasks = tmp_path / "tasks"
    (tasks / "sub").mkdir(parents=True)
    (tasks / "web.hcl").write_text(task_hcl("web"))
    (tasks / f"{TEMP_PREFIX}0123456789ab").write_text('task {\n  name = "half')
    (tasks / "sub" / f"{TEMP_PREFIX}ba9876543210").write_text("")
    (tasks / ".web.hcl.swp").write_text("an editor's")
    port = free_port()
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(config_text(port, 'source "directory" {\n  path = "tasks"\n}\n'))
    with running(config, port, tmp_path / "daemon.log") as daemon:
        assert temp_files(tasks) == []
        assert (tasks / ".web.hcl.swp").exists()
        assert daemon.tasks() == {"web": True}
        assert daemon.stop() == 0


CLIENTS = 8
ROUNDS = 3


@dataclass
class Cut:
    name: str
    before: State
    after: State


def concurrent_round(
    daemon: Daemon, rng: random.Random, model: dict[str, bool], round_: int
) -> tuple[int, list[Cut]]:
    """CLIENTS clients write their own tasks at once (so that writes share batches) until
    a kill -9 at a random moment; returns the acknowledged count and the writes the kill
    cut off. `model` is updated with every acknowledged write."""
    lock = threading.Lock()
    acked = 0
    cuts: list[Cut] = []
    failures: list[str] = []
    dead = threading.Event()
    seeds = [rng.randrange(1 << 30) for _ in range(CLIENTS)]

    def client(c: int) -> None:
        nonlocal acked
        mine = random.Random(seeds[c])
        created = 0
        while not dead.is_set():
            with lock:
                names = sorted(n for n in model if n.startswith(f"c{c}-"))
            roll = mine.random()
            if len(names) < 2 or roll < 0.4:
                created += 1
                name, enabled = f"c{c}-r{round_}-{created:03d}", mine.random() < 0.8
                method, path, body = "POST", "/v1/tasks", task_body(name, enabled)
                before, after = None, enabled
            elif roll < 0.8:
                name = mine.choice(names)
                with lock:
                    before = model[name]
                method, path, body, after = (
                    "PATCH",
                    f"/v1/tasks/{name}",
                    {"enabled": not before},
                    not before,
                )
            else:
                name = mine.choice(names)
                with lock:
                    before = model[name]
                method, path, body, after = "DELETE", f"/v1/tasks/{name}", None, None
            try:
                status, answer = daemon.call(method, path, body)
            except (OSError, http.client.HTTPException):
                with lock:
                    cuts.append(Cut(name, before, after))
                return
            with lock:
                if status // 100 != 2:
                    failures.append(f"{method} {path}: {status} {answer}")
                    return
                acked += 1
                _set(model, name, after)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    target = rng.randint(30, 90)
    wait_for(
        lambda: acked >= target or bool(failures), timeout=120, what=f"{target} acknowledged writes"
    )
    daemon.kill9()
    dead.set()
    for t in threads:
        t.join(60)
    assert not failures, failures
    return acked, cuts


def drive_concurrently(daemon: Daemon, rng: random.Random, check: Check) -> tuple[int, int]:
    """ROUNDS rounds of concurrent writers ended by kill -9; after each, a restart and
    `check` against the model. Returns (acknowledged, cut off but found applied)."""
    model: dict[str, bool] = {}
    acked = applied = 0
    for round_ in range(ROUNDS):
        n, cuts = concurrent_round(daemon, rng, model, round_)
        acked += n
        daemon.proc.wait(30)  # type: ignore[union-attr]
        daemon.start()
        live = daemon.tasks()
        for cut in cuts:
            found = live.get(cut.name)
            assert found in (cut.before, cut.after), f"{cut} cut off by the kill: found {found}"
            if found != cut.before:
                applied += 1
            _set(model, cut.name, found)
        check(daemon, model)
    assert daemon.stop() == 0
    return acked, applied


def test_kill9_during_concurrent_writes_directory_source(tmp_path: Path) -> None:
    rng = random.Random(seed())
    config, port, check = directory_setup(tmp_path)
    with running(config, port, tmp_path / "daemon.log") as daemon:
        acked, applied = drive_concurrently(daemon, rng, check)
    print(f"directory source, {CLIENTS} clients: {acked} acknowledged, {applied} cut and applied")
    assert acked >= ROUNDS * 30


def test_kill9_during_concurrent_writes_git_source(tmp_path: Path) -> None:
    rng = random.Random(seed())
    config, port, check, remote = git_setup(tmp_path)
    with running(config, port, tmp_path / "daemon.log") as daemon:
        acked, applied = drive_concurrently(daemon, rng, check)
    print(f"git source, {CLIENTS} clients: {acked} acknowledged, {applied} cut and applied")
    # One commit per applied change: none lost, none doubled, none left unpushed.
    actions = [m for m in remote.messages(10 * acked) if "Reconciler-Action:" in m]
    assert len(actions) == acked + applied
