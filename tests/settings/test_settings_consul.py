"""Where the daemon's Consul comes from: the consul block, CTS's environment variables,
the embedded catalog or CTS's default address; the defaults a consul backend takes from it."""

from __future__ import annotations

from pathlib import Path

from settingskit import load, write

from reconciler.settings import ConsulTLSSettings

# --- the consul block and CTS's environment variables -------------------------------------


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
