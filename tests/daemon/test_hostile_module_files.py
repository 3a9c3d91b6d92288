"""A local module holding a FIFO and a symlink to /dev/zero, through `reconciler start`:
the module digest neither blocks on the FIFO nor reads /dev/zero without end, so the task
runs and the daemon keeps answering; its memory stays small."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

from helpers import free_port, wait_for
from serverkit import reconciler_start


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_a_fifo_and_dev_zero_in_a_module_neither_freeze_nor_grow_the_daemon(
    tmp_path: Path,
) -> None:
    port = free_port()
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "main.tf").write_text(
        'resource "terraform_data" "x" {\n  input = "x"\n}\n'
        'variable "services" {\n  type = any\n}\n'
    )
    os.mkfifo(mod / "pipe")
    (mod / "zero").symlink_to("/dev/zero")
    (mod / "sub").mkdir()
    os.mkfifo(mod / "sub" / "another-pipe")
    (tmp_path / "catalog").mkdir()
    (tmp_path / "config.hcl").write_text(
        f'port = {port}\nworking_dir = "sync-tasks"\n'
        'task {\n  name = "hostile"\n  module = "./mod"\n'
        '  condition "schedule" {\n    cron = "0 0 1 1 *"\n  }\n}\n'
    )
    with reconciler_start(tmp_path, port) as proc:

        def status() -> dict[str, object]:
            url = f"http://127.0.0.1:{port}/v1/status/tasks?include=events"
            with urllib.request.urlopen(url, timeout=30) as response:
                result: dict[str, object] = json.loads(response.read())
                return result

        def ran() -> bool:
            task = status().get("hostile")
            return isinstance(task, dict) and task.get("status") == "successful"

        wait_for(ran, 120, "the task's first run")
        # Under 1 GiB: reading /dev/zero to its end would take all the memory there is.
        assert rss_kib(proc.pid) < 1 << 20
