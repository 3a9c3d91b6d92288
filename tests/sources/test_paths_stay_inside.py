"""Reads and writes stay inside their directories, through `reconciler start`:
- a task file in a directory source that is a symlink to a file outside the source is not
  read: a file error that quotes nothing of it, and its content is nowhere in the status
  or the log;
- a pushed commit that turns a git source's `path` into a symlink out of the clone makes
  the next API write fail with nothing written outside the clone."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from gitkit import Remote, git
from helpers import free_port, task_hcl, wait_for, without_consul
from serverkit import reconciler_start

SECRET = "TOPSECRET-7f3a-credentials"


def call(port: int, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data,
        method=method,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def start(root: Path, port: int, config: str) -> AbstractContextManager[object]:
    (root / "config.hcl").write_text(config)
    return reconciler_start(root, port)


def test_a_task_file_linked_outside_the_source_is_not_read(tmp_path: Path) -> None:
    port = free_port()
    without_consul(tmp_path)
    (tmp_path / "mod").mkdir()
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "web.hcl").write_text(task_hcl("web", module="../mod"))
    secret = tmp_path / "secret.txt"
    secret.write_text(f'task {{\n  name = "{SECRET}"\n  module = "{SECRET}"\n}}\n{SECRET}\n')
    (tasks / "leak.hcl").symlink_to(secret)
    inside = tasks / "shared"
    inside.mkdir()
    (inside / "api.hcl").write_text(task_hcl("api", module="../../mod"))
    (tasks / "linked-inside.hcl").symlink_to(inside / "api.hcl")  # a link inside is fine
    config = f'port = {port}\nworking_dir = "state"\nsource "directory" {{\n  path = "tasks"\n}}\n'
    with start(tmp_path, port, config):
        _, status = call(port, "GET", "/v1/status")
        text = json.dumps(status)
        assert "outside the task directory" in text, text
        assert SECRET not in text
        assert call(port, "GET", "/v1/tasks/web")[0] == 200
        tasks_answer = json.dumps(call(port, "GET", "/v1/status/tasks")[1])
        assert SECRET not in tasks_answer
    assert SECRET not in (tmp_path / "daemon.log").read_text()


def test_a_symlinked_git_path_writes_nothing_outside_the_clone(tmp_path: Path) -> None:
    port = free_port()
    without_consul(tmp_path)
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "main.tf").write_text('variable "services" {\n  type = any\n}\n')
    remote = Remote.create(tmp_path, {"tasks/web.hcl": task_hcl("web", module="../../mod")})
    outside = tmp_path / "outside"
    outside.mkdir()
    config = (
        f'port = {port}\nworking_dir = "state"\n'
        f'source "git" {{\n  url = "{remote.url}"\n  path = "tasks"\n  push = true\n'
        '  poll_interval = "1s"\n}\n'
    )
    with start(tmp_path, port, config):
        assert call(port, "GET", "/v1/tasks/web")[0] == 200
        # A commit replaces the tasks folder by a link out of the clone.
        git(remote.human, "rm", "-q", "-r", "tasks")
        (remote.human / "tasks").symlink_to(outside)
        git(remote.human, "add", "tasks")
        git(remote.human, "commit", "-q", "-m", "tasks is a link now")
        remote.push()
        wait_for(lambda: call(port, "GET", "/v1/tasks/web")[0] == 404, 60, "the pull")
        body = {
            "task": {
                "name": "api",
                "module": str(tmp_path / "mod"),
                "condition": {"schedule": {"cron": "0 0 1 1 *"}},
            }
        }
        status, answer = call(port, "POST", "/v1/tasks", body)
        assert status >= 400, answer
        assert "symbolic link" in json.dumps(answer), answer
    assert list(outside.iterdir()) == []
