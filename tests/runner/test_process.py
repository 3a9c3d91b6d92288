"""Child processes: output streamed line by line, timeouts and cancellation stop the whole
process group, environment fixes."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest
from helpers import async_wait_for

from reconciler.runner.process import ProcessRunner, child_environment

pytestmark = pytest.mark.anyio


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_output_is_captured_and_streamed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    lines: list[tuple[str, str]] = []
    result = await ProcessRunner().run(
        ["sh", "-c", "echo one; echo two >&2; echo three; exit 4"],
        cwd=tmp_path,
        log_level=logging.INFO,
        log_prefix="job: ",
        log_file=tmp_path / "out.log",
        on_line=lambda stream, line: lines.append((stream, line)),
    )
    assert result.returncode == 4 and not result.timed_out
    assert result.stdout == "one\nthree" and result.stderr == "two"
    assert sorted(lines) == [("stderr", "two"), ("stdout", "one"), ("stdout", "three")]
    assert "job: three" in caplog.text
    assert sorted((tmp_path / "out.log").read_text().split()) == ["one", "three", "two"]


async def test_a_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    runner = ProcessRunner(kill_grace=0.5)
    # The grandchild ignores SIGTERM and holds no pipe: only a group SIGKILL ends it.
    script = "trap '' TERM; (trap '' TERM; exec sleep 60) >/dev/null 2>&1 & echo $!; wait"
    result = await runner.run(["sh", "-c", script], cwd=tmp_path, timeout=0.5)
    assert result.timed_out
    grandchild = int(result.stdout.split()[0])
    await async_wait_for(lambda: not alive(grandchild), timeout=5, what="the grandchild to die")
    assert runner.running == 0


async def test_cancelling_a_run_kills_its_group(tmp_path: Path) -> None:
    runner = ProcessRunner(kill_grace=0.2)
    pids: list[int] = []
    job = asyncio.ensure_future(
        runner.run(
            ["sh", "-c", "sleep 60 & echo $!; wait"],
            cwd=tmp_path,
            on_line=lambda _, line: pids.append(int(line)),
        )
    )
    await async_wait_for(lambda: bool(pids))
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    await async_wait_for(lambda: not alive(pids[0]), timeout=5, what="sleep to die")
    assert runner.running == 0


async def test_stop_all(tmp_path: Path) -> None:
    runner = ProcessRunner()
    jobs = [
        asyncio.ensure_future(runner.run(["sleep", "60"], cwd=tmp_path, timeout=120))
        for _ in range(3)
    ]
    await async_wait_for(lambda: runner.running == 3)
    await runner.stop_all(grace=1)
    results = await asyncio.gather(*jobs)
    assert all(r.returncode != 0 for r in results)


def test_child_environment_drops_config_files_that_do_not_exist(tmp_path: Path) -> None:
    real = tmp_path / "terraformrc"
    real.write_text("")
    env = child_environment(
        {"TF_CLI_CONFIG_FILE": str(tmp_path / "missing"), "PATH": "/bin"}, {"X": "1"}
    )
    assert env == {"PATH": "/bin", "X": "1"}
    assert child_environment({"TF_CLI_CONFIG_FILE": str(real)})["TF_CLI_CONFIG_FILE"] == str(real)


async def test_the_shim_is_a_working_terraform(tmp_path: Path) -> None:
    result = await ProcessRunner().run(
        [sys.executable, "-m", "reconciler.runner.tfshim", "version"],
        cwd=tmp_path,
        env=child_environment(),
    )
    assert result.returncode == 0, result.output
    assert result.stdout.startswith("Terraform v1.")
    assert "CLI configuration" not in result.stderr
