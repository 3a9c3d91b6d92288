"""Every key a CTS configuration file can hold (tests/fixtures/settings/cts/config_keys.txt,
taken from CTS's decoder) is acted on, warned about by name, or refused by name: none is
parsed and then ignored.

For each key the same configuration is loaded twice, without the key and with it: either
the settings differ (the key is acted on), or a warning names the key, or the load fails
with a message naming it. Which of the three it is, is pinned per key in OUTCOME, so that
a key that silently stops working fails here.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from reconciler._core.errors import ConfigError
from reconciler.settings import Settings, load_settings

FIXTURES = Path(__file__).parent.parent / "fixtures" / "settings" / "cts"
KEYS = [
    line.strip()
    for line in (FIXTURES / "config_keys.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

# The smallest block of each kind that loads (a condition or module_input needs these).
MINIMAL: dict[str, dict[str, Any]] = {
    "task.condition.[services]": {"names": ["web"]},
    "task.condition.[catalog-services]": {"regexp": "^web"},
    "task.condition.[consul-kv]": {"path": "app/config"},
    "task.condition.[schedule]": {"cron": "*/5 * * * *"},
    "task.module_input.[services]": {"names": ["api"]},
    "task.module_input.[consul-kv]": {"path": "app/input"},
    "task.source_input.[services]": {"names": ["api"]},
    "task.source_input.[consul-kv]": {"path": "app/input"},
    "service": {"name": "web"},
    "tls": {"enabled": True, "cert": "certs/cert.pem", "key": "certs/key.pem"},
}
# Keys that replace another of their block (one of the two may be set).
REPLACES = {"regexp": "names", "names": "regexp", "source": "module"}

# A value for each key, different from what the minimal configuration has.
SAMPLE: dict[str, Any] = {
    "log_level": "debug",
    "client_type": "consul-dev",
    "port": 8600,
    "working_dir": "elsewhere",
    "id": "cts-other",
    "syslog.enabled": True,
    "syslog.facility": "local2",
    "syslog.name": "cts-other",
    "buffer_period.enabled": False,
    "buffer_period.min": "7s",
    "buffer_period.max": "40s",
    "tls.enabled": False,
    "tls.cert": "certs/cert2.pem",
    "tls.key": "certs/key2.pem",
    "tls.verify_incoming": True,
    "tls.ca_cert": "certs/ca.pem",
    "tls.ca_path": "certs/cas",
    "consul.address": "consul.other:8500",
    "consul.token": "other-token",
    "consul.kv_namespace": "team",
    "consul.kv_path": "other/terraform",
    "consul.auth.enabled": True,
    "consul.auth.username": "cts",
    "consul.auth.password": "pw",
    "consul.tls.enabled": True,
    "consul.tls.verify": False,
    "consul.tls.ca_cert": "certs/ca.pem",
    "consul.tls.ca_path": "certs/cas",
    "consul.tls.cert": "certs/cert.pem",
    "consul.tls.key": "certs/key.pem",
    "consul.tls.server_name": "consul.service",
    "consul.transport.dial_keep_alive": "11s",
    "consul.transport.dial_timeout": "12s",
    "consul.transport.disable_keep_alives": True,
    "consul.transport.idle_conn_timeout": "13s",
    "consul.transport.max_idle_conns": 7,
    "consul.transport.max_idle_conns_per_host": 8,
    "consul.transport.tls_handshake_timeout": "14s",
    "consul.service_registration.enabled": False,
    "consul.service_registration.service_name": "cts-other",
    "consul.service_registration.address": "10.0.0.9",
    "consul.service_registration.namespace": "team",
    "consul.service_registration.default_check.enabled": False,
    "consul.service_registration.default_check.address": "http://10.0.0.9:8558",
    "vault.address": "https://vault.other:8200",
    "vault.enabled": False,
    "vault.namespace": "team",
    "vault.renew_token": True,
    "vault.token": "hvs.other",
    "vault.vault_agent_token_file": "/run/agent/token",
    "vault.unwrap_token": True,
    "vault.tls.enabled": False,
    "vault.tls.verify": False,
    "vault.tls.ca_cert": "/etc/vault/ca.pem",
    "vault.tls.ca_path": "/etc/vault/cas",
    "vault.tls.cert": "/etc/vault/c.pem",
    "vault.tls.key": "/etc/vault/c.key",
    "vault.tls.server_name": "vault.service",
    "vault.transport.dial_keep_alive": "11s",
    "vault.transport.dial_timeout": "12s",
    "vault.transport.disable_keep_alives": True,
    "vault.transport.idle_conn_timeout": "13s",
    "vault.transport.max_idle_conns": 7,
    "vault.transport.max_idle_conns_per_host": 8,
    "vault.transport.tls_handshake_timeout": "14s",
    "driver.[terraform].version": "1.5.7",
    "driver.[terraform].log": True,
    "driver.[terraform].persist_log": True,
    "driver.[terraform].path": "bin",
    "driver.[terraform].backend": {"local": {"path": "state.tfstate"}},
    "driver.[terraform].required_providers": {"aws": {"source": "hashicorp/aws"}},
    "terraform_provider": [{"aws": {"region": "eu-west-1"}}],
    "service.name": "web2",
    "service.id": "web-id",
    "service.description": "the web service",
    "service.namespace": "team",
    "service.datacenter": "dc2",
    "service.filter": 'Service.Tags contains "x"',
    "service.cts_user_defined_meta": {"owner": "team-a"},
    "task.name": "other",
    "task.description": "a task",
    "task.enabled": False,
    "task.module": "./mod2",
    "task.source": "./mod2",
    "task.version": "1.0.0",
    "task.providers": ["aws"],
    "task.services": ["web", "api"],
    "task.variable_files": ["vars.tfvars"],
    "task.variables": {"a": "b"},
    "task.working_dir": "tw",
    "task.terraform_version": "1.5.7",
    "task.terraform_cloud_workspace.execution_mode": "agent",
    "task.terraform_cloud_workspace.agent_pool_id": "apool-1",
    "task.terraform_cloud_workspace.agent_pool_name": "pool",
    "task.terraform_cloud_workspace.terraform_version": "1.5.7",
    "task.buffer_period.enabled": True,
    "task.buffer_period.min": "3s",
    "task.buffer_period.max": "9s",
    "task.condition.[services].names": ["web", "api"],
    "task.condition.[services].regexp": "^web",
    "task.condition.[services].datacenter": "dc2",
    "task.condition.[services].namespace": "team",
    "task.condition.[services].filter": 'Service.Tags contains "x"',
    "task.condition.[services].cts_user_defined_meta": {"owner": "a"},
    "task.condition.[services].use_as_module_input": False,
    "task.condition.[services].source_includes_var": False,
    "task.condition.[catalog-services].regexp": "^api",
    "task.condition.[catalog-services].datacenter": "dc2",
    "task.condition.[catalog-services].namespace": "team",
    "task.condition.[catalog-services].node_meta": {"rack": "r1"},
    "task.condition.[catalog-services].use_as_module_input": True,
    "task.condition.[catalog-services].source_includes_var": True,
    "task.condition.[consul-kv].path": "app/other",
    "task.condition.[consul-kv].recurse": True,
    "task.condition.[consul-kv].datacenter": "dc2",
    "task.condition.[consul-kv].namespace": "team",
    "task.condition.[consul-kv].use_as_module_input": False,
    "task.condition.[consul-kv].source_includes_var": False,
    "task.condition.[schedule].cron": "0 * * * *",
    "task.module_input.[services].names": ["api", "db"],
    "task.module_input.[services].regexp": "^api",
    "task.module_input.[services].datacenter": "dc2",
    "task.module_input.[services].namespace": "team",
    "task.module_input.[services].filter": 'Service.Tags contains "x"',
    "task.module_input.[services].cts_user_defined_meta": {"owner": "a"},
    "task.module_input.[consul-kv].path": "app/other",
    "task.module_input.[consul-kv].recurse": True,
    "task.module_input.[consul-kv].datacenter": "dc2",
    "task.module_input.[consul-kv].namespace": "team",
    "task.source_input.[services].names": ["api", "db"],
    "task.source_input.[consul-kv].path": "app/other",
}

# What each key does here: "acted" on, "warned" about, or "refused".
WARNED = {
    "client_type",
    "syslog.enabled",
    "syslog.facility",
    "syslog.name",
    "consul.kv_namespace",
    "vault.renew_token",
    "driver.[terraform].version",
    "task.services",
    "task.source",
    "task.condition.[services].source_includes_var",
    "task.condition.[catalog-services].source_includes_var",
    "task.condition.[consul-kv].source_includes_var",
    # Without verify_incoming they have no effect, and the warning says so.
    "tls.ca_cert",
    "tls.ca_path",
}
REFUSED = {
    "task.terraform_version",
    "task.terraform_cloud_workspace.execution_mode",
    "task.terraform_cloud_workspace.agent_pool_id",
    "task.terraform_cloud_workspace.agent_pool_name",
    "task.terraform_cloud_workspace.terraform_version",
}


def expected(key: str) -> str:
    return "warned" if key in WARNED else "refused" if key in REFUSED else "acted"


def base_config(key: str) -> dict[str, Any]:
    """The smallest configuration that holds `key`'s block."""
    task: dict[str, Any] = {"name": "t", "module": "./mod"}
    if ".condition." in key:
        kind = key.split("[")[1].split("]")[0]
        task["condition"] = {kind: dict(MINIMAL[_block_of(key)])}
    else:
        task["condition"] = {"schedule": dict(MINIMAL["task.condition.[schedule]"])}
    if ".module_input." in key or ".source_input." in key:
        name = "module_input" if ".module_input." in key else "source_input"
        kind = key.split("[")[1].split("]")[0]
        task[name] = {kind: dict(MINIMAL[_block_of(key)])}
    config: dict[str, Any] = {
        "consul": {"address": "consul.test:8500"},
        "driver": {"terraform": {}},
        "task": [task],
    }
    top = key.split(".")[0]
    if top == "service":
        config["service"] = [dict(MINIMAL["service"])]
    if top == "tls":
        config["tls"] = dict(MINIMAL["tls"])
        if key == "tls.verify_incoming":  # it needs a CA to verify clients with
            config["tls"]["ca_cert"] = "certs/ca.pem"
    if key == "task.providers":
        config["terraform_provider"] = [{"aws": {"region": "eu-west-1"}}]
    return config


def _block_of(key: str) -> str:
    return key.rsplit(".", 1)[0]


def with_key(config: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(config)
    parts = [p.strip("[]") for p in key.split(".")]
    node: Any = out
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if isinstance(node, list):  # task, service: the one block of the list
            node = node[0]
    leaf = parts[-1]
    node[leaf] = value
    if leaf in REPLACES:
        node.pop(REPLACES[leaf], None)
    return out


def project(root: Path) -> None:
    """The files the samples name."""
    certs = FIXTURES / "certs"
    (root / "certs" / "cas").mkdir(parents=True)
    for name, source in (
        ("cert.pem", "cts_cert.pem"),
        ("cert2.pem", "cts_cert.pem"),
        ("key.pem", "cts_key.pem"),
        ("key2.pem", "cts_key.pem"),
        ("ca.pem", "ca_cert.pem"),
    ):
        shutil.copyfile(certs / source, root / "certs" / name)
    shutil.copyfile(certs / "ca_cert.pem", root / "certs" / "cas" / "ca.pem")
    for module in ("mod", "mod2"):
        (root / module).mkdir()
        (root / module / "main.tf").write_text("")
    (root / "vars.tfvars").write_text('a = "b"\n')
    (root / "bin").mkdir()
    (root / "bin" / "terraform").write_text("")
    (root / "bin" / "terraform").chmod(0o755)


def outcome(path: Path, config: dict[str, Any]) -> Settings | ConfigError:
    # One line of JSON, always at the same path: locations are equal between the two loads.
    path.write_text(json.dumps(config))
    try:
        return load_settings([path], environ={}, hostname="testhost")
    except ConfigError as exc:
        return exc


def comparable(s: Settings) -> Settings:
    return dataclasses.replace(s, warnings=())


def mentions(text: str, key: str) -> bool:
    """The message names the key, or a block that holds it (a block that is refused or
    not acted on as a whole: syslog, terraform_cloud_workspace); "task", "driver" and a
    block kind are too general to count."""
    parts = [p for p in key.split(".") if not p.startswith("[")]
    names = [parts[-1], *(p for p in parts[:-1] if p not in ("task", "driver", "condition"))]
    return any(name in text for name in names)


def test_the_inventory_is_complete() -> None:
    assert set(KEYS) == set(SAMPLE), set(KEYS) ^ set(SAMPLE)
    assert len(KEYS) == len(set(KEYS)) >= 130


@pytest.mark.parametrize("key", KEYS)
def test_each_cts_key_is_acted_on_warned_about_or_refused(tmp_path: Path, key: str) -> None:
    project(tmp_path)
    path = tmp_path / "cts.json"
    base = base_config(key)
    before = outcome(path, base)
    assert isinstance(before, Settings), f"the configuration without {key} loads: {before}"
    after = outcome(path, with_key(base, key, SAMPLE[key]))
    if isinstance(after, ConfigError):
        got = "refused"
        assert mentions(str(after), key), f"{key}: the error does not name it: {after}"
    else:
        new = [str(w) for w in after.warnings if str(w) not in {str(v) for v in before.warnings}]
        named = [w for w in new if mentions(w, key)]
        if named:
            got = "warned"
        else:
            assert comparable(after) != comparable(before), f"{key} is read and ignored"
            got = "acted"
    assert got == expected(key), f"{key}: {got}, {after if got != 'acted' else ''}"
