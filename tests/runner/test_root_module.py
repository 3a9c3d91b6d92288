"""The generated root module, against golden files (cts-spec 4.1, 4.2).

Regenerate after a deliberate change with `UPDATE_GOLDEN=1 pytest tests/runner`, then
review the diff of tests/fixtures/golden/.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from runfakes import spec

from reconciler.runner.inputs import ModuleInputs, ServiceInstance, gather_inputs
from reconciler.runner.rootmodule import (
    ProviderConfig,
    RootModule,
    render_main_tf,
    render_providers_auto_tfvars,
    render_terraform_tfvars,
    render_variables_auto_tfvars,
    render_variables_module_tf,
    render_variables_tf,
    type_of,
)
from reconciler.runner.workspace import Workspaces, module_source
from reconciler.settings.model import TerraformDriverSettings, TerraformProviderSettings
from reconciler.taskfiles.model import (
    CatalogServicesCondition,
    ConsulKVInput,
    ScheduleCondition,
    ServicesCondition,
)

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden"


def terraform(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The bundled Terraform, as the daemon runs it."""
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "reconciler.runner.tfshim", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


MODULE = RootModule(
    task="test",
    description="user description for task named 'test'",
    source="namespace/consul-terraform-sync/consul//modules/test",
    version="0.0.0",
    variables={
        "one": 1,
        "bool_true": True,
        "tags": ["a", "b"],
        "mixed": ["a", 1],
        "obj": {"argStr": "x", "argNum": 2, "argList": ["l"], "nested": {"k": "v"}},
        "template": "literal ${not_interpolated}",
    },
    providers=(
        ProviderConfig(
            "testProvider",
            {
                "alias": "tp",
                "attr": "value",
                "count": 10,
                "obj": {"username": "name", "id": "123"},
                "task_env": {"TOKEN": "secret"},
            },
        ),
    ),
    required_providers={"testProvider": {"source": "namespace/testProvider", "version": "1.1.0"}},
    backend={"local": {"path": "terraform.tfstate"}},
)

API = ServiceInstance(
    id="api",
    name="api",
    node="worker-01",
    address="1.2.3.4",
    port=8080,
    tags=("tag",),
    node_id="39e5a7f5-2834-e16d-6925-78167c9f50d8",
    node_address="127.0.0.1",
    node_datacenter="dc1",
    node_tagged_addresses={"lan": "127.0.0.1", "wan": "127.0.0.1"},
    node_meta={"consul-network-segment": ""},
)
WEB = ServiceInstance(
    id="web",
    name="web",
    node="worker-01",
    namespace="ns",
    address="1.1.1.1",
    port=8000,
    meta={"version": "2"},
    tags=("tag_a", "tag_b"),
    node_datacenter="dc1",
)


def check_golden(name: str, text: str | None) -> None:
    assert text is not None
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden file"


def test_main_tf() -> None:
    check_golden("main.tf", render_main_tf(MODULE))


def test_variables_tf() -> None:
    check_golden("variables.tf", render_variables_tf(MODULE))


def test_variables_module_tf_and_values() -> None:
    check_golden("variables.module.tf", render_variables_module_tf(MODULE))
    check_golden("variables.auto.tfvars", render_variables_auto_tfvars(MODULE))
    check_golden("providers.auto.tfvars", render_providers_auto_tfvars(MODULE))


def test_terraform_tfvars() -> None:
    inputs = ModuleInputs(services={API.key: API, WEB.key: WEB}, user_meta={"owner": "team-a"})
    check_golden("terraform.tfvars", render_terraform_tfvars(MODULE, inputs))


def test_terraform_tfvars_without_services_and_other_inputs() -> None:
    module = RootModule(task="kv", description="", source="./m", consul_kv=True)
    text = render_terraform_tfvars(module, ModuleInputs(consul_kv={"path/a": "1"}))
    check_golden("terraform_kv.tfvars", text)
    assert "services = {}\n" in text


def test_service_keys_leave_out_empty_parts() -> None:
    assert API.key == "api.worker-01.dc1"
    assert WEB.key == "web.worker-01.ns.dc1"


# Provider names used in CTS's documentation and examples, keywords of HCL expressions
# (`null`, `for`), and a name with a dash.
PROVIDER_NAMES = (
    "null", "local", "random", "time", "tls", "http", "external", "aws", "azurerm",
    "google", "kubernetes", "helm", "consul", "vault", "panos", "fortios", "bigip", "aci",
    "nsxt", "infoblox", "cloudflare", "terraform", "for", "azure-devops",
)  # fmt: skip


def test_every_provider_name_renders_files_terraform_reads(tmp_path: Path) -> None:
    """variables.tf and providers.auto.tfvars of providers under each name, read by the
    real Terraform (a plan of outputs that read every value): `"null" = {` at the top of
    a .tfvars file is refused ("Argument names must not be quoted")."""
    providers = [
        ProviderConfig(name, {"attr": f"value-{name}", "nested": {"n": 1}})
        for name in PROVIDER_NAMES
    ]
    module = RootModule(task="names", description="", source="./m", providers=providers)
    (tmp_path / "variables.tf").write_text(render_variables_tf(module))
    providers_tfvars = render_providers_auto_tfvars(module)
    assert providers_tfvars is not None
    assert "\nnull = {" in providers_tfvars
    (tmp_path / "providers.auto.tfvars").write_text(providers_tfvars)
    values = ", ".join(f"var.{n}.attr, var.{n}.nested.n" for n in PROVIDER_NAMES)
    (tmp_path / "outputs.tf").write_text(
        f'output "values" {{\n  value = nonsensitive(jsonencode([{values}]))\n}}\n'
    )
    (tmp_path / "terraform.tfvars").write_text(render_terraform_tfvars(module, ModuleInputs()))
    result = terraform(tmp_path, "plan", "-input=false", "-no-color")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in PROVIDER_NAMES:
        assert f"value-{name}" in result.stdout


def test_a_task_without_variables_or_providers_has_no_optional_files() -> None:
    module = RootModule(task="t", description="", source="./m")
    assert render_variables_module_tf(module) is None
    assert render_variables_auto_tfvars(module) is None
    assert render_providers_auto_tfvars(module) is None
    assert 'backend "local"' not in render_main_tf(module)


def test_types_are_inferred_as_cts_does() -> None:
    assert type_of("x") == "string"
    assert type_of(True) == "bool"
    assert type_of(1.5) == "number"
    assert type_of([]) == "list(any)"
    assert type_of([1, 2]) == "list(any)"
    assert type_of([1, "a"]) == "tuple([number, string])"
    assert type_of({}) == "object({})"


def test_module_paths_resolve_against_the_task_file(tmp_path: Path) -> None:
    work = tmp_path / "work" / "t"
    tasks = tmp_path / "repo" / "tasks"
    assert module_source("../modules/m", tasks, work) == "../../repo/modules/m"
    assert module_source("./m", tasks, work) == "../../repo/tasks/m"
    assert module_source(str(tmp_path / "abs"), tasks, work) == "../../abs"
    assert module_source("hashicorp/consul/aws", tasks, work) == "hashicorp/consul/aws"
    assert module_source("git::https://x/y.git", tasks, work) == "git::https://x/y.git"


def test_workspace_from_a_task(tmp_path: Path) -> None:
    varfile = tmp_path / "tasks" / "vars.tfvars"
    varfile.parent.mkdir()
    varfile.write_text('a = "from file"\nb = 2\n')
    workspaces = Workspaces(
        tmp_path / "work",
        TerraformDriverSettings(backend={"local": {}}),
        (TerraformProviderSettings("p", {"alias": "x", "region": "r", "task_env": {"K": "V"}}),),
    )
    task = spec(
        "t",
        module="../modules/m",
        providers=("p.x",),
        variable_files=("vars.tfvars",),
        variables={"b": 3},
        condition=CatalogServicesCondition(regexp=".*"),
        module_inputs=(ConsulKVInput(path="k"),),
    )
    ws = workspaces.for_task(task, tmp_path / "tasks")
    assert ws.directory == tmp_path / "work" / "t"
    assert ws.module.source == "../../modules/m"
    assert dict(ws.module.variables) == {"a": "from file", "b": 3}
    assert ws.env == {"K": "V"}
    assert ws.terraform_workspace is None
    assert ws.module.catalog_services and ws.module.consul_kv
    main = render_main_tf(ws.module)
    assert 'provider "p" {\n  region = var.p.region\n}' in main
    assert "alias" not in main.split("provider")[1]

    ws.write()
    assert sorted(p.name for p in ws.directory.iterdir()) == [
        "main.tf",
        "providers.auto.tfvars",
        "variables.auto.tfvars",
        "variables.module.tf",
        "variables.tf",
    ]
    assert oct(ws.directory.stat().st_mode & 0o777) == "0o700"
    assert not ws.is_initialized("tf")
    ws.mark_initialized("tf")
    assert ws.is_initialized("tf") and not ws.is_initialized("tofu")
    # A definition change means init again; the optional files that no longer apply go.
    ws2 = workspaces.for_task(spec("t", module="../modules/m"), tmp_path / "tasks")
    assert not ws2.is_initialized("tf")
    ws2.write()
    assert not (ws.directory / "variables.module.tf").exists()


def test_shared_backends_select_a_workspace_per_task(tmp_path: Path) -> None:
    workspaces = Workspaces(tmp_path, TerraformDriverSettings(backend={"consul": {"path": "p"}}))
    assert workspaces.for_task(spec("t"), tmp_path).terraform_workspace == "t"


def test_a_missing_variable_file_is_a_clear_error(tmp_path: Path) -> None:
    from reconciler.runner.workspace import WorkspaceError

    with pytest.raises(WorkspaceError, match=r'task "t": variable file .*nope.tfvars'):
        Workspaces(tmp_path).for_task(spec("t", variable_files=("nope.tfvars",)), tmp_path)


@pytest.mark.anyio
async def test_inputs_follow_the_condition_and_module_inputs() -> None:
    from runfakes import StaticCatalog

    catalog = StaticCatalog([API, WEB])
    condition = ServicesCondition(names=("web",), cts_user_defined_meta={"a": "b"})
    services = spec("s", condition=condition)
    inputs = await gather_inputs(services, catalog)
    assert list(inputs.services) == [WEB.key] and inputs.user_meta == {"a": "b"}
    assert inputs.catalog_services is None and inputs.consul_kv is None

    hidden = spec("h", condition=ServicesCondition(names=("web",), use_as_module_input=False))
    assert (await gather_inputs(hidden, catalog)).services == {}

    scheduled = spec("c", condition=ScheduleCondition(cron="@daily"), services=("api",))
    assert list((await gather_inputs(scheduled, catalog)).services) == [API.key]
