"""`reconciler task create|enable|disable|delete|list` and `reconciler status` against a real
daemon (`reconciler start` in a child process, one for the module) with real Terraform.

The daemon requires an API token, so every call also shows the token being sent. Task
files live in their own directory beside a copy of the fixture modules, away from the
daemon's task directory: a relative module path only works if the CLI resolved it against
the task file's directory.
"""

from __future__ import annotations

import difflib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clikit import json_of, ok, run_cli
from helpers import wait_for
from serverkit import daemon_process, wait_listening

from reconciler.taskfiles.load import load_task_file

TOKEN = "cli-test-token"
MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "modules"


@dataclass
class Daemon:
    root: Path
    address: str

    @property
    def env(self) -> dict[str, str]:
        return {"RECONCILER_ADDRESS": self.address, "RECONCILER_TOKEN": TOKEN}

    def cli(self, *args: str, stdin: str = "") -> Any:
        return run_cli(*args, env=self.env, stdin=stdin)

    def task_file(self, name: str, extra: str = "", module: str = "services-file") -> Path:
        path = self.root / "files" / f"{name}.hcl"
        path.write_text(
            "task {\n"
            f'  name = "{name}"\n'
            f'  module = "./modules/{module}"\n'
            f"{extra}"
            '  condition "services" {\n    names = ["web"]\n  }\n'
            "}\n"
        )
        return path

    def tasks(self) -> dict[str, dict[str, Any]]:
        return {t["name"]: t for t in json_of(self.cli("task", "list", "-json"))["tasks"]}

    def workspace(self, name: str) -> Path:
        return self.root / "state" / name


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("daemon")
    (root / "files").mkdir()
    shutil.copytree(MODULES, root / "files" / "modules")
    with daemon_process(root, f'api_token = "{TOKEN}"\n') as (proc, port):
        wait_listening(port, proc)
        yield Daemon(root, f"http://127.0.0.1:{port}")


def test_create_with_auto_approve_writes_the_file_and_applies(daemon: Daemon) -> None:
    path = daemon.task_file("created", 'description = "made by the CLI"\n')
    result = ok(daemon.cli("task", "create", f"-task-file={path}", "-auto-approve"))
    out = result.stdout
    assert "==> Inspecting changes to resource if creating task 'created'..." in out
    assert "    Request ID: " in out and "    Request Payload:" in out
    assert "terraform_data.services will be created" in out  # the plan
    assert "Do you want to perform these actions" not in out  # no prompt
    assert "==> Task 'created' created" in out
    # Quiet standard error when it is not a terminal: no progress line.
    assert result.stderr == ""

    written = load_task_file((daemon.root / "tasks" / "created.hcl").read_bytes(), "created.hcl")
    module = (daemon.root / "files" / "modules" / "services-file").resolve()
    (loaded,) = written.tasks
    assert loaded.spec.module == str(module)  # resolved against the task file's directory
    assert loaded.spec.description == "made by the CLI"
    assert (daemon.workspace("created") / "services.txt").exists()  # it applied
    task = daemon.tasks()["created"]
    assert task["module"] == str(module) and task["description"] == "made by the CLI"


def test_create_answered_no_creates_nothing(daemon: Daemon) -> None:
    path = daemon.task_file("declined")
    result = ok(daemon.cli("task", "create", f"-task-file={path}", stdin="no\n"))
    assert "terraform_data.services will be created" in result.stdout
    assert "==> Creating the task will perform the actions described above." in result.stdout
    assert "Do you want to perform these actions for 'declined'?" in result.stdout
    assert "Only 'yes' will be accepted to approve" in result.stdout
    assert "Cancelled creating task 'declined'" in result.stdout
    assert "==> Task 'declined' created" not in result.stdout
    assert not (daemon.root / "tasks" / "declined.hcl").exists()
    assert not daemon.workspace("declined").exists()
    assert "declined" not in daemon.tasks()


def test_create_answered_yes_sends_variable_files_as_variables(daemon: Daemon) -> None:
    (daemon.root / "files" / "vars").mkdir()
    (daemon.root / "files" / "vars" / "out.tfvars").write_text('output_file = "from-file.txt"\n')
    path = daemon.task_file("with_vars", 'variable_files = ["vars/out.tfvars"]\n')
    result = ok(daemon.cli("task", "create", f"-task-file={path}", stdin="yes\n"))
    assert "==> Creating and running task 'with_vars'..." in result.stdout
    assert "==> Task 'with_vars' created" in result.stdout
    written = (daemon.root / "tasks" / "with_vars.hcl").read_text()
    assert "variable_files" not in written and "from-file.txt" in written
    assert (daemon.workspace("with_vars") / "from-file.txt").exists()
    assert daemon.tasks()["with_vars"]["variables"] == {"output_file": '"from-file.txt"'}


def test_enable_disable_and_delete(daemon: Daemon) -> None:
    path = daemon.task_file("switched", "enabled = false\n")
    ok(daemon.cli("task", "create", f"-task-file={path}", "-auto-approve"))
    assert daemon.tasks()["switched"]["enabled"] is False
    assert not (daemon.workspace("switched") / "services.txt").exists()  # not applied

    enabled = ok(daemon.cli("task", "enable", "switched", stdin="yes\n"))
    assert "==> Inspecting changes to resource if enabling 'switched'..." in enabled.stdout
    assert "terraform_data.services will be created" in enabled.stdout
    assert "==> Enabling the task will perform the actions described above." in enabled.stdout
    assert "==> Enabling and running 'switched'..." in enabled.stdout
    assert "==> 'switched' enable complete!" in enabled.stdout
    assert daemon.tasks()["switched"]["enabled"] is True
    assert (daemon.workspace("switched") / "services.txt").exists()  # run now

    disabled = ok(daemon.cli("task", "disable", "switched"))
    assert "==> Waiting to disable 'switched'..." in disabled.stdout
    assert "==> 'switched' disable complete!" in disabled.stdout
    assert "Enter a value" not in disabled.stdout  # no prompt
    assert daemon.tasks()["switched"]["enabled"] is False
    assert "enabled = false" in (daemon.root / "tasks" / "switched.hcl").read_text()

    # Nothing left to apply: enabling again needs no approval.
    again = ok(daemon.cli("task", "enable", "switched"))
    assert "No changes." in again.stdout and "Enter a value" not in again.stdout
    assert "==> 'switched' enable complete!" in again.stdout
    assert daemon.tasks()["switched"]["enabled"] is True

    kept = ok(daemon.cli("task", "delete", "switched", stdin="no\n"))
    assert "==> Do you want to delete 'switched'?" in kept.stdout
    assert "Deleting a task will not destroy the infrastructure managed by the task." in (
        kept.stdout
    )
    assert "Cancelled deleting task 'switched'" in kept.stdout
    assert "switched" in daemon.tasks()

    deleted = ok(daemon.cli("task", "delete", "switched", stdin="yes\n"))
    assert "==> Marking task 'switched' for deletion..." in deleted.stdout
    assert "has been marked for deletion and will be deleted when not running" in deleted.stdout
    wait_for(lambda: "switched" not in daemon.tasks(), timeout=30, what="the deletion")
    assert not (daemon.root / "tasks" / "switched.hcl").exists()
    # Deleting a task destroys nothing its module made.
    assert (daemon.workspace("switched") / "services.txt").exists()


@pytest.mark.parametrize(
    "args",
    [
        ("task", "enable", "nope"),
        ("task", "disable", "nope"),
        ("task", "delete", "-auto-approve", "nope"),
        ("status", "nope"),
    ],
)
def test_an_unknown_task_gets_the_api_message(daemon: Daemon, args: tuple[str, ...]) -> None:
    result = daemon.cli(*args)
    assert result.returncode == 11, result
    assert "404 Not Found: a task with the name 'nope' does not exist" in result.stderr
    assert "(Request ID: " in result.stderr
    assert "Traceback" not in result.stderr


def test_a_task_that_exists_is_not_created_again(daemon: Daemon) -> None:
    path = daemon.task_file("twice")
    ok(daemon.cli("task", "create", f"-task-file={path}", "-auto-approve"))
    second = daemon.cli("task", "create", f"-task-file={path}", "-auto-approve")
    assert second.returncode == 11
    assert "==> Error: unable to generate plan for 'twice'" in second.stderr
    assert "400 Bad Request: task with name twice already exists" in second.stderr


def test_list_and_status_as_tables_and_json(daemon: Daemon) -> None:
    path = daemon.task_file("listed")
    ok(daemon.cli("task", "create", f"-task-file={path}", "-auto-approve"))
    module = str((daemon.root / "files" / "modules" / "services-file").resolve())

    lines = ok(daemon.cli("task", "list")).stdout.splitlines()
    assert lines[0].split() == ["NAME", "ENABLED", "CONDITION", "MODULE"]
    row = next(line for line in lines if line.startswith("listed "))
    assert row.split() == ["listed", "true", "services:", "web", module]
    listed = json_of(daemon.cli("task", "list", "-json"))
    assert "request_id" in listed and "listed" in {t["name"] for t in listed["tasks"]}

    lines = ok(daemon.cli("status")).stdout.splitlines()
    assert lines[0].split() == ["TASK", "STATUS", "ENABLED", "RUNNING", "SOURCE"]
    row = next(line for line in lines if line.startswith("listed "))
    assert row.split() == ["listed", "successful", "true", "false", "tasks/listed.hcl:1"]
    assert any(line.endswith("disabled") and " tasks: " in line for line in lines)
    one = json_of(daemon.cli("status", "-json", "listed"))
    assert list(one) == ["listed"] and one["listed"]["status"] == "successful"
    assert "listed" in json_of(daemon.cli("status", "-json"))


def test_the_token_from_the_flag_or_the_environment(daemon: Daemon) -> None:
    env = {"RECONCILER_ADDRESS": daemon.address}
    missing = run_cli("task", "list", env=env)
    assert missing.returncode == 11
    assert "401 Unauthorized: this API requires a token" in missing.stderr
    assert "-token or RECONCILER_TOKEN" in missing.stderr
    ok(run_cli("task", "list", f"-token={TOKEN}", env=env))
    ok(run_cli("task", "list", env={**env, "RECONCILER_TOKEN": TOKEN}))
    # The flag wins over the environment.
    wrong = run_cli("task", "list", "-token=wrong", env={**env, "RECONCILER_TOKEN": TOKEN})
    assert wrong.returncode == 11 and "the token is not valid" in wrong.stderr


def test_the_address_from_the_flag_then_reconciler_then_cts_variables(
    daemon: Daemon, tmp_path: Path
) -> None:
    closed = "http://127.0.0.1:9"
    token = {"RECONCILER_TOKEN": TOKEN}
    ok(run_cli("task", "list", env={**token, "CTS_ADDRESS": daemon.address}))
    both = {**token, "RECONCILER_ADDRESS": daemon.address, "CTS_ADDRESS": closed}
    ok(run_cli("task", "list", env=both))
    flagged = run_cli("task", "list", f"-http-addr={closed}", env=both)
    assert flagged.returncode == 11 and closed in flagged.stderr
    # Without a scheme, http is meant.
    bare = daemon.address.removeprefix("http://")
    ok(run_cli("task", "list", f"-http-addr={bare}", env=token))


def test_update_shows_the_plan_then_changes_only_what_differs(daemon: Daemon) -> None:
    path = daemon.task_file("updated", 'description = "first"\n')
    ok(daemon.cli("task", "create", f"-task-file={path}", "-auto-approve"))
    written = daemon.root / "tasks" / "updated.hcl"
    before = written.read_text()
    path = daemon.task_file(
        "updated", 'description = "first"\nvariables = { output_file = "second.txt" }\n'
    )

    declined = ok(daemon.cli("task", "update", f"-task-file={path}", stdin="no\n"))
    assert "Inspecting changes to resource if updating task 'updated'" in declined.stdout
    assert "must be replaced" in declined.stdout or "will be updated" in declined.stdout
    assert "Cancelled updating task 'updated'" in declined.stdout
    assert written.read_text() == before

    result = ok(daemon.cli("task", "update", f"-task-file={path}", "-auto-approve"))
    assert "==> Task 'updated' updated" in result.stdout
    after = written.read_text()
    delta = [d for d in difflib.ndiff(before.splitlines(), after.splitlines()) if d[0] in "+-"]
    assert delta == ["+   variables = {", '+     output_file = "second.txt"', "+   }"]
    assert (daemon.workspace("updated") / "second.txt").exists()  # it applied

    # A field the file leaves out is removed from the task.
    path = daemon.task_file("updated", 'variables = { output_file = "second.txt" }\n')
    ok(daemon.cli("task", "update", f"-task-file={path}", "-auto-approve"))
    assert "first" not in written.read_text()
    assert daemon.tasks()["updated"]["description"] == ""


def test_delete_with_destroy_shows_the_plan_asks_and_destroys(daemon: Daemon) -> None:
    made = daemon.root / "made-by-cli.txt"
    path = daemon.task_file(
        "builder", f"variables = {{ path = {json.dumps(str(made))} }}\n", module="made-file"
    )
    ok(daemon.cli("task", "create", f"-task-file={path}", "-auto-approve"))
    assert made.read_text() == "made"

    declined = ok(daemon.cli("task", "delete", "-destroy", "builder", stdin="no\n"))
    assert "terraform_data.file will be destroyed" in declined.stdout
    assert "Do you want to destroy and delete 'builder'?" in declined.stdout
    assert made.exists() and "builder" in daemon.tasks()

    result = ok(daemon.cli("task", "delete", "-destroy", "-auto-approve", "builder"))
    assert "==> Task 'builder' destroyed and deleted." in result.stdout
    assert not made.exists()
    assert "builder" not in daemon.tasks()
    assert not (daemon.root / "tasks" / "builder.hcl").exists()
    wait_for(lambda: not daemon.workspace("builder").exists(), timeout=30, what="the workspace")
