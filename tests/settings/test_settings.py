"""Daemon configuration loading: CTS-compatible files, merging, defaults and every problem."""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from pathlib import Path

import pytest

from reconciler._core.errors import ConfigError, Location
from reconciler.settings import (
    BufferPeriodSettings,
    ConsulAuthSettings,
    ConsulSettings,
    ConsulTLSSettings,
    ConsulTransportSettings,
    DefaultCheckSettings,
    DirectorySourceSettings,
    GitAuthorSettings,
    GitSourceSettings,
    ServiceRegistrationSettings,
    ServiceSettings,
    Settings,
    SyslogSettings,
    TerraformDriverSettings,
    TLSSettings,
    global_defaults,
    load_settings,
)
from reconciler.taskfiles.model import GlobalDefaults, ServicesCondition

FIXTURES = Path(__file__).parent.parent / "fixtures" / "settings"
S = 1_000_000_000


def src(text: str) -> str:
    """Dedent an inline config; line 1 is the first line after the opening quotes."""
    return textwrap.dedent(text).lstrip("\n")


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(src(text))
    return path


def copy_certs(**targets: Path) -> None:
    """Put the fixture certificates (cert, key, ca) where a test's configuration names them."""
    names = {"cert": "cts_cert.pem", "key": "cts_key.pem", "ca": "ca_cert.pem"}
    for which, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / "cts" / "certs" / names[which], target)


def load(*paths: str | Path, env: dict[str, str] | None = None) -> Settings:
    return load_settings(list(paths), environ=env or {}, hostname="testhost")


def problems_of(*paths: str | Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(*paths, env=env)
    return [p.without_location() for p in info.value.problems]


def located(*paths: str | Path) -> list[tuple[int, str]]:
    """(line, message) of every problem."""
    with pytest.raises(ConfigError) as info:
        load(*paths)
    out = []
    for p in info.value.problems:
        assert p.location is not None, p
        out.append((p.location.line, p.without_location()))
    return out


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


def test_consul_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "cts.hcl", "port = 1\n")
    env = {
        "CONSUL_HTTP_ADDR": "10.0.0.1:8500",
        "CONSUL_HTTP_TOKEN": "http-token",
        "CONSUL_CLIENT_CERT": "/certs/c.pem",
        "CONSUL_CLIENT_KEY": "/certs/k.pem",
        "CONSUL_CACERT": "/certs/ca.pem",
        "CONSUL_CAPATH": "/certs",
        "CONSUL_TLS_SERVER_NAME": "consul.local",
    }
    s = load(path, env=env)
    assert s.consul.address == "10.0.0.1:8500"
    assert s.consul.token == "http-token"
    # As CTS: the environment fills TLS files in but does not turn TLS on.
    assert s.consul.tls == ConsulTLSSettings(
        False,
        True,
        Path("/certs/c.pem"),
        Path("/certs/k.pem"),
        Path("/certs/ca.pem"),
        Path("/certs"),
        "consul.local",
    )
    assert load(path, env={**env, "CONSUL_TOKEN": "token"}).consul.token == "token"
    # The file wins over the environment.
    path = write(tmp_path, "cts.hcl", 'consul {\n  address = "file:8500"\n  token = ""\n}\n')
    s = load(path, env=env)
    assert (s.consul.address, s.consul.token) == ("file:8500", "")


def test_consul_backend_gets_defaults_from_consul(tmp_path: Path) -> None:
    s = load(
        write(
            tmp_path,
            "cts.hcl",
            """
        consul {
          address = "consul:8501"
          kv_path = "custom/"
          tls {
            ca_cert = "/ca.pem"
          }
        }
        driver "terraform" {
          backend "consul" {}
        }
    """,
        )
    )
    assert s.consul.tls.enabled  # any tls field turns it on
    assert s.driver.backend == {
        "consul": {
            "address": "consul:8501",
            "path": "custom/terraform",
            "gzip": True,
            "scheme": "https",
            "ca_file": "/ca.pem",
        }
    }


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


# --- sources ---------------------------------------------------------------------------------


def test_sources(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf/cts.hcl",
        """
        source "directory" {
          path = "tasks"
        }
        source "directory" {
          path        = "/srv/more-tasks"
          allow_empty = true
        }
        source "git" {
          url = "https://git.example.com/infra/tasks.git"
        }
        source "git" {
          url            = "git@example.com:infra/tasks.git"
          branch         = "prod"
          path           = "./cts/tasks/"
          poll_interval  = "1m"
          push           = true
          webhook_secret = "s3cret"
          push_retry     = 5
          author {
            name  = "bot"
            email = "bot@example.com"
          }
        }
        source "git" {
          url    = "https://git.example.com/pinned.git"
          commit = "0123456789abcdef0123456789abcdef01234567"
        }
    """,
    )
    conf = tmp_path / "conf"
    assert load(path).sources == (
        DirectorySourceSettings(conf / "tasks", False),
        DirectorySourceSettings(Path("/srv/more-tasks"), True),
        GitSourceSettings(
            "https://git.example.com/infra/tasks.git",
            "main",
            None,
            None,
            "",
            30 * S,
            False,
            None,
            3,
            author=GitAuthorSettings("reconciler", "reconciler@localhost"),
        ),
        GitSourceSettings(
            "git@example.com:infra/tasks.git",
            "prod",
            None,
            None,
            "cts/tasks",
            60 * S,
            True,
            "s3cret",
            5,
            author=GitAuthorSettings("bot", "bot@example.com"),
        ),
        GitSourceSettings(
            "https://git.example.com/pinned.git", commit="0123456789abcdef0123456789abcdef01234567"
        ),
    )
    assert load(path).sources[0].location == Location(str(path), 1)


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


# --- validation: each message, with its line -------------------------------------------------

INVALID = [
    pytest.param(
        'port = 1\nlog_level = "LOUD"\n',
        2,
        'invalid log_level "LOUD": expected one of TRACE, DEBUG, INFO, WARN, ERR',
        id="log_level",
    ),
    pytest.param(
        "port = 70000\n",
        1,
        "port must be between 1 and 65535 (0 picks a free port)",
        id="port-range",
    ),
    pytest.param('port = "http"\n', 1, '"port" must be a whole number, not string', id="port-type"),
    pytest.param('bind_address = " "\n', 1, '"bind_address" must not be empty', id="bind"),
    pytest.param('working_dir = ""\n', 1, '"working_dir" must not be empty', id="working_dir"),
    pytest.param(
        'buffer_period {\n  min = "-5s"\n}\n',
        2,
        "buffer_period: cannot be negative",
        id="buffer-negative",
    ),
    pytest.param(
        'buffer_period {\n  min = "1s"\n  max = "-1s"\n}\n',
        3,
        "buffer_period: cannot be negative",
        id="buffer-negative-max",
    ),
    pytest.param(
        'buffer_period {\n  min = "soon"\n}\n',
        2,
        'buffer_period: "min": invalid duration "soon": use Go syntax such as "5s" or "1m30s"',
        id="buffer-duration",
    ),
    pytest.param(
        "tls {\n  enabled = true\n}\n",
        2,
        "tls: key and cert are required if TLS is enabled on the CTS API",
        id="tls-enabled",
    ),
    pytest.param(
        'tls {\n  cert = "c.pem"\n}\n',
        2,
        "tls: key and cert are required if TLS is enabled on the CTS API",
        id="tls-cert-implies-enabled",
    ),
    pytest.param(
        'tls {\n  enabled = false\n  cert = "c.pem"\n}\n',
        3,
        "tls: key is required if cert is configured for TLS on the CTS API",
        id="tls-cert-without-key",
    ),
    pytest.param(
        'tls {\n  cert = "c"\n  key = "k"\n  verify_incoming = true\n}\n',
        4,
        "tls: either ca_cert or ca_path is required if verify_incoming is enabled on the CTS API",
        id="tls-verify-incoming",
    ),
    pytest.param(
        'consul {\n  tls {\n    verify = "maybe"\n  }\n}\n',
        3,
        'consul: tls: "verify" must be a bool (true or false), not string',
        id="type-nested",
    ),
    pytest.param(
        "consul {\n  service_registration {\n    default_check {\n"
        '      address = "localhost:8558"\n    }\n  }\n}\n',
        4,
        "consul: service_registration: default_check: default check address must "
        "include scheme (http or https)",
        id="default-check-scheme",
    ),
    pytest.param(
        "consul {\n  service_registration {\n    default_check {\n"
        '      address = "http://"\n    }\n  }\n}\n',
        4,
        "consul: service_registration: default_check: error with address for default "
        'check: no host in "http://"',
        id="default-check-host",
    ),
    pytest.param(
        "consul {\n  transport {\n    max_idle_conns = 1.5\n  }\n}\n",
        3,
        'consul: transport: "max_idle_conns" must be a whole number',
        id="int-fraction",
    ),
    pytest.param(
        'driver "terraform" {\n  version = "1.5"\n}\n',
        2,
        'driver "terraform": provide the exact Terraform version to install: 1.5',
        id="tf-version-inexact",
    ),
    pytest.param(
        'driver "terraform" {\n  version = "latest"\n}\n',
        2,
        'driver "terraform": Malformed version: latest',
        id="tf-version-malformed",
    ),
    pytest.param(
        'driver "terraform" {\n  version = "0.12.31"\n}\n',
        2,
        'driver "terraform": Terraform version is not supported by Consul Terraform '
        "Sync, try updating to a different version (>= 0.13.0, <= 1.14.3): 0.12.31",
        id="tf-version-unsupported",
    ),
    pytest.param(
        'driver "terraform" {\n  workers = 0\n}\n',
        2,
        'driver "terraform": "workers" must be at least 1',
        id="workers",
    ),
    pytest.param(
        "consul {\n  transport {\n    max_conns_per_host = -1\n  }\n}\n",
        3,
        'consul: transport: "max_conns_per_host" cannot be negative (0: no cap)',
        id="max-conns",
    ),
    pytest.param(
        'driver "terraform" {\n  backend "remote" {\n  }\n}\n',
        2,
        'driver "terraform": unsupported Terraform backend by Sync "remote"; expected '
        "one of: azurerm, consul, cos, gcs, kubernetes, local, manta, pg, s3",
        id="backend-type",
    ),
    pytest.param(
        'driver "terraform" {\n  backend "local" {}\n  backend "s3" {}\n}\n',
        2,
        'driver "terraform": only one Terraform backend can be configured, found: "local", "s3"',
        id="backend-two",
    ),
    pytest.param(
        'driver "terraform" {\n  backend "local" {}\n  backend "local" {}\n}\n',
        3,
        'driver "terraform": only one backend "local" block can be configured',
        id="backend-repeated",
    ),
    pytest.param(
        'driver "terraform" {\n  backend = "consul"\n}\n',
        2,
        'driver "terraform": "backend" must be an object keyed by backend type, e.g. '
        'backend "consul" { ... }',
        id="backend-attribute",
    ),
    pytest.param(
        'driver "terraform" {\n  required_providers = ["aws"]\n}\n',
        2,
        'driver "terraform": "required_providers" must be an object, not list',
        id="required-providers",
    ),
    pytest.param(
        'driver "nomad" {\n}\n',
        1,
        'unsupported driver "nomad"; expected "terraform"',
        id="driver-type",
    ),
    pytest.param(
        "consul {\n}\nconsul {\n}\n",
        3,
        "only one 'consul' block can be configured",
        id="repeated-consul",
    ),
    pytest.param(
        'driver "terraform" {\n}\ndriver "terraform" {\n}\n',
        3,
        "only one 'driver' block can be configured",
        id="repeated-driver",
    ),
    pytest.param(
        "consul {\n  tls {}\n  tls {}\n}\n",
        3,
        "consul: only one 'tls' block can be configured",
        id="repeated-nested",
    ),
    pytest.param(
        "port = 1\nport = 2\n",
        2,
        'duplicate attribute "port" (first set on line 1)',
        id="duplicate-attribute",
    ),
    pytest.param(
        'terraform_provider "aws" {\n  alias = "a"\n}\n'
        'terraform_provider "aws" {\n  alias = "a"\n}\n',
        4,
        "duplicate provider configuration: aws.a (first configured at {file}:1)",
        id="duplicate-provider",
    ),
    pytest.param(
        'terraform_provider "aws" {\n}\nterraform_provider "aws" {\n}\n',
        3,
        "duplicate provider configuration: aws (first configured at {file}:1)",
        id="duplicate-provider-no-alias",
    ),
    pytest.param(
        'terraform_provider "aws" {\n  task_env = { A = 1 }\n}\n',
        2,
        'terraform_provider "aws": "task_env" must be a map of strings',
        id="task_env",
    ),
    pytest.param(
        'terraform_provider "aws" {\n  alias = 3\n}\n',
        2,
        'terraform_provider "aws": "alias" must be a non-empty string',
        id="alias",
    ),
    pytest.param(
        'terraform_provider "aws" {\n  auto_commit = "yes"\n}\n',
        2,
        'terraform_provider "aws": "auto_commit" must be a bool (true or false)',
        id="auto_commit-type",
    ),
    pytest.param(
        'terraform_provider "x" {\n  token = "{{ with secret \\"a/b\\" }}{{ end }}"\n}\n',
        1,
        'terraform_provider "x": detected dynamic configuration using Vault: '
        "missing Vault configuration",
        id="vault-template",
    ),
    pytest.param(
        'service {\n  datacenter = "dc1"\n}\n',
        1,
        "service: logical name for the Consul service is required",
        id="service-name",
    ),
    pytest.param(
        'service {\n  name = "a"\n}\nservice {\n  name = "b"\n  id = "a"\n}\n',
        4,
        "service: unique service IDs are required: a (first used at {file}:1)",
        id="service-ids",
    ),
    pytest.param(
        'source "svn" {\n}\n',
        1,
        'unsupported source type "svn"; expected one of: "directory", "git"',
        id="source-type",
    ),
    pytest.param("source {\n}\n", 1, 'block "source" takes 1 label(s), found 0', id="source-label"),
    pytest.param(
        'source "directory" {\n  allow_empty = true\n}\n',
        1,
        'source "directory": "path" is required',
        id="directory-path",
    ),
    pytest.param(
        'source "git" {\n  branch = "main"\n}\n', 1, 'source "git": "url" is required', id="git-url"
    ),
    pytest.param(
        'source "git" {\n  url = "u"\n  branch = ""\n}\n',
        3,
        'source "git": "branch" must not be empty',
        id="git-branch",
    ),
    pytest.param(
        'source "git" {\n  url = "u"\n  ref = "v1"\n  commit = "abcdef12"\n}\n',
        4,
        'source "git": set either "ref" or "commit", not both',
        id="git-ref-commit",
    ),
    pytest.param(
        'source "git" {\n  url = "u"\n  commit = "HEAD"\n}\n',
        3,
        'source "git": "commit" must be a hexadecimal commit id, not "HEAD"',
        id="git-commit",
    ),
    pytest.param(
        'source "git" {\n  url = "u"\n  ref = "v1"\n  push = true\n}\n',
        4,
        'source "git": "push" writes to "branch"; it cannot be combined with "ref" or '
        '"commit", which pin a revision',
        id="git-push-pinned",
    ),
    pytest.param(
        'source "git" {\n  url = "u"\n  path = "/etc"\n}\n',
        3,
        'source "git": "path" must be a relative path inside the repository, not "/etc"',
        id="git-path",
    ),
    pytest.param(
        'source "git" {\n  url = "u"\n  poll_interval = "0s"\n}\n',
        3,
        'source "git": "poll_interval" must be positive',
        id="git-poll",
    ),
    pytest.param(
        'source "git" {\n  url = "u"\n  push_retry = -1\n}\n',
        3,
        'source "git": "push_retry" cannot be negative',
        id="git-retry",
    ),
    pytest.param(
        'source "git" {\n  url = "u"\n  webhook_secret = ""\n}\n',
        3,
        'source "git": "webhook_secret" must not be empty: unsigned webhooks are rejected',
        id="git-secret",
    ),
    pytest.param(
        'source "git" {\n  url = "u"\n  author {\n    emial = "x"\n  }\n}\n',
        4,
        'source "git": author: invalid key "emial" (did you mean "email"?)',
        id="git-author-key",
    ),
    pytest.param(
        'source "directory" {\n  path = "t"\n}\nsource "directory" {\n  path = "./t"\n}\n',
        4,
        'duplicate source: source "directory" with path "{dir}/t" is already '
        "configured at {file}:1",
        id="duplicate-source",
    ),
    pytest.param(
        'terraform_provider "p" {\n  auto_commit = true\n}\n'
        'task {\n  name = "a"\n  module = "m"\n  providers = ["p"]\n'
        '  condition "schedule" {\n    cron = "@daily"\n  }\n}\n'
        'task {\n  name = "b"\n  module = "m"\n  providers = ["p"]\n'
        '  condition "schedule" {\n    cron = "@daily"\n  }\n}\n',
        12,
        'task "b": provider with autocommit (p) cannot be used by more than one task: '
        "also used by task a",
        id="auto-commit-shared",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), INVALID)
def test_invalid(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "cts.hcl"
    path.write_text(text)
    expected = message.replace("{file}", str(path)).replace("{dir}", str(tmp_path))
    assert located(path) == [(line, expected)]


def test_every_problem_is_reported(tmp_path: Path) -> None:
    a = write(
        tmp_path,
        "a.hcl",
        """
        log_level = "LOUD"
        consul {
          adress = "x"
        }
        tls {
          enabled = true
        }
    """,
    )
    b = write(tmp_path, "b.json", '{\n  "port": "http"\n}\n')
    c = write(tmp_path, "c.hcl", "consul {\n")
    with pytest.raises(ConfigError) as info:
        load(a, b, c)
    shown = [str(p) for p in info.value.problems]
    assert shown == [
        f'{a}:1: invalid log_level "LOUD": expected one of TRACE, DEBUG, INFO, WARN, ERR',
        f'{a}:3: consul: invalid key "adress" (did you mean "address"?)',
        f"{a}:6: tls: key and cert are required if TLS is enabled on the CTS API",
        f'{b}:2: "port" must be a whole number, not string',
        f"{c}:2:1: syntax error: unexpected end of file",
    ]


def test_invalid_task_blocks_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cts.hcl",
        """
        port = 1
        task {
          name = "web"
          condition "services" {
            names = ["web"]
          }
        }
    """,
    )
    assert located(path) == [(2, 'task "web": "module" is required')]


# --- unknown keys and Enterprise-only configuration -----------------------------------------

UNKNOWN = [
    pytest.param(
        'log_levl = "INFO"\n', 1, 'invalid key "log_levl" (did you mean "log_level"?)', id="typo"
    ),
    pytest.param("inspect_mode = false\n", 1, 'invalid key "inspect_mode"', id="unknown"),
    pytest.param(
        'consul {\n  address = "a"\n  tokn = "t"\n}\n',
        3,
        'consul: invalid key "tokn" (did you mean "token"?)',
        id="nested",
    ),
    pytest.param(
        'driver "terraform" {\n  worker = 2\n}\n',
        2,
        'driver "terraform": invalid key "worker" (did you mean "workers"?)',
        id="driver",
    ),
    pytest.param(
        'service {\n  name = "a"\n  tag = "x"\n}\n',
        3,
        'service: invalid key "tag": removed in CTS 0.4: use "filter" with Service.Tags',
        id="service-tag",
    ),
    pytest.param(
        'provider "aws" {\n  region = "x"\n}\n',
        1,
        "invalid key \"provider\": 'provider' is an invalid key for "
        "Consul-Terraform-Sync (CTS) configuration, try 'terraform_provider'. The "
        "terraform_provider configuration blocks are similar to provider blocks in "
        "Terraform but have additional features supported only by CTS.",
        id="provider",
    ),
    pytest.param(
        'license = "02MV4UU43BK5HGYYTOJZWFQMTMNNEWU33JLJ"\n',
        1,
        "invalid key \"license\": 'license' is a Consul-Terraform-Sync (CTS) "
        "Enterprise configuration.",
        id="license",
    ),
    pytest.param(
        'license_path = "/etc/cts.hclic"\n',
        1,
        "invalid key \"license_path\": 'license_path' is a Consul-Terraform-Sync (CTS) "
        "Enterprise configuration.",
        id="license_path",
    ),
    pytest.param(
        'driver "terraform-cloud" {\n  hostname = "app.terraform.io"\n}\n',
        1,
        'invalid key "driver.terraform-cloud": Terraform Cloud is a '
        "Consul-Terraform-Sync (CTS) Enterprise feature. Upgrade to Consul Enterprise "
        "to enable CTS Enterprise features.",
        id="terraform-cloud",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), UNKNOWN)
def test_unknown_keys(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "cts.hcl"
    path.write_text(text)
    assert located(path) == [(line, message)]


def test_enterprise_task_fields_are_rejected(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cts.hcl",
        """
        task {
          name              = "t"
          module            = "m"
          terraform_version = "1.0.0"
          condition "schedule" {
            cron = "@hourly"
          }
        }
    """,
    )
    [(line, message)] = located(path)
    assert line == 4 and "Enterprise" in message


# --- deprecations are warnings, not errors --------------------------------------------------


def test_deprecations_are_warnings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cts.hcl",
        """
        service {
          name = "web"
        }
        driver "terraform" {
          working_dir = "old"
        }
        task {
          name     = "t"
          source   = "m"
          services = ["web"]
          condition "catalog-services" {
            regexp              = "web"
            source_includes_var = true
          }
        }
    """,
    )
    s = load(path)
    assert [(w.location.line if w.location else 0, w.where) for w in s.warnings] == [
        (1, ("service",)),
        (5, ('driver "terraform"',)),
        (9, ('task "t"',)),
        (10, ('task "t"',)),
        (13, ('task "t"',)),
    ]
    assert s.working_dir == tmp_path / "old"  # used when the top-level one is not set
    assert s.tasks[0].spec.module == "m"


def test_tls_ca_cert_and_ca_path_is_a_warning(tmp_path: Path) -> None:
    copy_certs(cert=tmp_path / "c", key=tmp_path / "k", ca=tmp_path / "ca.pem")
    copy_certs(ca=tmp_path / "cas" / "ca.pem")
    s = load(
        write(
            tmp_path,
            "cts.hcl",
            """
        tls {
          cert            = "c"
          key             = "k"
          verify_incoming = true
          ca_cert         = "ca.pem"
          ca_path         = "cas"
        }
    """,
        )
    )
    assert [(w.location.line if w.location else 0, w.message) for w in s.warnings] == [
        (
            6,
            "ca_cert and ca_path are both configured, but only ca_cert will be used for TLS "
            "on the CTS API",
        )
    ]


# --- several files ---------------------------------------------------------------------------


def test_merge_scalars_and_nested_blocks_field_by_field(tmp_path: Path) -> None:
    a = write(
        tmp_path,
        "a.hcl",
        """
        log_level = "ERR"
        port      = 8504
        consul {
          address = "a:8500"
          token   = "token-a"
          tls {
            enabled = true
            ca_cert = "/a/ca.pem"
          }
          service_registration {
            service_name = "cts-a"
            default_check {
              address = "http://a:8558"
            }
          }
        }
        buffer_period {
          min = "10s"
        }
        syslog {
          facility = "local1"
        }
        vault {
          address = "https://vault-a"
          tls {
            ca_cert = "/a/vault.pem"
            verify  = true
          }
        }
    """,
    )
    b = write(
        tmp_path,
        "b.hcl",
        """
        log_level = "DEBUG"
        consul {
          token = "token-b"
          tls {
            verify = false
          }
          service_registration {
            default_check {
              enabled = false
            }
          }
        }
        buffer_period {
          max = "30s"
        }
        syslog {
          enabled = false
        }
        vault {
          tls {
            verify = false
          }
        }
    """,
    )
    s = load(a, b)
    assert (s.log_level, s.port) == ("DEBUG", 8504)
    assert (s.consul.address, s.consul.token) == ("a:8500", "token-b")
    assert s.consul.tls == ConsulTLSSettings(enabled=True, verify=False, ca_cert=Path("/a/ca.pem"))
    assert s.consul.service_registration == ServiceRegistrationSettings(
        service_name="cts-a", default_check=DefaultCheckSettings(False, "http://a:8558")
    )
    assert s.buffer_period == BufferPeriodSettings(True, 10 * S, 30 * S)
    assert s.syslog == SyslogSettings(False, "LOCAL1", "consul-terraform-sync")
    assert s.vault is not None
    assert (s.vault.address, s.vault.tls.ca_cert, s.vault.tls.verify) == (
        "https://vault-a",
        "/a/vault.pem",
        False,
    )
    # Swapping the order swaps who wins.
    s = load(b, a)
    assert (s.log_level, s.consul.token, s.consul.tls.verify) == ("ERR", "token-a", False)


def test_merge_driver_backend_per_key_and_required_providers(tmp_path: Path) -> None:
    a = write(
        tmp_path,
        "a.hcl",
        """
        driver "terraform" {
          version = "1.5.7"
          log     = true
          backend "consul" {
            path = "a/terraform"
            gzip = false
          }
          required_providers {
            aws = { source = "hashicorp/aws", version = "3.0.0" }
            local = { source = "hashicorp/local" }
          }
        }
    """,
    )
    b = write(
        tmp_path,
        "b.hcl",
        """
        driver "terraform" {
          log = false
          backend "consul" {
            path = "b/terraform"
          }
          required_providers {
            aws = { source = "hashicorp/aws", version = "4.0.0" }
          }
        }
    """,
    )
    d = load(a, b).driver
    assert (d.version, d.log) == ("1.5.7", False)
    assert d.backend == {
        "consul": {"address": "localhost:8500", "path": "b/terraform", "gzip": False}
    }
    assert d.required_providers == {
        "aws": {"source": "hashicorp/aws", "version": "4.0.0"},
        "local": {"source": "hashicorp/local"},
    }


def test_merge_backend_types_from_two_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.hcl", 'driver "terraform" {\n  backend "local" {}\n}\n')
    b = write(tmp_path, "b.hcl", 'driver "terraform" {\n  backend "s3" {}\n}\n')
    with pytest.raises(ConfigError) as info:
        load(a, b)
    [problem] = info.value.problems
    assert problem.location == Location(str(b), 2)
    assert problem.message == ('only one Terraform backend can be configured, found: "local", "s3"')


def test_repeatable_blocks_concatenate_in_order(tmp_path: Path) -> None:
    def task(name: str) -> str:
        return (
            f'task {{\n  name = "{name}"\n  module = "m"\n'
            '  condition "schedule" {\n    cron = "@daily"\n  }\n}\n'
        )

    a = write(
        tmp_path,
        "a.hcl",
        'terraform_provider "aws" {}\nservice {\n  name = "s1"\n}\n'
        'source "directory" {\n  path = "t1"\n}\n' + task("t1") + task("t2"),
    )
    b = write(
        tmp_path,
        "b.hcl",
        'terraform_provider "aws" {\n  alias = "b"\n}\n'
        'service {\n  name = "s2"\n}\nsource "directory" {\n  path = "t2"\n}\n' + task("t3"),
    )
    c = write(tmp_path, "c.hcl", task("t4"))
    s = load(a, b, c)
    assert [p.id for p in s.terraform_providers] == ["aws", "aws.b"]
    assert [x.name for x in s.services] == ["s1", "s2"]
    assert s.sources == (
        DirectorySourceSettings(tmp_path / "t1"),
        DirectorySourceSettings(tmp_path / "t2"),
    )
    assert [(t.spec.name, t.file, t.line) for t in s.tasks] == [
        ("t1", str(a), 8),
        ("t2", str(a), 15),
        ("t3", str(b), 10),
        ("t4", str(c), 1),
    ]
    assert s.config_files == (str(a), str(b), str(c))


def test_same_task_name_in_two_files(tmp_path: Path) -> None:
    body = (
        'task {\n  name = "web"\n  module = "m"\n  condition "schedule" {\n'
        '    cron = "@daily"\n  }\n}\n'
    )
    a = write(tmp_path, "a.hcl", body)
    b = write(tmp_path, "b.hcl", "port = 1\n" + body)
    with pytest.raises(ConfigError) as info:
        load(a, b)
    assert [str(p) for p in info.value.problems] == [
        f'{b}:2: task "web": duplicate task name: web (defined in {a}:1 and in {b}:2)'
    ]


def test_same_task_name_twice_in_one_file(tmp_path: Path) -> None:
    body = (
        'task {\n  name = "web"\n  module = "m"\n  condition "schedule" {\n'
        '    cron = "@daily"\n  }\n}\n'
    )
    path = write(tmp_path, "a.hcl", body + body)
    assert located(path) == [(8, 'task "web": duplicate task name (first defined on line 1)')]


# --- -config-file / -config-dir -------------------------------------------------------------


def test_config_dir_is_read_in_lexical_order_and_skips_the_rest(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    write(conf, "20-port.hcl", "port = 2\n")
    write(conf, "10-port.json", '{"port": 1, "log_level": "DEBUG"}\n')
    write(conf, "30-notes.txt", "this is not configuration\n")
    write(conf, "40-empty.hcl", "")
    write(conf, "sub/50-nested.hcl", "port = 5\n")
    (conf / "60-dir.hcl").mkdir()
    s = load(conf)
    assert (s.port, s.log_level) == (2, "DEBUG")
    assert s.config_files == (str(conf / "10-port.json"), str(conf / "20-port.hcl"))
    assert s.warnings == ()


def test_files_and_dirs_share_one_ordered_list(tmp_path: Path) -> None:
    conf = tmp_path / "conf.d"
    write(conf, "a.hcl", "port = 2\n")
    first = write(tmp_path, "first.hcl", "port = 1\n")
    last = write(tmp_path, "last.hcl", 'log_level = "WARN"\n')
    assert load(first, conf, last).port == 2
    assert load(conf, first, last).port == 1


def test_file_given_directly_with_other_extension_or_empty_is_skipped(tmp_path: Path) -> None:
    other = write(tmp_path, "cts.conf", "port = 9\n")
    empty = write(tmp_path, "empty.hcl", "")
    real = write(tmp_path, "cts.hcl", "port = 1\n")
    s = load(other, empty, real)
    assert s.port == 1
    assert [(w.location, w.message) for w in s.warnings] == [
        (Location(str(other)), "skipped: configuration files end in .hcl or .json"),
        (Location(str(empty)), "skipped: the file is empty"),
    ]


@pytest.mark.parametrize("layout", ["empty-dir", "only-skipped", "no-paths"])
def test_no_configuration_files_found(tmp_path: Path, layout: str) -> None:
    paths: list[str | Path] = []
    if layout == "empty-dir":
        paths = [tmp_path]
    elif layout == "only-skipped":
        paths = [write(tmp_path, "a.txt", "port = 1\n"), write(tmp_path, "b.hcl", "")]
    assert problems_of(*paths) == ["no configuration files found"]


def test_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.hcl"
    with pytest.raises(ConfigError) as info:
        load(missing, write(tmp_path, "ok.hcl", 'log_level = "nope"\n'))
    assert [str(p) for p in info.value.problems] == [
        f"{missing}: no such file or directory",
        f'{tmp_path / "ok.hcl"}:1: invalid log_level "nope": expected one of TRACE, DEBUG, '
        "INFO, WARN, ERR",
    ]


# --- JSON ------------------------------------------------------------------------------------


def test_json_problems_name_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cts.json",
        """
        {
          "log_level": "INFO",
          "consul": {
            "address": "a",
            "adress": "b",
            "tls": {"verify": "sometimes"}
          },
          "driver": {"terraform-cloud": {}},
          "terraform_provider": [{"aws": {"alias": 1}}],
          "source": {"git": {"url": "u", "commit": "xyz"}},
          "task": [{"name": "t", "module": "m"}]
        }
    """,
    )
    assert located(path) == [
        (5, 'consul: invalid key "adress" (did you mean "address"?)'),
        (6, 'consul: tls: "verify" must be a bool (true or false), not string'),
        (
            8,
            'invalid key "driver.terraform-cloud": Terraform Cloud is a Consul-Terraform-Sync '
            "(CTS) Enterprise feature. Upgrade to Consul Enterprise to enable CTS Enterprise "
            "features.",
        ),
        (9, 'terraform_provider "aws": "alias" must be a non-empty string'),
        (10, 'source "git": "commit" must be a hexadecimal commit id, not "xyz"'),
        (
            11,
            'task "t": a condition block is required, e.g. condition "services" { names = [...] }',
        ),
    ]


def test_json_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "cts.json", '{\n  "port": 1,\n}\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    [problem] = info.value.problems
    assert problem.location is not None and problem.location.line == 3
    assert problem.message.startswith("invalid JSON")


def test_git_source_options(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf/cts.hcl",
        """
        source "git" {
          url          = "../repos/tasks.git"
          push_retry   = "background"
          ssh_key_file = "keys/deploy"
          token_env    = "GIT_TOKEN"
          timeout      = "10s"
        }
    """,
    )
    (src,) = load(path).sources
    assert isinstance(src, GitSourceSettings)
    assert src.url == str(tmp_path / "conf" / ".." / "repos" / "tasks.git")
    assert src.push_retry == "background"
    assert src.ssh_key_file == tmp_path / "conf" / "keys" / "deploy"
    assert (src.token_env, src.timeout) == ("GIT_TOKEN", 10 * S)


def test_git_source_option_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cts.hcl",
        """
        source "git" {
          url        = "https://x/y.git"
          push_retry = "later"
          token_env  = "not a name"
        }
    """,
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    assert 'cts.hcl:3: source "git": "push_retry" must be a whole number or "background"' in text
    assert 'cts.hcl:4: source "git": "token_env" must name an environment variable' in text


# --- TLS files are checked at load -------------------------------------------------------------


def test_tls_files_are_loaded_and_named_with_their_setting(tmp_path: Path) -> None:
    copy_certs(cert=tmp_path / "certs/api.pem", key=tmp_path / "certs/api.key")
    copy_certs(ca=tmp_path / "cas/one.pem")
    base = 'tls {\n  cert = "certs/api.pem"\n  key  = "certs/api.key"\n'
    ok = write(tmp_path, "ok.hcl", base + '  verify_incoming = true\n  ca_path = "cas"\n}\n')
    assert load(ok).tls.ca_path == tmp_path / "cas"

    missing = write(tmp_path, "missing.hcl", 'tls {\n  cert = "nope.pem"\n  key = "no.key"\n}\n')
    assert located(missing) == [
        (2, f'tls: cert "{tmp_path / "nope.pem"}" does not exist'),
        (3, f'tls: key "{tmp_path / "no.key"}" does not exist'),
    ]
    no_ca = write(
        tmp_path, "no_ca.hcl", base + '  verify_incoming = true\n  ca_path = "certs/api.pem"\n}\n'
    )
    assert located(no_ca) == [
        (5, f'tls: ca_path "{tmp_path / "certs/api.pem"}" is not a directory')
    ]

    # A key file that holds no key, a CA file that holds no certificate.
    copy_certs(cert=tmp_path / "certs/other.key")
    wrong_key = write(tmp_path, "wrong.hcl", base.replace("api.key", "other.key") + "}\n")
    [(line, message)] = located(wrong_key)
    assert line == 2 and message.startswith(f'tls: cannot load cert "{tmp_path / "certs/api.pem"}"')
    (tmp_path / "cas/notes.txt").write_text("not a certificate\n")
    bad_ca = write(
        tmp_path, "bad_ca.hcl", base + '  verify_incoming = true\n  ca_path = "cas"\n}\n'
    )
    [(line, message)] = located(bad_ca)
    assert line == 5
    assert message.startswith(
        f'tls: cannot load CA certificates from "{tmp_path / "cas/notes.txt"}"'
    )


def test_tls_ca_without_verify_incoming_is_a_warning(tmp_path: Path) -> None:
    copy_certs(cert=tmp_path / "c", key=tmp_path / "k", ca=tmp_path / "ca.pem")
    s = load(
        write(tmp_path, "cts.hcl", 'tls {\n  cert = "c"\n  key = "k"\n  ca_cert = "ca.pem"\n}\n')
    )
    [warning] = s.warnings
    assert warning.location == Location(str(tmp_path / "cts.hcl"), 4)
    assert "used only with verify_incoming = true" in warning.message


# --- settings nothing acts on are reported, never silently ignored ------------------------------


@pytest.mark.parametrize(
    ("text", "line", "setting"),
    [
        pytest.param('client_type = "dev"\n', 1, "client_type", id="client_type"),
        pytest.param('syslog {\n  facility = "local2"\n}\n', 1, "syslog", id="syslog"),
        pytest.param(
            'consul {\n  address = "c:8500"\n  kv_namespace = "ns"\n}\n',
            3,
            "consul kv_namespace",
            id="consul-kv-namespace",
        ),
        pytest.param(
            'vault {\n  address = "https://v"\n  renew_token = true\n}\n',
            3,
            "vault.renew_token",
            id="vault-renew-token",
        ),
        pytest.param(
            'vault {\n  address = "https://v"\n  ssl {\n    enabled = true\n  }\n}\n',
            3,
            "vault.ssl",
            id="vault-ssl",
        ),
        pytest.param(
            'driver "terraform" {\n  version = "1.5.7"\n}\n',
            2,
            'driver "terraform" version',
            id="driver-version",
        ),
    ],
)
def test_a_setting_nothing_acts_on_is_a_warning_naming_it(
    tmp_path: Path, text: str, line: int, setting: str
) -> None:
    path = write(tmp_path, "cts.hcl", text)
    s = load(path)
    [warning] = [w for w in s.warnings if "is not supported" in w.message]
    assert warning.message.startswith(f"{setting} is not supported and has no effect: ")
    assert warning.location == Location(str(path), line)
    assert str(warning).startswith(f"{path}:{line}: {setting} is not supported")


def test_settings_the_daemon_acts_on_are_not_reported(tmp_path: Path) -> None:
    copy_certs(cert=tmp_path / "c", key=tmp_path / "k")
    path = write(
        tmp_path,
        "cts.hcl",
        """
        log_level    = "debug"
        port         = 8600
        bind_address = "127.0.0.1"
        working_dir  = "work"
        tls {
          cert = "c"
          key  = "k"
        }
        driver "terraform" {
          log     = true
          workers = 2
        }
        terraform_provider "null" {}
        source "directory" {
          path = "tasks"
        }
    """,
    )
    assert load(path).warnings == ()


def test_validate_prints_the_unsupported_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from reconciler.cli.main import EXIT_OK, validate

    path = write(tmp_path, "cts.hcl", "syslog {\n  enabled = true\n}\n")
    assert validate([str(path)]) == EXIT_OK
    err = capsys.readouterr().err
    assert f"warning: {path}:1: syslog is not supported and has no effect" in err


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


def test_a_global_buffer_period_with_min_above_max_is_corrected_with_a_warning(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "cts.hcl", 'buffer_period {\n  min = "30s"\n  max = "10s"\n}\n')
    s = load(path)
    assert (s.buffer_period.min, s.buffer_period.max) == (30 * 10**9, 30 * 10**9)
    [warning] = s.warnings
    assert warning.location == Location(str(path), 3)
    assert "min is greater than max" in warning.message


def test_a_tls_path_that_cannot_be_looked_up_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    long = "x" * 5000
    path = write(
        tmp_path, "cts.hcl", f'tls {{\n  enabled = true\n  cert = "{long}"\n  key = "k"\n}}\n'
    )
    problems = problems_of(path)
    assert any("cannot be read" in p and "cert" in p for p in problems), problems


# --- where Consul comes from -------------------------------------------------------------------


def test_consul_comes_from_the_block_the_catalog_the_environment_or_the_default(
    tmp_path: Path,
) -> None:
    from reconciler.settings.model import (
        CONSUL_BLOCK,
        CONSUL_CATALOG,
        CONSUL_DEFAULT,
        CONSUL_ENVIRONMENT,
    )

    env = {
        "CONSUL_HTTP_ADDR": "consul.prod:8501",
        "CONSUL_HTTP_TOKEN": "tok",
        "CONSUL_CACERT": "/etc/consul/ca.pem",
        "CONSUL_HTTP_SSL": "true",
        "CONSUL_HTTP_SSL_VERIFY": "false",
    }
    plain = write(tmp_path, "a/cts.hcl", "port = 1\n")
    s = load(plain, env=env)
    assert s.consul_from == CONSUL_ENVIRONMENT and s.consul_configured
    assert (s.consul.address, s.consul.token) == ("consul.prod:8501", "tok")
    assert s.consul.tls.enabled and not s.consul.tls.verify
    assert s.consul.tls.ca_cert == Path("/etc/consul/ca.pem")
    default = load(plain)
    assert default.consul_from == CONSUL_DEFAULT and not default.consul_configured
    assert default.consul.address == "localhost:8500" and not default.consul.tls.enabled
    block = write(tmp_path, "b/cts.hcl", 'consul {\n  address = "c:8500"\n}\n')
    assert load(block, env=env).consul_from == CONSUL_BLOCK
    assert load(block, env=env).consul.address == "c:8500"
    # The embedded catalog's default directory, next to the configuration, wins over the
    # environment; a consul block wins over it.
    (tmp_path / "a" / "catalog").mkdir()
    (tmp_path / "b" / "catalog").mkdir()
    s = load(plain, env=env)
    assert s.consul_from == CONSUL_CATALOG and s.catalog_path == tmp_path / "a" / "catalog"
    assert load(block, env=env).consul_from == CONSUL_BLOCK
    assert load(block, env=env).catalog_path is None
