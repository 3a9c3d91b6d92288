"""CTS's deprecated forms behave as in CTS, through the daemon started the deprecated way
(`reconciler -config-file=...`, no sub-command, as CTS's container image does): a task's
`services = [...]` list with no condition block triggers on those services, and the
`service` block it names shapes the query and the instances' cts_user_defined_meta."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from consulfake import ThreadedConsul
from helpers import free_port, wait_for
from serverkit import stop_process, wait_listening

MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "modules"


@pytest.fixture
def consul() -> Iterator[ThreadedConsul]:
    server = ThreadedConsul()
    yield server
    server.close()


def test_a_services_list_triggers_on_its_services_shaped_by_service_blocks(
    tmp_path: Path, consul: ThreadedConsul
) -> None:
    shutil.copytree(MODULES / "services-file", tmp_path / "services-file")
    port = free_port()
    (tmp_path / "cts.hcl").write_text(
        f"port = {port}\n"
        f'consul {{\n  address = "{consul.fake.address}"\n'
        "  service_registration {\n    enabled = false\n  }\n}\n"
        'buffer_period {\n  min = "100ms"\n  max = "500ms"\n}\n'
        'service {\n  id   = "front"\n  name = "web"\n'
        '  cts_user_defined_meta = {\n    owner = "team-a"\n  }\n}\n'
        'task {\n  name     = "legacy"\n  module   = "./services-file"\n'
        '  services = ["front", "db"]\n}\n'
    )
    log = tmp_path / "daemon.log"
    output = tmp_path / "sync-tasks" / "legacy" / "services.txt"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "-config-file=cts.hcl"],
            cwd=tmp_path,
            stderr=err,
        )
        try:
            wait_listening(port, proc)
            wait_for(lambda: output.exists(), 120, "the first run")  # Consul's first answer
            assert output.read_text() == ""
            consul.run(consul.fake.register("web", id="web-1", address="10.0.0.1", port=80))
            wait_for(lambda: "web-1" in output.read_text(), 120, "a run for the new instance")
            consul.run(consul.fake.register("db", id="db-1", address="10.0.0.9", port=5432))
            wait_for(lambda: "db-1" in output.read_text(), 120, "a run for the other service")
        finally:
            stop_process(proc)
    tfvars = (tmp_path / "sync-tasks" / "legacy" / "terraform.tfvars").read_text()
    # The service block's meta goes to its service's instances only.
    assert tfvars.count('owner = "team-a"') == 1
    text = log.read_text()
    assert "without a subcommand is deprecated" in text
    assert "the 'services' field in the task block is deprecated" in text
    assert "the 'service' block is deprecated" in text
