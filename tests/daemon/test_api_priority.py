"""API work goes ahead of background runs: `reconciler start` as a child process with one
Terraform worker, kept busy by the start-up applies of slow tasks; a POST issued then
answers after at most the command in flight (one for its init, one for its validate),
not after the queue. (Background runs hold a scheduler slot each, one per worker; API work
takes none, and the pool serves it first: tests/runner/test_pool.py.)"""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from helpers import task_hcl, wait_for
from serverkit import daemon_process, wait_listening

MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "modules"
TASKS = 6


def lines(tmp_path: Path, word: str) -> int:
    """How many applies have started / ended: the sleep module logs both in its workspace."""
    return sum(
        log.read_text().split().count(word) for log in (tmp_path / "state").glob("*/runs.log")
    )


def test_a_post_during_background_runs_waits_for_at_most_the_command_in_flight(
    tmp_path: Path,
) -> None:
    shutil.copytree(MODULES / "sleep", tmp_path / "modules" / "sleep")
    (tmp_path / "tasks").mkdir()
    for i in range(TASKS):
        (tmp_path / "tasks" / f"t{i}.hcl").write_text(
            task_hcl(f"t{i}", module="../modules/sleep", variables="{ seconds = 1 }")
        )
    extra = 'driver "terraform" {\n  workers = 1\n}\n'
    with daemon_process(tmp_path, extra) as (proc, port):
        wait_listening(port, proc)
        log = tmp_path / "daemon.log"
        # The only worker is busy with the start-up's applies; the rest queue behind it.
        wait_for(lambda: lines(tmp_path, "start") >= 1, timeout=120, what=log.read_text())
        started = lines(tmp_path, "start")
        body = {
            "task": {
                "name": "api",
                "module": "../modules/sleep",
                "variables": {"seconds": "1"},
                "condition": {"services": {"names": ["web"]}},
            }
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/tasks",
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                assert response.status == 201
        except urllib.error.HTTPError as err:
            raise AssertionError(err.read().decode()) from err
        # Its init and its validate each waited for at most the command in flight: at
        # most two more applies began meanwhile, and most of the start-up still queues
        # (waiting for the queue would have let all six start).
        assert lines(tmp_path, "start") <= started + 2
        assert lines(tmp_path, "start") < TASKS
        proc.terminate()
        assert proc.wait(60) == 0
