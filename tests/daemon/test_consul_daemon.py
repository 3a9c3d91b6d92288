"""Consul conditions end to end: `reconciler start` as a child process, the in-test Consul
server, and the real Terraform bundled with the daemon. A registration makes the module
see the instance, a critical instance leaves, a deregistration is gone; `-once` records
one event per task."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from consulfake import ThreadedConsul
from helpers import wait_for
from serverkit import daemon_process, free_port, wait_listening

MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "modules"
T = TypeVar("T")


@pytest.fixture
def consul() -> Iterator[ThreadedConsul]:
    server = ThreadedConsul()
    yield server
    server.close()


def task(name: str, condition: str = 'condition "services" {\n    names = ["web"]\n  }') -> str:
    return f'task {{\n  name = "{name}"\n  module = "./services-file"\n  {condition}\n}}\n'


def get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def output(tmp_path: Path, name: str) -> str | None:
    path = tmp_path / "state" / name / "services.txt"
    return path.read_text() if path.exists() else None


def test_services_condition_drives_real_terraform(tmp_path: Path, consul: ThreadedConsul) -> None:
    shutil.copytree(MODULES / "services-file", tmp_path / "tasks" / "services-file")
    (tmp_path / "tasks" / "web.hcl").write_text(task("web"))
    consul.run(consul.fake.register("web", id="web-1", address="10.0.0.1", port=80))
    consul.run(consul.fake.register("db", id="db-1", address="10.0.0.9", port=5432))
    extra = (
        f'consul {{\n  address = "{consul.fake.address}"\n}}\n'
        'buffer_period {\n  min = "100ms"\n  max = "500ms"\n}\n'
    )
    with daemon_process(tmp_path, extra) as (proc, port):
        wait_listening(port, proc)
        log = tmp_path / "daemon.log"

        def shows(text: str | None) -> bool:
            return output(tmp_path, "web") == text

        # Started by the first answer: the module wrote the instance it watches.
        wait_for(lambda: shows("web web-1 10.0.0.1:80\n"), timeout=60, what=log.read_text())
        consul.run(consul.fake.register("web", id="web-2", address="10.0.0.2", port=80))
        wait_for(
            lambda: shows("web web-1 10.0.0.1:80\nweb web-2 10.0.0.2:80\n"),
            timeout=60,
            what=log.read_text(),
        )
        consul.run(consul.fake.set_status("web-1", "critical"))
        wait_for(lambda: shows("web web-2 10.0.0.2:80\n"), timeout=60, what=log.read_text())
        consul.run(consul.fake.deregister("web-2"))
        wait_for(lambda: shows(""), timeout=60, what=log.read_text())

        # The daemon registered itself, with CTS's check on /v1/health.
        wait_for(lambda: bool(consul.fake.agent_services), timeout=30, what="registration")
        [registered] = consul.fake.agent_services.values()
        assert registered["Name"] == "consul-terraform-sync" and registered["Tags"] == ["cts"]
        assert registered["Port"] == port
        assert registered["Check"]["HTTP"] == f"http://localhost:{port}/v1/health"
        # The module writes its file during the apply: the event comes once it has ended.
        wait_for(lambda: not get(port, "/v1/status/tasks/web")["web"]["active"], timeout=30)
        status = get(port, "/v1/status/tasks/web")["web"]
        assert status["status"] == "successful"
        waits = status["waiting_on"]["consul"]
        [query] = waits["queries"]
        assert query["query"] == "health.service(web)" and query["status"] == "watching"
        assert waits["buffer_period"] == {"enabled": True, "min": "100ms", "max": "500ms"}
        assert get(port, "/v1/health") == {}
        # One run at start and one per change; the unwatched db service ran nothing.
        events = get(port, "/v1/status/tasks/web?include=events")["web"]["events"]
        assert len(events) == 4 and all(e["success"] for e in events)
        proc.terminate()
        assert proc.wait(30) == 0
    assert consul.fake.agent_services == {}  # deregistered on a clean stop


def test_capped_connections_watch_through_the_cluster_indexes(
    tmp_path: Path, consul: ThreadedConsul
) -> None:
    """Four watched services under a cap of four connections (two long polls): the
    daemon watches them through the cluster-wide indexes, and a change still runs only
    the task that watches the changed service."""
    shutil.copytree(MODULES / "services-file", tmp_path / "tasks" / "services-file")
    names = ["web", "db", "cache", "queue"]
    for name in names:
        consul.run(consul.fake.register(name, id=f"{name}-1", address="10.0.0.1", port=80))
        cond = f'condition "services" {{\n    names = ["{name}"]\n  }}'
        (tmp_path / "tasks" / f"{name}.hcl").write_text(task(name, cond))
    extra = (
        f'consul {{\n  address = "{consul.fake.address}"\n'
        "  transport {\n    max_conns_per_host = 4\n  }\n"
        "  service_registration {\n    enabled = false\n  }\n}\n"
        "buffer_period {\n  enabled = false\n}\n"
        # State stays local: only the daemon's own connections count against the cap
        # (Terraform's consul backend would open its own, from its own process).
        'driver "terraform" {\n  backend "local" {}\n}\n'
    )
    with daemon_process(tmp_path, extra) as (proc, port):
        wait_listening(port, proc)
        log = tmp_path / "daemon.log"
        for name in names:
            wait_for(
                lambda name=name: output(tmp_path, name) == f"{name} {name}-1 10.0.0.1:80\n",
                timeout=60,
                what=log.read_text(),
            )
        consul.run(consul.fake.register("db", id="db-2", node="node-2", address="10.0.0.2"))
        wait_for(
            lambda: output(tmp_path, "db") == "db db-1 10.0.0.1:80\ndb db-2 10.0.0.2:0\n",
            timeout=60,
            what=log.read_text(),
        )
        wait_for(lambda: not get(port, "/v1/status/tasks/db")["db"]["active"], timeout=30)
        status = get(port, "/v1/status/tasks")
        [query] = status["db"]["waiting_on"]["consul"]["queries"]
        assert query["mode"] == "cluster index", query
        events = {
            n: len(get(port, f"/v1/status/tasks/{n}?include=events")[n]["events"]) for n in names
        }
        assert events == {"web": 1, "db": 2, "cache": 1, "queue": 1}
        assert consul.fake.peak_connections <= 4
        # Once the indexes are watched, only they block.
        requests = consul.fake.requests
        feeds = next(i for i, r in enumerate(requests) if r.path == "/v1/health/state/any")
        blocking = {r.path for r in requests[feeds:] if r.blocking}
        assert blocking == {"/v1/health/state/any", "/v1/catalog/services"}, blocking
        proc.terminate()
        assert proc.wait(30) == 0


# Takes every input CTS renders and records each apply; `seconds` makes an apply slow.
INPUTS_MODULE = """
variable "services" {
  type = any
}
variable "catalog_services" {
  type    = any
  default = {}
}
variable "consul_kv" {
  type    = any
  default = {}
}
variable "seconds" {
  type    = number
  default = 0
}
resource "terraform_data" "run" {
  triggers_replace = timestamp()
  provisioner "local-exec" {
    command = "sleep ${var.seconds}"
  }
}
"""


def test_cts_end_to_end_behaviours_through_the_daemon(
    tmp_path: Path, consul: ThreadedConsul
) -> None:
    """What CTS's own end-to-end suite asserts, through `reconciler start` and the real
    Terraform: an unrelated key triggers nothing, the key does; catalog-services ignores
    a new instance and reacts to a new service; changes during a run give exactly one
    more run, with the latest data; a re-created task still triggers."""
    module = tmp_path / "tasks" / "inputs"
    module.mkdir(parents=True)
    (module / "main.tf").write_text(INPUTS_MODULE)
    fake = consul.fake
    consul.run(fake.register("web", id="web-1", address="10.0.0.1", port=80))
    consul.run(fake.register("api", id="api-1", address="10.0.1.1", port=80))
    consul.run(fake.kv_put("flag", "off"))

    def task_file(name: str, condition: str, variables: str = "") -> None:
        body = f'task {{\n  name = "{name}"\n  module = "./inputs"\n{variables}  {condition}\n}}\n'
        (tmp_path / "tasks" / f"{name}.hcl").write_text(body)

    kv_condition = 'condition "consul-kv" {\n    path = "flag"\n    use_as_module_input = true\n  }'
    task_file("kv", kv_condition)
    task_file("cat", 'condition "catalog-services" {\n    regexp = "^web"\n  }')
    task_file(
        "slow",
        'condition "services" {\n    names = ["api"]\n  }',
        "  variables = { seconds = 2 }\n",
    )
    extra = (
        f'consul {{\n  address = "{fake.address}"\n'
        "  service_registration {\n    enabled = false\n  }\n}\n"
        "buffer_period {\n  enabled = false\n}\n"
        # State stays local: only the daemon's own connections count against the cap
        # (Terraform's consul backend would open its own, from its own process).
        'driver "terraform" {\n  backend "local" {}\n}\n'
    )
    with daemon_process(tmp_path, extra) as (proc, port):
        wait_listening(port, proc)
        log = tmp_path / "daemon.log"

        def status_of(name: str, query: str = "") -> Any:
            """The task's status, or None while it does not exist (404)."""
            try:
                return get(port, f"/v1/status/tasks/{name}{query}").get(name)
            except urllib.error.HTTPError as err:
                err.close()  # the error holds the response and its socket
                if err.code == 404:
                    return None
                raise

        def events(name: str) -> list[dict[str, Any]]:
            return list((status_of(name, "?include=events") or {}).get("events", []))

        def settled(name: str) -> bool:
            status = status_of(name)
            return status is not None and not status["active"]

        def seen_by(name: str) -> bool:
            """The task's query has an answer at Consul's current index: every change so
            far has reached the daemon (and triggered, or not)."""
            status = status_of(name)
            if status is None:
                return False
            queries = status["waiting_on"]["consul"]["queries"]
            return all(q.get("index", 0) >= fake.index for q in queries)

        for name in ("kv", "cat", "slow"):
            wait_for(lambda name=name: len(events(name)) == 1, timeout=60, what=log.read_text())
            wait_for(lambda name=name: settled(name), timeout=60)

        # consul-kv: another key is nothing to this task; its own key is.
        consul.run(fake.kv_put("other", "x"))
        wait_for(lambda: seen_by("kv"), timeout=30, what="the unrelated key reached the daemon")
        consul.run(fake.kv_put("flag", "on"))
        wait_for(lambda: len(events("kv")) == 2, timeout=60, what=log.read_text())
        tfvars = (tmp_path / "state" / "kv" / "terraform.tfvars").read_text()
        assert 'flag = "on"' in tfvars, tfvars

        # catalog-services: a new instance of a known service changes nothing it shows.
        consul.run(fake.register("web", id="web-2", node="node-2", address="10.0.0.2"))
        wait_for(lambda: seen_by("cat"), timeout=30, what="the new instance reached the daemon")
        consul.run(fake.register("web-admin", id="web-admin-1", address="10.0.0.3"))
        wait_for(lambda: len(events("cat")) == 2, timeout=60, what=log.read_text())

        # Changes during a run: exactly one more run, with the latest data.
        consul.run(fake.register("api", id="api-2", node="node-2", address="10.0.1.2"))
        wait_for(lambda: not settled("slow"), timeout=30, what="the slow task's run")
        for i in (3, 4, 5):
            consul.run(fake.register("api", id=f"api-{i}", node=f"node-{i}", address=f"10.0.1.{i}"))
        wait_for(lambda: seen_by("slow"), timeout=30, what="the three changes")
        wait_for(lambda: len(events("slow")) == 3, timeout=60, what=log.read_text())
        wait_for(lambda: settled("slow"), timeout=60)
        assert len(events("slow")) == 3
        tfvars = (tmp_path / "state" / "slow" / "terraform.tfvars").read_text()
        assert "api-5" in tfvars and "10.0.1.5" in tfvars, tfvars

        # A re-created task still triggers.
        (tmp_path / "tasks" / "kv.hcl").unlink()
        wait_for(lambda: "kv" not in get(port, "/v1/status/tasks"), timeout=30)
        task_file("kv", kv_condition)
        wait_for(lambda: settled("kv") and seen_by("kv"), timeout=60, what=log.read_text())
        before = len(events("kv"))
        consul.run(fake.kv_put("flag", "again"))
        wait_for(lambda: len(events("kv")) == before + 1, timeout=60, what=log.read_text())

        # Nothing else ran: one start run each, one per relevant change.
        assert len(events("cat")) == 2
        proc.terminate()
        assert proc.wait(30) == 0


def test_once_mode_records_one_event_per_task(tmp_path: Path, consul: ThreadedConsul) -> None:
    shutil.copytree(MODULES / "services-file", tmp_path / "tasks" / "services-file")
    (tmp_path / "tasks" / "a.hcl").write_text(task("a"))
    (tmp_path / "tasks" / "b.hcl").write_text(task("b"))
    consul.run(consul.fake.register("web", id="web-1", address="10.0.0.1", port=80))
    config = tmp_path / "config.hcl"
    config.write_text(
        'working_dir = "state"\nsource "directory" {\n  path = "tasks"\n}\n'
        f'consul {{\n  address = "{consul.fake.address}"\n}}\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "start", "-once", f"-config-file={config}"],
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert output(tmp_path, "a") == output(tmp_path, "b") == "web web-1 10.0.0.1:80\n"
    stored = json.loads((tmp_path / "state" / ".reconciler" / "events.json").read_text())
    assert {name: len(events) for name, events in stored["tasks"].items()} == {"a": 1, "b": 1}


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_examples_embedded_catalog_drives_real_terraform(tmp_path: Path) -> None:
    """`make run`'s configuration: editing the catalog's files runs the example task."""
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    config = tmp_path / "examples" / "config.hcl"
    port = free_port()
    text = config.read_text().replace("port        = 8558", f"port        = {port}")
    config.write_text(text.replace('min     = "1s"', 'min     = "100ms"'))
    out = tmp_path / "sync-tasks" / "web" / "services.txt"
    catalog = tmp_path / "examples" / "catalog"
    log = tmp_path / "daemon.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "start", f"-config-file={config}"],
            cwd=tmp_path,
            stderr=err,
        )
    try:
        wait_listening(port, proc)

        def lines() -> list[str]:
            return sorted(out.read_text().splitlines()) if out.exists() else []

        wait_for(lambda: lines() == ["web web-1 10.0.0.1:80"], timeout=60, what=log.read_text())
        wait_for(lambda: get(port, "/v1/status")["runs"]["applied"] == 1, timeout=30)
        runs = get(port, "/v1/status")["runs"]
        assert runs["tasks"] == 2 and runs["initialised"] == 2  # nightly is disabled
        (catalog / "web-2.hcl").write_text(
            'service {\n  name    = "web"\n  id      = "web-2"\n'
            '  address = "10.0.0.2"\n  port    = 8080\n}\n'
        )
        wait_for(
            lambda: lines() == ["web web-1 10.0.0.1:80", "web web-2 10.0.0.2:8080"],
            timeout=60,
            what=log.read_text(),
        )
        text = (catalog / "web.hcl").read_text()
        (catalog / "web.hcl").write_text(
            text.replace("port    = 80", 'port = 80\n  status = "critical"')
        )
        wait_for(lambda: lines() == ["web web-2 10.0.0.2:8080"], timeout=60, what=log.read_text())
        (catalog / "web-2.hcl").unlink()
        wait_for(lambda: lines() == [], timeout=60, what=log.read_text())
        assert 'catalog "directory" at' in log.read_text()
        wait_for(lambda: not get(port, "/v1/status/tasks/web")["web"]["active"], timeout=30)
        events = get(port, "/v1/status/tasks/web?include=events")["web"]["events"]
    finally:
        proc.terminate()
        proc.wait(30)

    # A restart with nothing changed applies nothing and records nothing.
    with log.open("ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "start", f"-config-file={config}"],
            cwd=tmp_path,
            stderr=err,
        )
    try:
        wait_listening(port, proc)
        skipped = "task web: start: nothing changed since its last apply, not run"
        wait_for(lambda: skipped in log.read_text(), timeout=60, what=log.read_text())
        again = get(port, "/v1/status/tasks/web?include=events")["web"]["events"]
        assert [e["id"] for e in again] == [e["id"] for e in events]
    finally:
        proc.terminate()
        proc.wait(30)
