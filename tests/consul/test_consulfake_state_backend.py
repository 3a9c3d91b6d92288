"""The in-test Consul server speaks what Terraform's real `consul` state backend uses (KV
with cas, keys with a separator, sessions, locks, /v1/txn): proved here with the bundled
Terraform before any test relies on it."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from consulfake import ThreadedConsul

KEY = "consul-terraform-sync/terraform-env:web"


def root_module(directory: Path, address: str, value: str = "hello") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tf").write_text(
        "terraform {\n"
        '  backend "consul" {\n'
        f'    address = "{address}"\n'
        '    path    = "consul-terraform-sync/terraform"\n'
        "    gzip    = true\n"
        "  }\n"
        "}\n"
        f'resource "terraform_data" "x" {{\n  input = "{value}"\n}}\n'
    )
    return directory


def terraform(
    cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CONSUL_")}
    environ |= {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    environ |= env or {}
    return subprocess.run(
        [sys.executable, "-m", "reconciler.runner.tfshim", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def consul() -> Iterator[ThreadedConsul]:
    server = ThreadedConsul()
    yield server
    server.close()


def state_id(consul: ThreadedConsul) -> str:
    raw = consul.fake.kv_get(KEY)
    assert raw is not None and raw[:1] == b"\x1f"  # gzip, as the backend writes it
    state = json.loads(gzip.decompress(raw))
    [resource] = state["resources"]
    return str(resource["instances"][0]["attributes"]["id"])


def test_a_task_workspace_is_created_applied_and_unlocked(
    tmp_path: Path, consul: ThreadedConsul
) -> None:
    ws = root_module(tmp_path / "cts", consul.fake.address)
    ok(terraform(ws, "init", "-input=false", "-no-color"))
    ok(terraform(ws, "workspace", "new", "web"))  # as CTS names a task's workspace
    ok(terraform(ws, "apply", "-auto-approve", "-input=false", "-no-color"))
    first = state_id(consul)
    lock = consul.fake.kv.get(f"{KEY}/.lock")
    assert lock is None or lock.session == ""  # released
    assert consul.fake.kv_get(f"{KEY}/.lockinfo") is None
    assert "web" in ok(terraform(ws, "workspace", "list"))

    # A second directory on the same backend and workspace: nothing to change.
    other = root_module(tmp_path / "other", consul.fake.address)
    ok(terraform(other, "init", "-input=false", "-no-color"))
    ok(terraform(other, "workspace", "select", "web"))
    assert terraform(other, "plan", "-detailed-exitcode", "-input=false").returncode == 0
    shown = json.loads(ok(terraform(other, "show", "-json")))
    [resource] = shown["values"]["root_module"]["resources"]
    assert resource["values"]["id"] == first == state_id(consul)


def test_the_token_is_required_and_taken_from_the_environment(tmp_path: Path) -> None:
    server = ThreadedConsul(token="secret")
    try:
        ws = root_module(tmp_path / "ws", server.fake.address)
        failed = terraform(ws, "init", "-input=false", "-no-color")
        assert failed.returncode != 0 and "403" in failed.stdout + failed.stderr
        env = {"CONSUL_HTTP_TOKEN": "secret"}
        ok(terraform(ws, "init", "-input=false", "-no-color", "-reconfigure", env=env))
        ok(terraform(ws, "workspace", "new", "web", env=env))
        ok(terraform(ws, "apply", "-auto-approve", "-input=false", env=env))
        assert server.fake.kv_get(KEY) is not None
    finally:
        server.close()


def put(consul: ThreadedConsul, path: str, body: bytes = b"") -> object:
    request = urllib.request.Request(f"http://{consul.fake.address}{path}", data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_a_lock_held_elsewhere_stops_terraform_until_released(
    tmp_path: Path, consul: ThreadedConsul
) -> None:
    ws = root_module(tmp_path / "ws", consul.fake.address)
    ok(terraform(ws, "init", "-input=false", "-no-color"))
    ok(terraform(ws, "workspace", "new", "web"))
    session = put(consul, "/v1/session/create", b'{"Name": "other", "TTL": "15s"}')
    assert isinstance(session, dict)
    flags = "3304740253564472344"  # consul/api's LockFlagValue
    assert put(consul, f"/v1/kv/{KEY}/.lock?flags={flags}&acquire={session['ID']}") is True
    held = terraform(ws, "plan", "-lock-timeout=0s", "-input=false", "-no-color")
    assert held.returncode != 0 and "lock" in (held.stdout + held.stderr).lower()
    assert put(consul, f"/v1/kv/{KEY}/.lock?flags={flags}&release={session['ID']}") is True
    ok(terraform(ws, "plan", "-lock-timeout=0s", "-input=false", "-no-color"))
    # A destroyed session releases what it holds, as Consul does.
    assert put(consul, f"/v1/kv/{KEY}/.lock?flags={flags}&acquire={session['ID']}") is True
    assert put(consul, f"/v1/session/destroy/{session['ID']}") is True
    ok(terraform(ws, "apply", "-auto-approve", "-input=false", "-lock-timeout=0s"))
