"""What loads with a warning: deprecations, settings nothing acts on, TLS settings
without effect, values that are corrected."""

from __future__ import annotations

from pathlib import Path

import pytest
from settingskit import copy_certs, load, write

from reconciler._core.errors import Location

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


# --- TLS settings that have no effect -----------------------------------------------------


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


# --- values that are corrected ------------------------------------------------------------


def test_a_global_buffer_period_with_min_above_max_is_corrected_with_a_warning(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "cts.hcl", 'buffer_period {\n  min = "30s"\n  max = "10s"\n}\n')
    s = load(path)
    assert (s.buffer_period.min, s.buffer_period.max) == (30 * 10**9, 30 * 10**9)
    [warning] = s.warnings
    assert warning.location == Location(str(path), 3)
    assert "min is greater than max" in warning.message
