"""The `vault` block and VAULT_* variables resolved as CTS resolves them: every key acted
on or reported, the environment filling what the block leaves unset."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from reconciler._core.goclient import go_proxy
from reconciler.runner.vault import VaultClient
from reconciler.settings.vault import (
    DEFAULT_ADDRESS,
    NOT_A_SETTING,
    RENEW_TOKEN,
    VaultConfigError,
    VaultSettings,
    VaultTLSSettings,
    VaultTransportSettings,
    vault_settings,
)

TOKEN = "hvs.test-root-token"


# --- settings -----------------------------------------------------------------------------

ALL_CTS_KEYS: dict[str, Any] = {
    "address": "https://vault.internal:8200",
    "enabled": True,
    "namespace": "team-a/",
    "renew_token": True,
    "token": "hvs.block-token",
    "vault_agent_token_file": "/run/vault-agent/token",
    "unwrap_token": False,
    "tls": {
        "enabled": True,
        "ca_cert": "/etc/vault/ca.pem",
        "ca_path": "/etc/vault/cas",
        "cert": "/etc/vault/client.pem",
        "key": "/etc/vault/client.key",
        "server_name": "vault.service",
        "verify": True,
    },
    "transport": {
        "dial_keep_alive": "10s",
        "dial_timeout": "5s",
        "disable_keep_alives": True,
        "idle_conn_timeout": "1m",
        "max_idle_conns": 5,
        "max_idle_conns_per_host": 3,
        "tls_handshake_timeout": "2s",
    },
}


def test_settings_from_a_block() -> None:
    s, ignored = vault_settings(ALL_CTS_KEYS, {"VAULT_TOKEN": "env", "VAULT_ADDR": "http://x"})
    assert s is not None
    # Every CTS key is acted on, except renew_token, which is reported.
    assert ignored == [("renew_token", RENEW_TOKEN)]
    assert s == VaultSettings(
        enabled=True,
        address="https://vault.internal:8200",
        token="hvs.block-token",
        agent_token_file="/run/vault-agent/token",
        namespace="team-a",
        unwrap_token=False,
        tls=VaultTLSSettings(
            enabled=True,
            ca_cert="/etc/vault/ca.pem",
            ca_path="/etc/vault/cas",
            cert="/etc/vault/client.pem",
            key="/etc/vault/client.key",
            server_name="vault.service",
            verify=True,
        ),
        transport=VaultTransportSettings(
            dial_timeout=5.0,
            dial_keep_alive=10.0,
            disable_keep_alives=True,
            idle_conn_timeout=60.0,
            max_idle_conns=5,
            max_idle_conns_per_host=3,
            tls_handshake_timeout=2.0,
        ),
    )
    assert "hvs.block-token" not in repr(s)
    # renew_token = false asks for nothing the daemon does not do.
    _, ignored = vault_settings({"address": "http://v:8200", "renew_token": False}, {})
    assert ignored == []


def test_every_unsupported_key_is_reported() -> None:
    block = {
        "address": "http://v:8200",
        "ssl": {"enabled": True},
        "default_lease_duration": "5m",
        "lease_renewal_threshold": 0.9,
        "k8s_auth_role_name": "cts",
        "k8s_service_account_token": "ey...",
        "retry": {"attempts": 3},
        "colour": "blue",
        "tls": {"insecure": True, "verify": False},
        "transport": {"max_conns_per_host": 4},
    }
    s, ignored = vault_settings(block, {})
    assert s is not None and s.tls.verify is False
    keys = dict(ignored)
    assert set(keys) == {
        "ssl",
        "default_lease_duration",
        "lease_renewal_threshold",
        "k8s_auth_role_name",
        "k8s_service_account_token",
        "retry",
        "colour",
        "tls.insecure",
        "transport.max_conns_per_host",
    }
    assert keys["ssl"] == f"{NOT_A_SETTING}: CTS's name for this block is tls"
    assert keys["k8s_auth_role_name"] == f"{NOT_A_SETTING}: consul-template has it, CTS does not"
    assert keys["colour"] == keys["tls.insecure"] == NOT_A_SETTING


def test_settings_from_the_environment() -> None:
    env = {
        "VAULT_ADDR": " https://vault.env:8200/ ",
        "VAULT_TOKEN": "hvs.env",
        "VAULT_NAMESPACE": "ns-env",
        "VAULT_CACERT": "/env/ca.pem",
        "VAULT_CAPATH": "/env/cas",
        "VAULT_CLIENT_CERT": "/env/c.pem",
        "VAULT_CLIENT_KEY": "/env/c.key",
        "VAULT_TLS_SERVER_NAME": "vault.env",
        "VAULT_SKIP_VERIFY": "true",
        "VAULT_UNWRAP_TOKEN": "1",
        "VAULT_CLIENT_TIMEOUT": "15",
        "VAULT_MAX_RETRIES": "0",
        "HOME": "/home/cts",
    }
    # No block: VAULT_ADDR alone turns Vault on (CTS Finalize: enabled = address present).
    s, ignored = vault_settings(None, env)
    assert s is not None and ignored == []
    assert (s.enabled, s.address, s.token, s.namespace) == (
        True,
        "https://vault.env:8200",
        "hvs.env",
        "ns-env",
    )
    assert s.tls == VaultTLSSettings(
        enabled=True,
        ca_cert="/env/ca.pem",
        ca_path="/env/cas",
        cert="/env/c.pem",
        key="/env/c.key",
        server_name="vault.env",
        verify=False,
    )
    assert (s.unwrap_token, s.timeout, s.max_retries) == (True, 15.0, 0)
    assert s.home_token_file == ""  # a token was given
    # The block wins over the environment, key by key.
    block = {"namespace": "", "tls": {"verify": True, "ca_cert": "/block/ca.pem"}}
    s, _ = vault_settings(block, env)
    assert s is not None
    assert (s.namespace, s.tls.verify, s.tls.ca_cert, s.tls.cert) == (
        "",
        True,
        "/block/ca.pem",
        "/env/c.pem",
    )
    with pytest.raises(VaultConfigError, match="VAULT_CLIENT_TIMEOUT"):
        vault_settings(None, env | {"VAULT_CLIENT_TIMEOUT": "soon"})


def test_when_vault_is_enabled() -> None:
    # Neither a block nor VAULT_ADDR: nothing to say.
    assert vault_settings(None, {"VAULT_TOKEN": "t"}) == (None, [])
    # A block without an address is off, as in CTS, unless `enabled` says otherwise.
    s, _ = vault_settings({"token": "t"}, {})
    assert s is not None and not s.enabled
    s, _ = vault_settings({"enabled": True}, {"HOME": "/home/cts"})
    assert s is not None and s.enabled and s.address == DEFAULT_ADDRESS
    assert s.token == "" and s.home_token_file == "/home/cts/.vault-token"
    s, _ = vault_settings({"enabled": "false", "address": "http://v:8200"}, {})
    assert s is not None and not s.enabled
    s, _ = vault_settings({"enabled": True}, {"VAULT_AGENT_ADDR": "http://127.0.0.1:8100"})
    assert s is not None and s.address == "http://127.0.0.1:8100"
    with pytest.raises(VaultConfigError, match="use http://, https:// or unix://"):
        vault_settings({"address": "vault:8200"}, {})
    # Not a URL at all, with a proxy that would be looked up for it: named, not a crash.
    with pytest.raises(VaultConfigError, match="Invalid IPv6 URL"):
        vault_settings({"address": "http://[::1"}, {"HTTP_PROXY": "http://proxy:3128"})
    with pytest.raises(VaultConfigError, match="only one 'tls' block"):
        vault_settings({"address": "http://v", "tls": [{}, {}]}, {})
    with pytest.raises(VaultConfigError, match=r"vault\.transport\.dial_timeout"):
        vault_settings({"address": "http://v", "transport": {"dial_timeout": "soon"}}, {})


def test_proxy_as_go_picks_it() -> None:
    env = {
        "HTTPS_PROXY": "proxy:3128",
        "http_proxy": "http://p80:8080",
        "NO_PROXY": ".corp,10.0.0.0/8",
    }
    assert go_proxy("https://vault.example:8200", env) == "http://proxy:3128"
    assert go_proxy("http://vault.example:8200", env) == "http://p80:8080"
    assert go_proxy("https://vault.corp:8200", env) is None
    assert go_proxy("https://corp:8200", env) == "http://proxy:3128"  # ".corp": subdomains only
    assert go_proxy("https://10.1.2.3:8200", env) is None
    assert go_proxy("https://127.0.0.1:8200", env) is None
    # "example" covers the name and its subdomains, not names that merely end alike.
    assert go_proxy("https://myexample:8200", env | {"NO_PROXY": "example"}) == (
        "http://proxy:3128"
    )
    assert go_proxy("https://example:8200", env | {"NO_PROXY": "example"}) is None
    assert go_proxy("https://a.example:8200", env | {"NO_PROXY": "example"}) is None
    assert go_proxy("unix:///run/vault.sock", env) is None
    settings_, _ = vault_settings({"address": "https://vault.example:8200"}, env)
    assert settings_ is not None and settings_.proxy == "http://proxy:3128"


def test_settings_repr_and_replace_keep_the_token_out() -> None:
    s = dataclasses.replace(VaultSettings(), token=TOKEN)
    assert TOKEN not in repr(s) and TOKEN not in repr(VaultClient(s))
