"""Recovery without a restart: the task directory removed and restored, the git remote
away and back, Terraform killed in the middle of an apply, a task's module deleted. Each
fault shows in /v1/health or /v1/status, nothing is lost meanwhile, and the daemon
recovers on its own once the fault is gone.

Retries of an unavailable source back off (about 1, 2, 4, 8 s), so the deadlines are
generous and a SIGHUP or a signed webhook call nudges a retry where the test can.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import signal
import urllib.request
from pathlib import Path

from daemonkit import MODULE_TF, Daemon, free_port, running
from gitkit import Remote, tasks
from helpers import task_hcl, wait_for, without_consul, write_atomic

DEADLINE = 60.0
FAKE_TERRAFORM = 'driver "terraform" {\n  path = "/bin/true"\n}\n'


def directory_config(tmp_path: Path, port: int, *, driver: str = FAKE_TERRAFORM) -> Path:
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(
        f'port = {port}\nworking_dir = "state"\n{driver}source "directory" {{\n'
        '  path = "tasks"\n}\n'
    )
    return config


def unhealthy_with(daemon: Daemon, text: str) -> bool:
    status, message = daemon.health()
    return status == 503 and text in message


def test_task_directory_removed_and_restored(tmp_path: Path) -> None:
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    for name in ("a", "b"):
        (tasks_dir / f"{name}.hcl").write_text(task_hcl(name))
    port = free_port()
    with running(directory_config(tmp_path, port), port, tmp_path / "daemon.log") as daemon:
        assert daemon.health()[0] == 200
        away = tmp_path / "tasks.away"
        os.rename(tasks_dir, away)
        wait_for(lambda: unhealthy_with(daemon, "does not exist"), DEADLINE, "health to say")
        assert daemon.tasks() == {"a": True, "b": True}  # the last good tasks stay
        sources = daemon.call("GET", "/v1/status")[1]["sources"]
        assert "does not exist" in sources["directory"]["error"]
        # Writes now fail and create nothing (no empty directory in the way of a restore).
        status, body = daemon.call("PATCH", "/v1/tasks/a", {"enabled": False})
        assert status == 409 and "disappeared" in body["error"]["message"], body
        new = {"name": "n", "module": "./m", "condition": {"services": {"names": ["web"]}}}
        status, body = daemon.call("POST", "/v1/tasks", {"task": new})
        assert status == 503 and "does not exist" in body["error"]["message"], body
        assert not tasks_dir.exists()

        os.rename(away, tasks_dir)
        daemon.signal(signal.SIGHUP)  # an immediate retry instead of the next backoff step
        wait_for(lambda: daemon.health()[0] == 200, DEADLINE, "recovery")
        assert daemon.tasks() == {"a": True, "b": True}
        # Watching again: a new file is live without a nudge, and writes work.
        write_atomic(tasks_dir / "c.hcl", task_hcl("c"))
        wait_for(lambda: "c" in daemon.tasks(), DEADLINE, "c to be live")
        status, body = daemon.call("PATCH", "/v1/tasks/a", {"enabled": False})
        assert status == 200, body
        assert daemon.tasks() == {"a": False, "b": True, "c": True}
        assert daemon.stop() == 0


def signed_webhook(daemon: Daemon, secret: str) -> int:
    body = b"{}"
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    request = urllib.request.Request(
        f"http://127.0.0.1:{daemon.port}/v1/source/webhook",
        data=body,
        method="POST",
        headers={"X-Signature": f"sha256={digest}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(response.status)


def test_git_remote_away_and_back(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, tasks("a", folder="tasks"))
    port = free_port()
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(
        f'port = {port}\nworking_dir = "state"\n{FAKE_TERRAFORM}source "git" {{\n'
        f'  url = "{remote.url}"\n  path = "tasks"\n  push = true\n'
        '  webhook_secret = "s3cret"\n  timeout = "10s"\n}\n'
    )
    with running(config, port, tmp_path / "daemon.log") as daemon:
        head = remote.head()
        away = tmp_path / "moved.git"
        os.rename(remote.bare, away)
        assert signed_webhook(daemon, "s3cret") // 100 == 2
        wait_for(lambda: unhealthy_with(daemon, "unavailable"), DEADLINE, "health to say")
        assert daemon.tasks() == {"a": True}
        details = daemon.call("GET", "/v1/status")[1]["sources"]["git"]
        assert details["error"] and details["details"]["last_error"]
        # An API change cannot be pushed: 503, and nothing changes anywhere.
        status, body = daemon.call("PATCH", "/v1/tasks/a", {"enabled": False})
        assert status == 503, body
        assert daemon.tasks() == {"a": True}

        os.rename(away, remote.bare)
        assert remote.head() == head
        remote.commit_and_push(tasks("b", folder="tasks"))
        assert signed_webhook(daemon, "s3cret") // 100 == 2
        wait_for(lambda: "b" in daemon.tasks(), DEADLINE, "the new commit to be followed")
        wait_for(lambda: daemon.health()[0] == 200, DEADLINE, "health")
        status, body = daemon.call("PATCH", "/v1/tasks/a", {"enabled": False})
        assert status == 200, body
        assert "enabled = false" in (remote.show("tasks/a.hcl") or "")
        assert daemon.stop() == 0


# --- Terraform ---------------------------------------------------------------------------

# Each apply appends "start" to runs.log in the workspace, waits while the file named by
# `hold` exists, then appends "end": the test decides when an apply may finish.
HOLD_MODULE = """variable "services" {
  type = any
}

variable "hold" {
  type = string
}

resource "terraform_data" "run" {
  triggers_replace = timestamp()

  provisioner "local-exec" {
    command = <<-EOT
      echo start >> runs.log
      while [ -e '${var.hold}' ]; do sleep 0.05; done
      echo end >> runs.log
    EOT
  }
}
"""


def children(pid: int) -> list[int]:
    """Direct child processes of `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: split after it.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def task_status(daemon: Daemon, name: str) -> dict[str, object]:
    status, body = daemon.call("GET", f"/v1/status/tasks/{name}?include=events")
    assert status == 200, body
    return dict(body[name])


def test_terraform_killed_mid_apply(tmp_path: Path) -> None:
    (tmp_path / "mods" / "hold").mkdir(parents=True)
    (tmp_path / "mods" / "hold" / "main.tf").write_text(HOLD_MODULE)
    hold = tmp_path / "hold"
    hold.write_text("")
    (tmp_path / "tasks").mkdir()
    # A schedule task: its start-up run is the daemon's own, which is not retried (a
    # Consul condition's first answer is a trigger, retried twice).
    (tmp_path / "tasks" / "slow.hcl").write_text(
        'task {\n  name = "slow"\n  module = "../mods/hold"\n'
        f'  variables = {{ hold = "{hold}" }}\n'
        '  condition "schedule" {\n    cron = "0 0 1 1 *"\n  }\n}\n'
    )
    port = free_port()
    runs_log = tmp_path / "state" / "slow" / "runs.log"
    config = directory_config(tmp_path, port, driver="")
    with running(config, port, tmp_path / "daemon.log") as daemon:
        # The start-up run: wait until its provisioner is running, then kill Terraform's
        # whole process group, as the OOM killer or an operator might.
        wait_for(lambda: runs_log.exists(), 120, "the start-up apply to start")
        # The Terraform process running the apply: a warm pool worker (or a shim) whose
        # provisioner is a child of it.
        [shim] = [
            p
            for p in children(daemon.pid)
            if (b"tfworker" in _cmdline(p) or b"tfshim" in _cmdline(p)) and children(p)
        ]
        pgid = os.getpgid(shim)
        assert pgid != os.getpgid(daemon.pid)
        os.killpg(pgid, signal.SIGKILL)

        wait_for(lambda: task_status(daemon, "slow")["status"] == "errored", DEADLINE, "errored")
        st = task_status(daemon, "slow")
        assert st["active"] is False
        [event] = st["events"]  # type: ignore[misc]
        assert event["success"] is False
        message = event["error"]["message"]
        assert message.startswith("terraform apply was killed by SIGKILL"), message
        wait_for(lambda: not group_alive(pgid), DEADLINE, "the killed group to be gone")
        assert daemon.health()[0] == 200

        # The next trigger works (a stale state lock or workspace does not block it).
        hold.unlink()
        status, body = daemon.call("PATCH", "/v1/tasks/slow?run=now", {"enabled": True})
        assert status == 200, body
        st = task_status(daemon, "slow")
        assert st["status"] == "successful", st
        events = st["events"]
        assert events[0]["success"] is True and events[1]["success"] is False  # type: ignore[index]
        assert runs_log.read_text().endswith("start\nend\n")
        assert daemon.stop() == 0


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_module_deleted_and_restored(tmp_path: Path) -> None:
    module = tmp_path / "mods" / "ok"
    module.mkdir(parents=True)
    (module / "main.tf").write_text(MODULE_TF)
    tasks_dir = tmp_path / "tasks"
    tasks_dir.mkdir()
    (tasks_dir / "m.hcl").write_text(task_hcl("m", module="../mods/ok"))
    port = free_port()
    config = directory_config(tmp_path, port, driver="")
    with running(config, port, tmp_path / "daemon.log") as daemon:
        wait_for(lambda: task_status(daemon, "m")["status"] == "successful", 120, "first run")
        kept = tmp_path / "kept"
        shutil.copytree(module, kept)
        shutil.rmtree(module)

        # A run fails with Terraform's error, shown in the task's status.
        status, body = daemon.call("PATCH", "/v1/tasks/m?run=now", {"enabled": True})
        assert status == 500, body
        st = task_status(daemon, "m")
        assert st["status"] == "errored"
        error = st["events"][0]["error"]["message"]  # type: ignore[index]
        assert "mods/ok" in error, error
        # A changed definition re-initialises: the init error is in the status.
        write_atomic(
            tasks_dir / "m.hcl", task_hcl("m", module="../mods/ok", description='"changed"')
        )
        wait_for(lambda: task_status(daemon, "m")["init_error"], DEADLINE, "the init error")
        assert "mods/ok" in str(task_status(daemon, "m")["init_error"])
        assert daemon.tasks() == {"m": True}  # the task stays

        shutil.copytree(kept, module)
        status, body = daemon.call("PATCH", "/v1/tasks/m?run=now", {"enabled": True})
        assert status == 200, body
        st = task_status(daemon, "m")
        assert st["init_error"] is None
        assert st["events"][0]["success"] is True  # type: ignore[index]
        assert daemon.stop() == 0
