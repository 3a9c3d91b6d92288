"""`reconciler validate` on a CTS configuration: per task, where its state will live and
whether CTS left state there (so whether the first run builds anything again), the
provider templates and the deprecated forms; it fails when CTS left state that this
daemon would not use."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from consulfake import ThreadedConsul

from reconciler.cli.main import EXIT_ERROR, EXIT_OK, main

T = TypeVar("T")
STATE_KEY = "consul-terraform-sync/terraform-env:web"


def cts_state(resources: int) -> bytes:
    doc = {
        "version": 4,
        "serial": 1,
        "resources": [
            {"mode": "managed", "type": "terraform_data", "name": f"r{i}", "instances": [{}]}
            for i in range(resources)
        ],
    }
    return gzip.compress(json.dumps(doc).encode())


@pytest.fixture
def consul() -> Iterator[ThreadedConsul]:
    server = ThreadedConsul()
    yield server
    server.close()


TASK = """
task {
  name      = "web"
  module    = "./mod"
  providers = ["aws"]
  services  = ["api"]
}
terraform_provider "aws" {
  region     = "eu-west-1"
  access_key = "{{ env \\"AWS_KEY\\" }}"
}
"""


def config(tmp_path: Path, head: str) -> str:
    path = tmp_path / "cts.hcl"
    path.write_text(f'working_dir = "sync-tasks"\n{head}{TASK}')
    return str(path)


def test_state_cts_left_in_consul_is_found_and_used(
    tmp_path: Path, consul: ThreadedConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    consul.run(consul.fake.kv_put(STATE_KEY, cts_state(3)))
    path = config(tmp_path, f'consul {{\n  address = "{consul.fake.address}"\n}}\n')
    assert main(["validate", f"-config-file={path}"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "task web (" in out and 'backend "consul", workspace "web"' in out
    assert f"key {STATE_KEY}" in out
    assert "state found (3 resources): it plans against it" in out
    assert "provider aws (" in out and 'env "AWS_KEY"' in out
    assert "deprecated services list [api]: watched as its condition" in out


def test_no_state_yet_says_the_first_run_creates_everything(
    tmp_path: Path, consul: ThreadedConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    path = config(tmp_path, f'consul {{\n  address = "{consul.fake.address}"\n}}\n')
    assert main(["validate", f"-config-file={path}"]) == EXIT_OK
    assert "no state yet: it creates everything" in capsys.readouterr().out


def test_state_cts_left_that_would_not_be_used_fails_validate(
    tmp_path: Path,
    consul: ThreadedConsul,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """CONSUL_HTTP_ADDR names CTS's Consul, but a catalog block makes this daemon keep
    state locally: its first run would build the task again."""
    consul.run(consul.fake.kv_put(STATE_KEY, cts_state(2)))
    monkeypatch.setenv("CONSUL_HTTP_ADDR", consul.fake.address)
    (tmp_path / "cat").mkdir()
    path = config(tmp_path, 'catalog "directory" {\n  path = "cat"\n}\n')
    assert main(["validate", f"-config-file={path}"]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert 'backend "local"' in captured.out
    assert "ERROR: CTS's default Consul" in captured.out and "2 resources" in captured.out
    assert "would build those tasks' resources again" in captured.err


def test_state_in_two_places_fails_validate(
    tmp_path: Path, consul: ThreadedConsul, capsys: pytest.CaptureFixture[str]
) -> None:
    consul.run(consul.fake.kv_put(STATE_KEY, cts_state(1)))
    workspace = tmp_path / "sync-tasks" / "web"
    workspace.mkdir(parents=True)
    (workspace / "terraform.tfstate").write_bytes(gzip.decompress(cts_state(1)))
    path = config(tmp_path, f'consul {{\n  address = "{consul.fake.address}"\n}}\n')
    assert main(["validate", f"-config-file={path}"]) == EXIT_ERROR
    assert "state: REFUSED at start: task web has Terraform state in two places" in (
        capsys.readouterr().out
    )
