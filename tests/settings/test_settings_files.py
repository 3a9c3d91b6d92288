"""Several configuration files: merged field by field, -config-file and -config-dir,
the JSON syntax."""

from __future__ import annotations

from pathlib import Path

import pytest
from settingskit import S, load, located, problems_of, write

from reconciler._core.errors import ConfigError, Location
from reconciler.settings import (
    BufferPeriodSettings,
    ConsulTLSSettings,
    DefaultCheckSettings,
    DirectorySourceSettings,
    ServiceRegistrationSettings,
    SyslogSettings,
)

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
