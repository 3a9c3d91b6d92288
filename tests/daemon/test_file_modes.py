"""Who can read what the daemon writes, through `reconciler start`: its working
directory, `.reconciler/` and every workspace are 0700, the state it keeps there 0600; a
task file written by the API takes the mode of the files already in its directory (0644
in a fresh one); and a create whose init fails leaves no workspace behind."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from helpers import wait_for
from serverkit import daemon_process, post_task, wait_listening

MODULE = (
    'resource "terraform_data" "x" {\n  input = "x"\n}\nvariable "services" {\n  type = any\n}\n'
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def task(name: str, module: str) -> dict[str, Any]:
    return {"name": name, "module": module, "condition": {"schedule": {"cron": "0 0 1 1 *"}}}


def test_modes_and_no_workspace_left_by_a_failed_create(tmp_path: Path) -> None:
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "main.tf").write_text(MODULE)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "main.tf").write_text('resource "terraform_data" {\n')  # no name
    with daemon_process(tmp_path) as (proc, port):
        wait_listening(port, proc)
        status, body = post_task(port, task("broken", "../broken"), "?run=now")
        assert status >= 400 and "init" in json.dumps(body), body
        state = tmp_path / "state"
        assert not (state / "broken").exists()
        assert not (tmp_path / "tasks" / "broken.hcl").exists()

        status, body = post_task(port, task("good", "../mod"), "?run=now")
        assert status == 201, body
        first = tmp_path / "tasks" / "good.hcl"
        assert mode(first) == 0o644  # a fresh directory: the usual mode
        first.chmod(0o640)  # the operator's choice for this directory...
        status, body = post_task(port, task("second", "../mod"))
        assert status == 201, body
        assert mode(tmp_path / "tasks" / "second.hcl") == 0o640  # ...is kept

        private = state / ".reconciler"
        events = private / "events.json"
        wait_for(events.exists, 60, "the events file")
        wait_for(lambda: (private / "parse-cache.json").exists(), 60, "the parse cache")
    for directory in (state, private, state / "good"):
        assert mode(directory) == 0o700, directory
    for file in (events, private / "parse-cache.json"):
        assert mode(file) == 0o600, file
    for file in (state / "good").iterdir():
        if file.is_file() and file.name.endswith((".tf", ".tfvars")):
            assert mode(file) & 0o077 == 0, file
