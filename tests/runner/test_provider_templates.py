"""Provider templates rendered when a task is initialised: from the environment, Consul KV
and Vault; a rendered value never reaches a workspace file, only the environment of the
Terraform that runs the task (and that Terraform reads it: tested with the real one)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from runfakes import spec

from reconciler._core.errors import Location
from reconciler.runner.inputs import ModuleInputs
from reconciler.runner.state import NoConsulError
from reconciler.runner.templates import ProviderTemplates, TemplateError, scrub
from reconciler.runner.workspace import Workspaces
from reconciler.settings.model import TerraformDriverSettings, TerraformProviderSettings

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-value-from-vault"


class KV:
    def __init__(self, values: dict[str, bytes], *, absent: bool = False) -> None:
        self.values, self.absent = values, absent

    async def get(self, key: str) -> bytes | None:
        if self.absent:
            raise NoConsulError("connection refused")
        return self.values.get(key)


class Vault:
    def __init__(self, secrets: dict[str, Mapping[str, Any]]) -> None:
        self.secrets = secrets
        self.reads: list[str] = []

    async def read(self, path: str) -> Mapping[str, Any]:
        self.reads.append(path)
        if path not in self.secrets:
            raise LookupError(f"no secret at {path}")
        return self.secrets[path]

    def forget_mounts(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


def provider(body: dict[str, Any], name: str = "aws") -> TerraformProviderSettings:
    lines = {key: 10 + i for i, key in enumerate(body)}
    return TerraformProviderSettings(name, body, Location("/etc/cts/cts.hcl", 9), lines)


AWS = provider(
    {
        "region": "eu-west-1",
        "access_key": '{{ env "AWS_KEY" }}',
        "token": '{{ key "aws/token" }}',
        "secret_key": '{{ with secret "secret/data/aws" }}{{ .Data.data.key }}{{ end }}',
        "task_env": {"AWS_PROFILE": '{{ env "PROFILE" }}'},
    }
)


def templates(**kw: Any) -> ProviderTemplates:
    return ProviderTemplates(
        [AWS],
        environ={"AWS_KEY": "AKIAEXAMPLE", "PROFILE": "prod"},
        kv=kw.get("kv", KV({"aws/token": b"consul-token"})),
        vault=kw.get("vault", Vault({"secret/data/aws": {"data": {"key": SECRET}}})),
    )


async def test_each_kind_of_template_renders() -> None:
    vault = Vault({"secret/data/aws": {"data": {"key": SECRET}}})
    t = templates(vault=vault)
    rendered = await t.render("aws")
    assert dict(rendered.body) == {
        "region": "eu-west-1",
        "access_key": "AKIAEXAMPLE",
        "token": "consul-token",
        "secret_key": SECRET,
        "task_env": {"AWS_PROFILE": "prod"},
    }
    assert SECRET not in repr(rendered)
    await t.render("aws")
    assert vault.reads == ["secret/data/aws"]  # rendered once until a reload
    t.clear()
    await t.render("aws")
    assert len(vault.reads) == 2


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"kv": KV({})}, 'cts.hcl:12: terraform_provider "aws" "token": {{ key "aws/token" }}: '
         "no such key in Consul KV"),
        ({"kv": KV({}, absent=True)}, "Consul does not answer"),
        ({"vault": Vault({})}, 'cts.hcl:13: terraform_provider "aws" "secret_key": '
         '{{ with secret "secret/data/aws" }}: no secret at secret/data/aws'),
        ({"vault": Vault({"secret/data/aws": {"data": {}}})}, "has no field .Data.data.key"),
        ({"vault": None}, "no vault block is configured"),
    ],
)  # fmt: skip
async def test_a_template_that_cannot_render_says_where_and_why(
    kw: dict[str, Any], message: str
) -> None:
    with pytest.raises(TemplateError) as info:
        await templates(**kw).render("aws")
    assert message in info.value.message
    assert "AKIAEXAMPLE" not in info.value.message


def test_scrub_replaces_rendered_values_in_output() -> None:
    line = f"Error: invalid key {SECRET} for region 1"
    assert scrub(line, [SECRET, "1"]) == "Error: invalid key (sensitive) for region 1"


async def test_a_rendered_provider_goes_to_the_environment_never_to_a_file(
    tmp_path: Path,
) -> None:
    workspaces = Workspaces(
        tmp_path / "work", TerraformDriverSettings(), [AWS], templates=templates()
    )
    ws = await workspaces.prepare(spec("t", providers=("aws",)), tmp_path)
    ws.write()
    ws.write_inputs(ModuleInputs())
    for path in ws.directory.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for value in ("AKIAEXAMPLE", "consul-token", SECRET, "prod"):
                assert value not in text, f"{value} in {path.name}"
    assert not (ws.directory / "providers.auto.tfvars").exists()
    assert 'variable "aws"' in (ws.directory / "variables.tf").read_text()
    assert ws.env["AWS_PROFILE"] == "prod"
    assert SECRET in ws.env["TF_VAR_aws"]
    assert ws.redact(f"x {SECRET} y") == "x (sensitive) y"
    assert ws.secret_digest and SECRET not in ws.secret_digest


async def test_terraform_reads_the_provider_variable_from_the_environment(
    tmp_path: Path,
) -> None:
    """The real Terraform: the object in TF_VAR_aws is the variable's value, and it shows
    as (sensitive) in the plan."""
    workspaces = Workspaces(
        tmp_path / "work", TerraformDriverSettings(), [AWS], templates=templates()
    )
    ws = await workspaces.prepare(spec("t", providers=("aws",)), tmp_path)
    ws.directory.mkdir(parents=True)
    (ws.directory / "variables.tf").write_text(ws.files()["variables.tf"] or "")
    (ws.directory / "out.tf").write_text(
        'output "key" {\n  value     = var.aws.secret_key\n  sensitive = true\n}\n'
        'output "same" {\n  value = nonsensitive(var.aws.secret_key == "' + SECRET + '")\n}\n'
    )
    (ws.directory / "terraform.tfvars").write_text("services = {}\n")
    env = {**os.environ, **ws.env, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.runner.tfshim", "plan", "-no-color", "-input=false"],
        cwd=ws.directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "same = true" in result.stdout and "key  = (sensitive value)" in result.stdout
    assert SECRET not in result.stdout
