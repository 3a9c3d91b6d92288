"""A CTS configuration as it is, through `reconciler start`: tasks written in the
configuration file are disabled and deleted through the API and the CLI, and the change
survives a restart without the file being touched; an edit of the task in the file ends
the change. With no source block, `task create` writes the task into the implicit
directory under the working directory, and it is there after a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from clikit import json_of, ok, run_cli
from helpers import free_port, wait_for
from serverkit import reconciler_start

CONFIG_TASK = """
task {
  name   = "cfg"
  module = "./mod"
  condition "schedule" {
    cron = "0 0 1 1 *"
  }
}
"""
MODULE = (
    'resource "terraform_data" "x" {\n  input = "x"\n}\nvariable "services" {\n  type = any\n}\n'
)


def write_config(root: Path, port: int, task: str = CONFIG_TASK) -> Path:
    """A CTS-style configuration: no source block, a task in the file, no Consul."""
    (root / "mod").mkdir(exist_ok=True)
    (root / "mod" / "main.tf").write_text(MODULE)
    (root / "catalog").mkdir(exist_ok=True)  # no Consul: an empty embedded catalog
    config = root / "config.hcl"
    config.write_text(f'port = {port}\nworking_dir = "sync-tasks"\n{task}')
    return config


def daemon(root: Path, port: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
    return reconciler_start(root, port)


def call(port: int, method: str, path: str, body: object | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, method=method)
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read() or b"{}")


def statuses(port: int) -> dict[str, Any]:
    result: dict[str, Any] = call(port, "GET", "/v1/status/tasks")
    return result


def cli_env(port: int) -> dict[str, str]:
    return {"RECONCILER_ADDRESS": f"http://127.0.0.1:{port}"}


def test_a_configuration_task_disabled_through_the_api_stays_disabled(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    before = config.read_bytes()
    with daemon(tmp_path, port):
        assert call(port, "PATCH", "/v1/tasks/cfg", {"enabled": False}) == {}
        status = statuses(port)["cfg"]
        assert status["enabled"] is False
        override = status["override"]
        assert override["enabled"] is False and override["file"].endswith("config.hcl:4")
        assert "disabled through the API" in override["reason"]
        table = ok(run_cli("status", env=cli_env(port))).stdout
        assert "Differs from its file:" in table and "disabled through the API" in table
    assert config.read_bytes() == before  # the configuration file is never written
    store = tmp_path / "sync-tasks" / ".reconciler" / "config-overrides.json"
    assert store.stat().st_mode & 0o777 == 0o600

    with daemon(tmp_path, port):
        assert statuses(port)["cfg"]["enabled"] is False  # the restart kept it
        # -auto-approve: whether the start-up run applied before the disable is a race,
        # so the plan may or may not have changes to approve.
        ok(run_cli("task", "enable", "-auto-approve", "cfg", env=cli_env(port)))
        assert statuses(port)["cfg"]["enabled"] is True
        assert statuses(port)["cfg"]["override"] is None  # as the file says again
        ok(run_cli("task", "disable", "cfg", env=cli_env(port)))
        assert statuses(port)["cfg"]["enabled"] is False

    with daemon(tmp_path, port) as proc:
        assert statuses(port)["cfg"]["enabled"] is False
        # An edit of the task in its file: the file wins again, with a log line.
        config.write_text(config.read_text().replace('"0 0 1 1 *"', '"0 0 2 1 *"'))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: statuses(port)["cfg"]["enabled"] is True, timeout=60, what="the file")
        assert statuses(port)["cfg"]["override"] is None
        log = (tmp_path / "daemon.log").read_text()
        assert "task cfg changed in" in log and "the file wins" in log


def test_a_deleted_configuration_task_stays_deleted_until_its_file_changes(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    with daemon(tmp_path, port):
        ok(run_cli("task", "delete", "-auto-approve", "cfg", env=cli_env(port)))
        wait_for(lambda: "cfg" not in statuses(port), timeout=60, what="the deletion")
    with daemon(tmp_path, port):
        assert "cfg" not in statuses(port)
    config.write_text(config.read_text().replace('"0 0 1 1 *"', '"0 0 3 1 *"'))
    with daemon(tmp_path, port):  # edited while the daemon was stopped
        assert "cfg" in statuses(port)
        assert "task cfg changed in" in (tmp_path / "daemon.log").read_text()


def test_task_create_without_a_source_block_is_kept_across_restarts(tmp_path: Path) -> None:
    port = free_port()
    write_config(tmp_path, port)
    task_file = tmp_path / "new.hcl"
    task_file.write_text(
        'task {\n  name = "created"\n  module = "./mod"\n'
        '  condition "schedule" {\n    cron = "0 0 1 1 *"\n  }\n}\n'
    )
    implicit = tmp_path / "sync-tasks" / "tasks.d"
    with daemon(tmp_path, port):
        ok(run_cli("task", "create", f"-task-file={task_file}", "-auto-approve", env=cli_env(port)))
        assert (implicit / "created.hcl").is_file()
        sources = call(port, "GET", "/v1/status")["sources"]
        [details] = [s["details"] for s in sources.values() if "details" in s]
        assert details["path"] == str(implicit) and "no source block" in details["note"]
        assert (
            "tasks created through the API are written to" in (tmp_path / "daemon.log").read_text()
        )
    with daemon(tmp_path, port):
        tasks = json_of(run_cli("task", "list", "-json", env=cli_env(port)))["tasks"]
        assert sorted(t["name"] for t in tasks) == ["cfg", "created"]
    assert os.stat(implicit).st_mode & 0o777 == 0o700
