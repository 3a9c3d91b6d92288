"""What an API caller may run, through `reconciler start`: a task created through the API
may use local modules under the task sources and the configuration's directory and no
provider, unless an `api_tasks` block says otherwise; anything else is a 403 naming the
rule (and its file:line), answered before anything runs: `run=inspect` included, since a
plan can run a module's code."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from serverkit import daemon_process, post_task, wait_listening

MODULE = """\
resource "terraform_data" "x" {
  provisioner "local-exec" {
    command = "touch ${path.module}/RAN"
  }
}
variable "services" {
  type = any
}
"""


def task(name: str, module: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "module": module,
        "condition": {"schedule": {"cron": "0 0 1 1 *"}},
        **extra,
    }


def module(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "main.tf").write_text(MODULE)
    return directory


def test_the_default_allows_local_modules_of_the_installation_only(tmp_path: Path) -> None:
    root = tmp_path / "etc"
    root.mkdir()
    inside = module(root / "mod")
    outside = module(tmp_path / "elsewhere")
    provider = 'terraform_provider "aws" {\n  region = "eu-west-1"\n}\n'
    with daemon_process(root, provider) as (proc, port):
        wait_listening(port, proc)
        for query in ("?run=now", "?run=inspect", ""):
            status, body = post_task(port, task("evil", str(outside)), query)
            assert status == 403, body
            message = body["error"]["message"]
            assert f'module "{outside}" is not allowed' in message
            assert "api_tasks" in message
        assert not (outside / "RAN").exists()
        for remote in ("git::https://example.com/evil.git", "evil/module/aws"):
            assert post_task(port, task("evil", remote))[0] == 403
        status, body = post_task(port, task("web", "../mod", providers=["aws"]))
        assert status == 403, body
        assert 'provider "aws" is not allowed' in body["error"]["message"]
        status, body = post_task(port, task("web", "../mod"), "?run=now")
        assert status == 201, body
        assert (inside / "RAN").exists()


def test_an_api_tasks_block_lists_what_is_allowed(tmp_path: Path) -> None:
    root = tmp_path / "etc"
    root.mkdir()
    module(root / "modules" / "net")
    module(root / "mod")
    config = (
        'terraform_provider "aws" {\n  region = "eu-west-1"\n}\n'
        "api_tasks {\n"
        '  modules   = ["./modules/*", "git::https://git.example.com/acme/*"]\n'
        '  providers = ["aws"]\n'
        "}\n"
    )
    with daemon_process(root, config) as (proc, port):
        wait_listening(port, proc)
        # Allowed: past the policy (the aws provider then cannot be downloaded here).
        status, body = post_task(port, task("net", "../modules/net", providers=["aws"]))
        assert status != 403 and "terraform init failed" in body["error"]["message"], body
        status, body = post_task(port, task("net", "../modules/net"))
        assert status == 201, body
        status, body = post_task(port, task("web", "../mod"))
        assert status == 403, body
        lines = (root / "config.hcl").read_text().splitlines()
        modules_line = next(i for i, line in enumerate(lines, 1) if "modules   =" in line)
        assert f"config.hcl:{modules_line}" in body["error"]["message"], body
        # A remote module the list allows passes the policy (and then fails to fetch).
        status, body = post_task(port, task("remote", "git::https://git.example.com/acme/net.git"))
        assert status != 403, body
        status, body = post_task(port, task("other", "git::https://git.example.com/evil/x.git"))
        assert status == 403, body
