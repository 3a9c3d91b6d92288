"""Invalid configurations: each problem with its message and line, unknown keys,
Enterprise-only configuration, TLS files checked at load."""

from __future__ import annotations

from pathlib import Path

import pytest
from settingskit import copy_certs, load, located, problems_of, write

from reconciler._core.errors import ConfigError

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


def test_a_tls_path_that_cannot_be_looked_up_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    long = "x" * 5000
    path = write(
        tmp_path, "cts.hcl", f'tls {{\n  enabled = true\n  cert = "{long}"\n  key = "k"\n}}\n'
    )
    problems = problems_of(path)
    assert any("cannot be read" in p and "cert" in p for p in problems), problems
