"""Provider templates through `reconciler start`: `{{ env }}`, `{{ key }}` (from Consul
KV) and `{{ with secret }}` (from Vault) reach the Terraform that runs the task, in its
environment, and the rendered values are in no file of the working directory, no log
line, no status answer. A template that cannot be rendered fails the run with the
provider's file:line, and the daemon keeps serving.

Terraform here is a stand-in named by `driver "terraform" { path }` that records what it
was given: a real provider would have to be downloaded. That the real Terraform reads the
provider's variable from TF_VAR_<name> is tested in tests/runner/test_provider_templates.py.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from consulfake import ThreadedConsul
from helpers import free_port, wait_for
from serverkit import reconciler_start
from vaultfake import ThreadedVault

VAULT_TOKEN = "hvs.e2e-root-token"
SECRET = "wJalrXUtnFEMI-e2e-secret"
ACCESS_KEY = "AKIA-E2E-ACCESS"
REGION = "eu-e2e-1"

# The stand-in Terraform: records the subcommand and the provider's variable, prints the
# secret it was handed (the daemon must redact it), and answers as Terraform would.
TERRAFORM = """\
import json, os, re, sys
cmd = sys.argv[1] if len(sys.argv) > 1 else ""
with open(os.environ["E2E_RECORD"], "a") as f:
    f.write(json.dumps({"cmd": cmd, "aws": os.environ.get("TF_VAR_aws")}) + "\\n")
if cmd == "plan":
    print("Plan: 1 to add, 0 to change, 0 to destroy.")
    sys.exit(2)
if cmd == "apply":
    provider = dict(re.findall(r'(\\w+)\\s*=\\s*"([^"]*)"', os.environ.get("TF_VAR_aws", "")))
    print("provider secret_key is " + str(provider.get("secret_key")))
    print("Apply complete! Resources: 1 added, 0 changed, 0 destroyed.")
print("ok")
"""

CONFIG = """\
port        = {port}
working_dir = "sync-tasks"

consul {{
  address = "{consul}"
}}

vault {{
  address = "{vault}"
}}

driver "terraform" {{
  path     = "{terraform}"
  pass_env = ["E2E_*"]
  backend "local" {{}}
}}

terraform_provider "aws" {{
  access_key = "{{{{ env \\"E2E_ACCESS_KEY\\" }}}}"
  region     = "{{{{ key \\"cfg/region\\" }}}}"
  secret_key = "{{{{ with secret \\"{secret_path}\\" }}}}{{{{ .Data.data.key }}}}{{{{ end }}}}"
}}

task {{
  name      = "cfg"
  module    = "./mod"
  providers = ["aws"]
  condition "schedule" {{
    cron = "0 0 1 1 *"
  }}
}}
"""
SECRET_LINE = 21  # secret_key in CONFIG
DEADLINE = 120.0  # a first run with Terraform init, on a busy machine


@contextmanager
def servers() -> Iterator[tuple[ThreadedConsul, ThreadedVault]]:
    consul = ThreadedConsul()
    vault = ThreadedVault(token=VAULT_TOKEN)
    try:
        consul.run(consul.fake.kv_put("cfg/region", REGION))
        vault.put_kv2("secret", "aws", {"key": SECRET})
        yield consul, vault
    finally:
        vault.close()
        consul.close()


def setup(root: Path, port: int, consul: ThreadedConsul, vault: ThreadedVault, secret: str) -> None:
    (root / "mod").mkdir()
    (root / "mod" / "main.tf").write_text('resource "terraform_data" "x" {}\n')
    terraform = root / "terraform"
    terraform.write_text(f"#!{sys.executable}\n{TERRAFORM}")
    terraform.chmod(terraform.stat().st_mode | stat.S_IXUSR)
    (root / "config.hcl").write_text(
        CONFIG.format(
            port=port,
            consul=consul.fake.address.removeprefix("http://"),
            vault=vault.address,
            terraform=terraform,
            secret_path=secret,
        )
    )


def daemon(root: Path, port: int) -> AbstractContextManager[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "E2E_ACCESS_KEY": ACCESS_KEY,
        "E2E_RECORD": str(root / "record.jsonl"),
        "VAULT_TOKEN": VAULT_TOKEN,
    }
    return reconciler_start(root, port, env=env)


def call(port: int, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def attributes(value: str) -> dict[str, str]:
    """The string attributes of an HCL object (what TF_VAR_<provider> holds)."""
    return dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', value))


def finished(port: int) -> bool:
    """The task has an event: its first run ended (either way)."""
    _, tasks = call(port, "GET", "/v1/status/tasks?include=events")
    return bool(tasks.get("cfg", {}).get("events"))


def records(root: Path) -> list[dict[str, Any]]:
    path = root / "record.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def assert_nowhere(root: Path, *values: str) -> None:
    """None of `values` in any file of the working directory, nor in the daemon's log."""
    files = [p for p in (root / "sync-tasks").rglob("*") if p.is_file()]
    assert files, "the working directory holds the task's files"
    for path in [*files, root / "daemon.log"]:
        data = path.read_bytes()
        for value in values:
            assert value.encode() not in data, f"{value} in {path}"


def test_rendered_providers_reach_terraform_and_nothing_else(tmp_path: Path) -> None:
    port = free_port()
    with servers() as (consul, vault):
        setup(tmp_path, port, consul, vault, "secret/aws")
        with daemon(tmp_path, port):
            # Every task runs once at start, as in CTS.
            wait_for(lambda: finished(port), DEADLINE, "the first run")
            ran = [r for r in records(tmp_path) if r["cmd"] in ("plan", "apply")]
            assert [r["cmd"] for r in ran] == ["apply"]  # a run applies; inspect plans
            for r in ran:
                assert attributes(r["aws"]) == {
                    "access_key": ACCESS_KEY,
                    "region": REGION,
                    "secret_key": SECRET,
                }
            # Vault was asked with the token from VAULT_TOKEN, KV v2 path shimmed.
            reads = vault.fake.reads
            assert [r.path for r in reads] == ["/v1/secret/data/aws"]
            assert all(r.token == VAULT_TOKEN for r in reads)
            _, tasks = call(port, "GET", "/v1/status/tasks?include=events")
            text = json.dumps(tasks)
            assert tasks["cfg"]["status"] == "successful", text
            assert_nowhere(tmp_path, SECRET, ACCESS_KEY, REGION)
            for value in (SECRET, ACCESS_KEY):
                assert value not in text
            # Terraform's output is kept with the secret replaced.
            _, task = call(port, "GET", "/v1/tasks/cfg")
            assert SECRET not in json.dumps(task)
            # A second run renders nothing again (the rendered provider is kept).
            status, body = call(port, "PATCH", "/v1/tasks/cfg?run=now", {"enabled": True})
            assert status == 200, body
            assert len(vault.fake.reads) == 1


@pytest.mark.parametrize(
    ("secret", "why"),
    [("secret/none", "no secret exists at secret/data/none")],
    ids=["missing"],
)
def test_a_template_that_cannot_render_fails_the_run_with_file_and_line(
    tmp_path: Path, secret: str, why: str
) -> None:
    port = free_port()
    with servers() as (consul, vault):
        setup(tmp_path, port, consul, vault, secret)
        with daemon(tmp_path, port):
            wait_for(lambda: finished(port), DEADLINE, "the first run")
            _, tasks = call(port, "GET", "/v1/status/tasks?include=events")
            assert tasks["cfg"]["status"] != "successful", tasks
            message = json.dumps(tasks["cfg"]["events"])
            assert f"config.hcl:{SECRET_LINE}" in message, message
            assert why in message, message
            # The task's status says it cannot be initialised, and why.
            init_error = tasks["cfg"]["init_error"]
            assert init_error and f"config.hcl:{SECRET_LINE}" in init_error, tasks
            assert not [r for r in records(tmp_path) if r["cmd"] in ("plan", "apply")]
            # The daemon serves on; nothing outside the secret's mount was asked for.
            assert call(port, "GET", "/v1/health")[0] == 200
            assert all(
                r.path.startswith("/v1/secret/") or "mounts" in r.path for r in vault.fake.reads
            )
            assert_nowhere(tmp_path, ACCESS_KEY, REGION)
