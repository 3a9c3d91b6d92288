"""A full disk under the task files: an API write answers 507 with a clear message, the
old file is intact, nothing half-written is left, and writes work again once space is
freed. The disk is a small tmpfs mounted for the test (skipped, with the reason, where
mounting is not allowed)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemonkit import MODULE_TF, Daemon, free_port, running, temp_files
from gitkit import Remote
from helpers import task_hcl, wait_for, without_consul

SIZE = "1m"


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0755", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        reason = f"cannot mount a tmpfs here: {result.stderr.strip() or result.returncode}"
        print(reason)
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the file system to the last byte it accepts; returns the filler file."""
    filler = disk / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (1 << 16, 1 << 12, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as no_space:
        (disk / "probe").write_bytes(b"x" * 8192)
    assert no_space.value.errno == errno.ENOSPC
    (disk / "probe").unlink(missing_ok=True)
    return filler


def started_up(daemon: Daemon, name: str) -> bool:
    status, body = daemon.call("GET", f"/v1/status/tasks/{name}")
    return status == 200 and body[name]["status"] != "unknown"


def config_text(port: int, working_dir: Path, source: str) -> str:
    return (
        f'port = {port}\nworking_dir = "{working_dir}"\n'
        'driver "terraform" {\n  path = "/bin/true"\n}\n' + source
    )


def create_body(name: str) -> dict[str, object]:
    return {"task": {"name": name, "module": "../m", "condition": {"services": {"names": ["web"]}}}}


def test_directory_on_a_full_disk_answers_507_and_keeps_the_old_file(
    tmp_path: Path, disk: Path
) -> None:
    tasks = disk / "tasks"
    tasks.mkdir()
    (tasks / "web.hcl").write_text(task_hcl("web"))
    (disk / "m").mkdir()
    (disk / "m" / "main.tf").write_text(MODULE_TF)
    port = free_port()
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(
        config_text(port, tmp_path / "state", f'source "directory" {{\n  path = "{tasks}"\n}}\n')
    )
    with running(config, port, tmp_path / "daemon.log") as daemon:
        before = (tasks / "web.hcl").read_bytes()
        filler = fill(disk)

        status, body = daemon.call("PATCH", "/v1/tasks/web", {"enabled": False})
        assert status == 507, body
        message = body["error"]["message"]
        assert "no space left" in message and "web.hcl" in message, message
        status, body = daemon.call("POST", "/v1/tasks", create_body("api"))
        assert status == 507, body
        assert "no space left" in body["error"]["message"]

        assert (tasks / "web.hcl").read_bytes() == before
        assert sorted(p.name for p in tasks.iterdir()) == ["web.hcl"]  # no temp, no api.hcl
        assert daemon.tasks() == {"web": True}

        filler.unlink()
        status, body = daemon.call("PATCH", "/v1/tasks/web", {"enabled": False})
        assert status == 200, body
        assert "enabled = false" in (tasks / "web.hcl").read_text()
        status, body = daemon.call("POST", "/v1/tasks", create_body("api"))
        assert status == 201, body
        assert daemon.tasks() == {"web": False, "api": True}
        assert daemon.stop() == 0


def test_git_clone_on_a_full_disk_answers_507_and_commits_nothing(
    tmp_path: Path, disk: Path
) -> None:
    """The clone (under working_dir) on the full disk. With no space at all the task
    file's own write fails; freeing a page at a time, the file fits before git's object
    and index writes do, so git's own write fails next. Each time: 507, no commit, the
    work tree as it was."""
    remote = Remote.create(tmp_path, {"tasks/web.hcl": task_hcl("web")})
    head = remote.head()
    port = free_port()
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(
        config_text(
            port,
            disk / "state",
            f'source "git" {{\n  url = "{remote.url}"\n  path = "tasks"\n  push = true\n}}\n',
        )
    )
    clone = disk / "state" / ".reconciler" / "git" / "git"
    with running(config, port, tmp_path / "daemon.log") as daemon:
        # The workspaces are on the same disk: let the start-up run finish first, so that
        # only the API write meets the full disk.
        wait_for(lambda: started_up(daemon, "web"), 60, "the start-up run")
        before = (clone / "tasks" / "web.hcl").read_bytes()
        filler = fill(disk)
        failures: list[str] = []
        for _ in range(64):
            status, body = daemon.call("PATCH", "/v1/tasks/web", {"enabled": False})
            if status != 507:
                break
            message = body["error"]["message"]
            assert "no space left" in message and "nothing was changed" in message, message
            failures.append(message.split(":")[0])
            assert remote.head() == head
            assert (clone / "tasks" / "web.hcl").read_bytes() == before
            assert temp_files(clone) == []
            assert daemon.tasks() == {"web": True}
            os.truncate(filler, max(filler.stat().st_size - 4096, 0))  # one page more
        assert failures[0] == "cannot write tasks/web.hcl", failures
        assert "cannot commit tasks/web.hcl" in failures, failures

        filler.unlink()
        if status == 507:
            status, body = daemon.call("PATCH", "/v1/tasks/web", {"enabled": False})
        assert status == 200, body
        assert remote.head() != head
        assert "enabled = false" in (remote.show("tasks/web.hcl") or "")
        assert daemon.health()[0] == 200
        assert daemon.stop() == 0
