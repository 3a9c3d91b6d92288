"""A service name chosen to make a backtracking regular expression engine run for hours
(`^([a-z0-9]+-?)+$` against 40 letters and a `!`: the cost doubles per letter) is matched
in linear time, through `reconciler start` with the name in the embedded catalog: the
daemon answers while the catalog holds it, and the task's inputs are right."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from helpers import free_port, wait_for
from serverkit import reconciler_start

HOSTILE = "a" * 40 + "!"
PATTERN = "^([a-z0-9]+-?)+$"


def service(catalog: Path, name: str, id: str) -> None:
    (catalog / f"{id}.hcl").write_text(
        f'service {{\n  name = "{name}"\n  id = "{id}"\n  address = "10.0.0.1"\n  port = 80\n}}\n'
    )


def get(port: int, path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return json.loads(response.read() or b"{}")


def test_a_redos_service_name_does_not_stall_the_daemon(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "main.tf").write_text('variable "services" {\n  type = any\n}\n')
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    service(catalog, HOSTILE, "hostile-1")
    service(catalog, "web-1", "web-1")
    (tmp_path / "config.hcl").write_text(
        f'port = {port}\nworking_dir = "sync-tasks"\n'
        'task {\n  name = "by-regexp"\n  module = "./mod"\n'
        f'  condition "services" {{\n    regexp = "{PATTERN}"\n  }}\n}}\n'
    )
    with reconciler_start(tmp_path, port):
        tfvars = tmp_path / "sync-tasks" / "by-regexp" / "terraform.tfvars"
        wait_for(tfvars.exists, 120, "the task's first run")
        text = tfvars.read_text()
        assert "web-1" in text and HOSTILE not in text
        # Answers come back while the catalog holds the name (with a backtracking
        # engine the first match never ends and nothing answers at all).
        for _ in range(5):
            assert get(port, "/v1/health") is not None  # each within urlopen's timeout
        # A second hostile name arriving later is matched as quickly.
        service(catalog, "b" * 60 + "!", "hostile-2")
        service(catalog, "web-2", "web-2")
        wait_for(lambda: "web-2" in tfvars.read_text(), 120, "the new instance")
        assert get(port, "/v1/health") is not None
