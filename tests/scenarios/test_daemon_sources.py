"""Two `source "directory"` blocks in the daemon, as a new user would write them."""

from __future__ import annotations

import signal
from pathlib import Path

from helpers import free_port, task_hcl, wait_for, without_consul
from serverkit import call, daemon, up


def names(port: int) -> set[str]:
    status, body = call(port, "GET", "/v1/tasks")
    assert status == 200, body
    return {t["name"] for t in body["tasks"]}


def idle(port: int) -> bool:
    """No task is running or waiting for a run to end before it goes: /v1/tasks shows a
    deleted task until its run ends, so only then does the list say what was kept."""
    statuses = call(port, "GET", "/v1/status/tasks")[1]
    return not any(s["active"] or s["deleting"] for s in statuses.values())


def test_emptying_one_source_is_guarded_whatever_the_other_does(tmp_path: Path) -> None:
    port = free_port()
    a, b = tmp_path / "team-a", tmp_path / "team-b"
    a.mkdir()
    b.mkdir()
    (a / "a1.hcl").write_text(task_hcl("a1"))
    (a / "a2.hcl").write_text(task_hcl("a2"))
    (b / "b1.hcl").write_text(task_hcl("b1"))
    config = tmp_path / "config.hcl"
    without_consul(tmp_path)
    config.write_text(
        f'port = {port}\nworking_dir = "state"\n'
        'source "directory" {\n  path = "team-a"\n}\n'
        'source "directory" {\n  path = "team-b"\n}\n'
    )
    with daemon(config) as proc:
        wait_for(lambda: up(port), timeout=30, what="the API")
        assert names(port) == {"a1", "a2", "b1"}
        wait_for(lambda: idle(port), timeout=60, what="the first runs to end")
        for f in a.iterdir():
            f.unlink()
        wait_for(lambda: call(port, "GET", "/v1/health")[0] == 503, timeout=30, what="the guard")
        message = call(port, "GET", "/v1/health")[1]["error"]["message"]
        assert "refusing to remove all 2 tasks of source 'directory'" in message

        (b / "b2.hcl").write_text(task_hcl("b2"))
        wait_for(lambda: "b2" in names(port), timeout=30, what="the new task of team-b")
        wait_for(lambda: idle(port), timeout=60, what="the runs to end")
        assert names(port) == {"a1", "a2", "b1", "b2"}
        sources = call(port, "GET", "/v1/status")[1]["sources"]
        assert sources["directory"]["prune_guard"] is not None
        assert sources["directory-1"]["prune_guard"] is None

        (a / "a1.hcl").write_text(task_hcl("a1"))
        wait_for(lambda: names(port) == {"a1", "b1", "b2"}, timeout=30, what="team-a back")
        assert call(port, "GET", "/v1/health")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
