"""The daemon as users run it: `reconciler start` in its own process, talked to over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from helpers import free_port, task_hcl, wait_for, without_consul, write_atomic
from serverkit import call, daemon, up


def test_start_follow_files_write_back_and_stop(tmp_path: Path) -> None:
    port = free_port()
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "web.hcl").write_text(task_hcl("web"))
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(
        f'port = {port}\nworking_dir = "state"\nsource "directory" {{\n  path = "tasks"\n}}\n'
    )
    with daemon(config) as proc:
        wait_for(lambda: up(port), timeout=30, what="the API")
        status, body = call(port, "GET", "/v1/tasks")
        assert status == 200 and [t["name"] for t in body["tasks"]] == ["web"]

        # A file edit is live without a restart.
        write_atomic(tasks / "api.hcl", task_hcl("api"))
        wait_for(lambda: call(port, "GET", "/v1/tasks/api")[0] == 200, what="new file")

        # An API change is a file change. POST initialises the task's Terraform workspace
        # first, so its module must exist (relative to the task directory).
        (tmp_path / "m").mkdir()
        (tmp_path / "m" / "main.tf").write_text('variable "services" {\n  type = any\n}\n')
        db = {"name": "db", "module": "../m", "condition": {"services": {"names": ["db"]}}}
        status, body = call(port, "POST", "/v1/tasks", {"task": db})
        assert status == 201, body
        assert 'name   = "db"' in (tasks / "db.hcl").read_text()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0

    # Restart: the same registry, API-created task included.
    with daemon(config) as proc:
        wait_for(lambda: up(port), timeout=30, what="the API after restart")
        names = sorted(t["name"] for t in call(port, "GET", "/v1/tasks")[1]["tasks"])
        assert names == ["api", "db", "web"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    assert (tmp_path / "state" / ".reconciler" / "parse-cache.json").exists()


def test_sighup_reloads_tasks_written_in_the_configuration(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    base = f'port = {port}\nworking_dir = "state"\n'
    config.write_text(base + task_hcl("inline"))
    with daemon(config) as proc:
        wait_for(lambda: up(port), timeout=30, what="the API")
        assert call(port, "GET", "/v1/tasks/inline")[0] == 200
        # A configuration task changed through the API: the file stays as it is.
        before = config.read_bytes()
        assert call(port, "PATCH", "/v1/tasks/inline", {"enabled": False})[0] == 200
        assert call(port, "GET", "/v1/tasks/inline")[1]["task"]["enabled"] is False
        assert config.read_bytes() == before
        config.write_text(base + task_hcl("renamed"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: call(port, "GET", "/v1/tasks/renamed")[0] == 200, what="reload")
        # A deleted task is shown until its Terraform run (the start-up run) ends.
        wait_for(lambda: call(port, "GET", "/v1/tasks/inline")[0] == 404, what="inline to go")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0


def test_git_source_commits_api_changes(tmp_path: Path) -> None:
    def git(*args: str, cwd: Path = tmp_path) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
        ).stdout

    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote))
    human = tmp_path / "human"
    git("clone", "-q", str(remote), str(human))
    git("config", "user.email", "h@example.com", cwd=human)
    git("config", "user.name", "human", cwd=human)
    (human / "tasks").mkdir()
    (human / "tasks" / "web.hcl").write_text(task_hcl("web"))
    git("add", "-A", cwd=human)
    git("commit", "-qm", "web", cwd=human)
    git("push", "-q", "origin", "main", cwd=human)

    port = free_port()
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(
        f'port = {port}\nworking_dir = "state"\n'
        'source "git" {\n  url = "remote.git"\n  path = "tasks"\n  push = true\n'
        '  webhook_secret = "s3cret"\n}\n'
    )
    with daemon(config) as proc:
        wait_for(lambda: up(port), timeout=30, what="the API")
        assert call(port, "GET", "/v1/tasks/web")[0] == 200
        status, body = call(port, "PATCH", "/v1/tasks/web", {"enabled": False})
        assert status == 200, body
        log = git("log", "-1", "--format=%B", "main", cwd=remote)
        assert "Reconciler-Action: update" in log
        source = call(port, "GET", "/v1/status/tasks/web")[1]["web"]["source"]
        assert source["file"] == "tasks/web.hcl"
        assert source["revision"] == git("rev-parse", "main", cwd=remote).strip()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert os.path.isdir(tmp_path / "state" / ".reconciler" / "git")
