"""Loading a daemon configuration: defaults, a complete CTS configuration, the forms
its blocks take, relative paths, the embedded catalog."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from settingskit import FIXTURES, S, copy_certs, load, located, problems_of, write

from reconciler._core.errors import Location
from reconciler.settings import (
    BufferPeriodSettings,
    ConsulAuthSettings,
    ConsulSettings,
    ConsulTLSSettings,
    ConsulTransportSettings,
    DefaultCheckSettings,
    DirectorySourceSettings,
    ServiceRegistrationSettings,
    ServiceSettings,
    SyslogSettings,
    TerraformDriverSettings,
    TLSSettings,
    global_defaults,
)
from reconciler.taskfiles.model import GlobalDefaults, ServicesCondition

# --- defaults --------------------------------------------------------------------------------


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load(write(tmp_path, "cts.hcl", "# nothing set\nport = 8558\n"))
    assert s.log_level == "INFO"
    assert s.port == 8558
    assert s.bind_address == "127.0.0.1"
    assert s.working_dir == tmp_path / "sync-tasks"  # CTS: relative to the process CWD
    assert s.id == "cts-testhost"
    assert s.client_type == ""
    assert s.buffer_period == BufferPeriodSettings(True, 5 * S, 20 * S)
    assert s.syslog == SyslogSettings(False, "LOCAL0", "consul-terraform-sync")
    assert s.tls == TLSSettings()
    assert s.consul == ConsulSettings(
        address="localhost:8500",
        token="",
        auth=ConsulAuthSettings(False, "", ""),
        tls=ConsulTLSSettings(enabled=False, verify=True),
        transport=ConsulTransportSettings(30 * S, 30 * S, False, 5 * S, 0, 100, 10 * S),
        kv_namespace="",
        kv_path="consul-terraform-sync/",
        service_registration=ServiceRegistrationSettings(
            True, "consul-terraform-sync", "", "", DefaultCheckSettings(True, "")
        ),
    )
    assert s.driver == TerraformDriverSettings(
        version=None,
        path=None,
        log=False,
        persist_log=False,
        workers=4,
        required_providers={},
        # Not configured: each task's state is placed by reconciler.runner.state.
        backend=None,
    )
    assert (s.terraform_providers, s.services, s.sources, s.tasks) == ((), (), (), ())
    assert s.vault is None
    assert s.warnings == ()
    assert global_defaults(s) == GlobalDefaults(True, 5 * S, 20 * S)


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load(write(tmp_path, "cts.hcl", "port = 1\n"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.port = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.consul.address = "x"  # type: ignore[misc]


# --- a realistic CTS configuration, every key ------------------------------------------------


def test_full_cts_config_loads_unchanged() -> None:
    s = load(FIXTURES / "cts" / "cts.hcl")
    base = FIXTURES / "cts"
    assert (s.log_level, s.port, s.id) == ("INFO", 8502, "cts-01")
    assert s.working_dir == base / "working"
    assert s.syslog == SyslogSettings(True, "LOCAL2", "consul-terraform-sync")
    assert s.buffer_period == BufferPeriodSettings(True, 20 * S, 60 * S)
    assert s.tls == TLSSettings(
        True,
        base / "certs/cts_cert.pem",
        base / "certs/cts_key.pem",
        True,
        base / "certs/ca_cert.pem",
        None,
    )
    c = s.consul
    assert (c.address, c.token, c.kv_path, c.kv_namespace) == (
        "consul.example.com:8501",
        "token",
        "cts-kv/",
        "team-a",
    )
    assert c.auth == ConsulAuthSettings(True, "username", "password")
    assert c.tls == ConsulTLSSettings(
        True,
        False,
        Path("/etc/consul.d/cert.pem"),
        Path("/etc/consul.d/key.pem"),
        Path("/etc/consul.d/ca.pem"),
        None,
        "consul.example.com",
    )
    assert c.transport == ConsulTransportSettings(5 * S, 10 * S, False, 60 * S, 10, 100, 10 * S)
    assert c.service_registration == ServiceRegistrationSettings(
        True, "cts", "172.22.0.2", "ns-1", DefaultCheckSettings(True, "https://172.22.0.2:8558")
    )
    d = s.driver
    assert (d.version, d.path, d.log, d.persist_log) == (
        "1.5.7",
        Path("/usr/local/bin"),
        True,
        False,
    )
    assert d.required_providers == {
        "panos": {"source": "PaloAltoNetworks/panos", "version": "1.11.1"},
        "aws": {"source": "hashicorp/aws", "version": "3.33.0"},
    }
    # The user's consul backend is merged over CTS's default one.
    assert d.backend == {
        "consul": {
            "address": "consul.example.com:8501",
            "path": "custom/terraform",
            "gzip": True,
            "scheme": "https",
            "ca_file": "/etc/consul.d/ca.pem",
            "cert_file": "/etc/consul.d/cert.pem",
            "key_file": "/etc/consul.d/key.pem",
        }
    }
    assert s.vault is not None and s.vault.enabled
    assert (s.vault.address, s.vault.tls.ca_cert) == (
        "https://vault.example.com:8200",
        "/etc/vault.d/ca.pem",
    )
    aws_a, aws_b, panos = s.terraform_providers
    assert (aws_a.id, aws_b.id, panos.id) == ("aws.a", "aws.b", "panos")
    assert aws_a.task_env == {"AWS_ACCESS_KEY_ID": '{{ env "CTS_AWS_ACCESS_KEY_ID_A" }}'}
    assert aws_a.body["alias"] == "a"
    assert aws_b.arguments == {
        "alias": "b",
        "profile": "team-b",
        "assume_role": {"role_arn": "arn:aws:iam::123456789012:role/cts"},
    }
    assert panos.auto_commit and not aws_a.auto_commit
    assert aws_a.location == Location(str(FIXTURES / "cts" / "cts.hcl"), 94)
    assert s.services == (
        ServiceSettings("web", "web", "all instances of the service web in datacenter dc1", "dc1"),
        ServiceSettings(
            "api", "api-dc2", datacenter="dc2", cts_user_defined_meta={"owner": "team-a"}
        ),
    )
    assert [(t.spec.name, t.line) for t in s.tasks] == [
        ("website-x", 129),
        ("firewall", 143),
        ("nightly", 158),
    ]
    assert s.tasks[0].spec.condition == ServicesCondition(names=("web", "api"))
    assert s.tasks[0].file == str(FIXTURES / "cts" / "cts.hcl")
    deprecated = [w for w in s.warnings if w.message.startswith("the 'service' block is")]
    assert len(deprecated) == 2
    unsupported = [w.message.split(" is not supported")[0] for w in s.warnings]
    assert sorted(u for u in unsupported if "deprecated" not in u) == [
        '"auto_commit"',
        "consul kv_namespace",
        'driver "terraform" version',
        "syslog",
    ]


def test_json_config_equals_hcl_config() -> None:
    hcl = load(FIXTURES / "cts" / "cts.hcl")
    json = load(FIXTURES / "cts" / "cts.json")
    assert dataclasses.replace(json, tasks=()) == dataclasses.replace(hcl, tasks=())
    assert [t.spec for t in json.tasks] == [t.spec for t in hcl.tasks]
    assert json.port == 8502  # "8502": CTS decodes weakly typed


def test_hcl1_style_blocks_written_as_attributes(tmp_path: Path) -> None:
    s = load(
        write(
            tmp_path,
            "cts.hcl",
            """
        consul = {
          address = "c:8500"
          tls = { enabled = true, verify = false }
          service_registration = { default_check = { enabled = false } }
        }
        buffer_period = { min = "1s" }
        driver "terraform" {
          backend = { local = { path = "tf.state" } }
          required_providers = { local = { source = "hashicorp/local" } }
        }
    """,
        )
    )
    assert s.consul.address == "c:8500"
    assert (s.consul.tls.enabled, s.consul.tls.verify) == (True, False)
    assert not s.consul.service_registration.default_check.enabled
    assert s.buffer_period == BufferPeriodSettings(True, 1 * S, 4 * S)  # max defaults to 4 x min
    assert s.driver.backend == {"local": {"path": "tf.state"}}
    assert s.driver.required_providers == {"local": {"source": "hashicorp/local"}}


def test_cts_docs_node_meta_block(tmp_path: Path) -> None:
    s = load(
        write(
            tmp_path,
            "cts.hcl",
            """
        task {
          name   = "t"
          module = "m"
          condition "catalog-services" {
            regexp = "web.*"
            node_meta {
              key = "value"
            }
          }
        }
    """,
        )
    )
    assert s.tasks[0].spec.condition.node_meta == {"key": "value"}  # type: ignore[union-attr]


def test_new_keys(tmp_path: Path) -> None:
    s = load(
        write(
            tmp_path,
            "cts.hcl",
            """
        bind_address = "0.0.0.0"
        client_type  = "development"
        log_level    = "trace"
        driver "terraform" {
          workers = 8
        }
        syslog {
          enabled = false
          name    = "x"
        }
    """,
        )
    )
    assert (s.bind_address, s.client_type, s.log_level) == ("0.0.0.0", "development", "TRACE")
    assert s.driver.workers == 8
    assert not s.syslog.enabled  # explicit false wins over "a field implies enabled"


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ('enabled = false\nmin = "9s"', BufferPeriodSettings(False, 0, 0)),
        ("enabled = true", BufferPeriodSettings(True, 5 * S, 20 * S)),
        ('min = "10s"', BufferPeriodSettings(True, 10 * S, 40 * S)),
        ('max = "2s"', BufferPeriodSettings(True, 5 * S, 5 * S)),  # min > max: max = min, silently
        ('min = "30s"\nmax = "10s"', BufferPeriodSettings(True, 30 * S, 30 * S)),
    ],
)
def test_buffer_period(tmp_path: Path, block: str, expected: BufferPeriodSettings) -> None:
    s = load(write(tmp_path, "cts.hcl", f"buffer_period {{\n{block}\n}}\n"))
    assert s.buffer_period == expected
    assert global_defaults(s) == GlobalDefaults(expected.enabled, expected.min, expected.max)


# --- relative paths --------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path,
        "etc/cts/cts.hcl",
        """
        working_dir = "work"
        tls {
          cert = "certs/api.pem"
          key  = "../keys/api.key"
        }
        consul {
          tls {
            ca_cert = "ca.pem"
          }
        }
        driver "terraform" {
          path = "bin"
          backend "consul" {}
        }
        source "directory" {
          path = "tasks"
        }
    """,
    )
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    conf = tmp_path / "etc" / "cts"
    copy_certs(cert=conf / "certs/api.pem", key=tmp_path / "etc/keys/api.key")
    for arg in ("../etc/cts/cts.hcl", "../etc/cts", str(conf / "cts.hcl")):
        s = load(arg)
        assert s.working_dir == conf / "work"
        assert (s.tls.cert, s.tls.key) == (conf / "certs/api.pem", tmp_path / "etc/keys/api.key")
        assert s.consul.tls.ca_cert == conf / "ca.pem"
        assert s.driver.backend["consul"]["ca_file"] == str(conf / "ca.pem")
        assert s.driver.path == conf / "bin"
        assert s.sources == (DirectorySourceSettings(conf / "tasks"),)


def test_each_file_resolves_its_own_paths(tmp_path: Path) -> None:
    a = write(tmp_path, "a/cts.hcl", 'working_dir = "work-a"\n')
    b = write(tmp_path, "b/cts.hcl", 'source "directory" {\n  path = "tasks"\n}\n')
    s = load(a, b)
    assert s.working_dir == tmp_path / "a" / "work-a"
    assert s.sources == (DirectorySourceSettings(tmp_path / "b" / "tasks"),)


# --- the embedded catalog ----------------------------------------------------------------------


def test_a_catalog_block_names_a_directory_relative_to_its_file(tmp_path: Path) -> None:
    path = write(tmp_path, "conf/cts.hcl", 'catalog "directory" {\n  path = "cat"\n}\n')
    s = load(path)
    assert s.catalog_path == tmp_path / "conf" / "cat"
    assert not s.consul_configured and s.warnings == ()
    assert load(write(tmp_path, "none.hcl", "port = 1\n")).catalog_path is None


def test_a_catalog_block_needs_a_path_and_excludes_a_consul_block(tmp_path: Path) -> None:
    both = write(
        tmp_path,
        "both.hcl",
        'consul {\n  address = "c:8500"\n}\ncatalog "directory" {\n  path = "cat"\n}\n',
    )
    [(line, problem)] = located(both)
    assert line == 4 and "cannot both be configured" in problem
    [problem] = problems_of(write(tmp_path, "empty.hcl", 'catalog "directory" {\n}\n'))
    assert '"path" is required' in problem
    [problem] = problems_of(write(tmp_path, "other.hcl", 'catalog "consul" {\n  path = "x"\n}\n'))
    assert "consul" in problem
