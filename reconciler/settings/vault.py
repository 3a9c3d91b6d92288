"""The daemon's `vault` block and VAULT_* environment as settings for the Vault client
(runner/vault.py) that reads secrets for `{{ with secret "path" }}` templates.

CTS resolves its `vault` block in config/vault.go (Finalize), its `tls` and `transport`
blocks in tls.go and transport.go; this module follows them key by key, environment
variables included, so that a CTS configuration means the same Vault here. Every key that
is not acted on is returned, to be warned about by name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from reconciler._core.errors import ReconcilerError
from reconciler._core.goclient import go_proxy
from reconciler.taskfiles.durations import parse_duration

# Vault's Go client (api.DefaultConfig): the address when none is given, the time one
# request may take (retries included), and how often a failed request is retried.
DEFAULT_ADDRESS = "https://127.0.0.1:8200"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
# CTS's transport defaults (config/transport.go Finalize), in seconds.
DEFAULT_DIAL_TIMEOUT = 30.0
DEFAULT_DIAL_KEEP_ALIVE = 30.0
DEFAULT_IDLE_CONN_TIMEOUT = 5.0
DEFAULT_MAX_IDLE_CONNS = 0  # Go: no cap
DEFAULT_MAX_IDLE_CONNS_PER_HOST = 100
DEFAULT_TLS_HANDSHAKE_TIMEOUT = 10.0

# The keys of CTS's vault block that this module acts on (config/vault.go, tls.go,
# transport.go), and keys people carry over from consul-template's vault block, which
# CTS rejects.
_TOP_KEYS = frozenset(
    {
        "address",
        "enabled",
        "namespace",
        "renew_token",
        "tls",
        "token",
        "vault_agent_token_file",
        "transport",
        "unwrap_token",
    }
)
_TLS_KEYS = frozenset({"ca_cert", "ca_path", "cert", "enabled", "key", "server_name", "verify"})
_TRANSPORT_KEYS = frozenset(
    {
        "dial_keep_alive",
        "dial_timeout",
        "disable_keep_alives",
        "idle_conn_timeout",
        "max_idle_conns",
        "max_idle_conns_per_host",
        "tls_handshake_timeout",
    }
)
_CONSUL_TEMPLATE_KEYS = frozenset(
    {
        "retry",
        "default_lease_duration",
        "lease_renewal_threshold",
        "k8s_auth_role_name",
        "k8s_service_account_token",
        "k8s_service_account_token_path",
        "k8s_service_mount_path",
        "client_user_agent",
    }
)
NOT_A_SETTING = "not a vault setting"
RENEW_TOKEN = (
    "tokens are not renewed (CTS parses renew_token but never hands it to its Vault client "
    "either); a token that expires must be replaced and the daemon reloaded"
)


class VaultConfigError(ReconcilerError):
    """A `vault` block (or VAULT_* variable) that cannot make a client."""

    reason = "ConfigInvalid"


@dataclass(frozen=True)
class VaultTLSSettings:
    """The `tls` block. CTS turns TLS on for Vault by default (DefaultVaultConfig); with
    `enabled = false` an https address still uses TLS, with the system's roots and none
    of these settings (hcat leaves Go's default TLS configuration then)."""

    enabled: bool = True
    ca_cert: str = ""
    ca_path: str = ""
    cert: str = ""
    key: str = ""  # empty: the key is in the cert file (hcat LoadX509KeyPair(cert, cert))
    server_name: str = ""  # the SNI name and the name the certificate must carry
    verify: bool = True


@dataclass(frozen=True)
class VaultTransportSettings:
    """The `transport` block, in seconds; Go's meaning of zero kept (no timeout; for
    dial_keep_alive Go's 15 s, negative: off)."""

    dial_timeout: float = DEFAULT_DIAL_TIMEOUT
    dial_keep_alive: float = DEFAULT_DIAL_KEEP_ALIVE
    disable_keep_alives: bool = False
    idle_conn_timeout: float = DEFAULT_IDLE_CONN_TIMEOUT
    max_idle_conns: int = DEFAULT_MAX_IDLE_CONNS
    max_idle_conns_per_host: int = DEFAULT_MAX_IDLE_CONNS_PER_HOST
    tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT


@dataclass(frozen=True)
class VaultSettings:
    """Everything the client needs, resolved from the block and the environment once (as
    CTS's VaultConfig.Finalize). The token is kept out of repr, so that settings can be
    logged."""

    enabled: bool = True
    address: str = DEFAULT_ADDRESS
    token: str = field(default="", repr=False)
    # vault_agent_token_file: read at every secret read, so that a token Vault Agent
    # rewrites is picked up (CTS reads it once, at start); it wins over `token`.
    agent_token_file: str = ""
    # ~/.vault-token, read when no token is given at all (CTS's Finalize does the same);
    # a missing file means no token.
    home_token_file: str = ""
    namespace: str = ""
    unwrap_token: bool = False
    tls: VaultTLSSettings = field(default_factory=VaultTLSSettings)
    transport: VaultTransportSettings = field(default_factory=VaultTransportSettings)
    timeout: float = DEFAULT_TIMEOUT  # VAULT_CLIENT_TIMEOUT: one request, retries included
    max_retries: int = DEFAULT_MAX_RETRIES  # VAULT_MAX_RETRIES
    proxy: str | None = None  # HTTPS_PROXY / HTTP_PROXY as Go picks it, NO_PROXY honoured


# --- settings -----------------------------------------------------------------------------


def vault_settings(
    block: Mapping[str, Any] | None, env: Mapping[str, str]
) -> tuple[VaultSettings | None, list[tuple[str, str]]]:
    """The `vault` block (a free-form dict as parsed; nested blocks are dicts) and the
    daemon's environment as settings, plus (dotted key, why) for every key the daemon does
    not act on.

    CTS's rule for `enabled` (config/vault.go Finalize): the block's `enabled` when set,
    else whether there is an address, from the block or VAULT_ADDR. So an empty block is
    off, and VAULT_ADDR alone turns Vault on without any block. None when there is neither
    a block nor VAULT_ADDR (nothing to say); otherwise settings whose `enabled` says
    whether templates may read secrets. Raises VaultConfigError for a value of the wrong
    type or a VAULT_* variable that does not parse.
    """
    ignored: list[tuple[str, str]] = []
    if block is None and not _env(env, "VAULT_ADDR"):
        return None, ignored
    top = dict(block or {})
    for key in top:
        if key not in _TOP_KEYS:
            ignored.append((key, _unknown(key)))
    tls_block = _sub_block("tls", top.get("tls"))
    transport_block = _sub_block("transport", top.get("transport"))
    for name, sub, known in (
        ("tls", tls_block, _TLS_KEYS),
        ("transport", transport_block, _TRANSPORT_KEYS),
    ):
        ignored.extend((f"{name}.{k}", NOT_A_SETTING) for k in sub if k not in known)

    address = _opt_str("address", top.get("address"))
    if address is None:
        address = _env(env, "VAULT_ADDR")
    enabled = _opt_bool("enabled", top.get("enabled"))
    if enabled is None:
        enabled = bool(address)
    if not address:
        # Vault's Go client when the address is empty: VAULT_AGENT_ADDR, else its default.
        address = _env(env, "VAULT_AGENT_ADDR") or DEFAULT_ADDRESS

    namespace = _opt_str("namespace", top.get("namespace"))
    if namespace is None:
        namespace = _env(env, "VAULT_NAMESPACE")

    # Token order (CTS): vault_agent_token_file, `token`, VAULT_TOKEN, ~/.vault-token.
    token = _opt_str("token", top.get("token"))
    if token is None:
        token = _env(env, "VAULT_TOKEN")
    agent_file = _opt_str("vault_agent_token_file", top.get("vault_agent_token_file")) or ""
    home_file = ""
    if not agent_file and not token and _env(env, "HOME"):
        home_file = os.path.join(_env(env, "HOME"), ".vault-token")

    renew = _opt_bool("renew_token", top.get("renew_token"))
    if renew:
        # false asks for what the daemon does anyway; true asks for renewal, which it
        # does not do.
        ignored.append(("renew_token", RENEW_TOKEN))
    unwrap = _opt_bool("unwrap_token", top.get("unwrap_token"))
    if unwrap is None:
        unwrap = _env_bool(env, "VAULT_UNWRAP_TOKEN", False)

    settings = VaultSettings(
        enabled=enabled,
        address=address.rstrip("/"),
        token=token,
        agent_token_file=agent_file,
        home_token_file=home_file,
        namespace=namespace.strip("/"),
        unwrap_token=unwrap,
        tls=_tls(tls_block, env),
        transport=_transport(transport_block),
        timeout=_env_timeout(env),
        max_retries=_env_retries(env),
        proxy=go_proxy(address, env),
    )
    if enabled:
        vault_base(settings)  # an address that cannot make a client is a configuration error
    return settings, ignored


def _unknown(key: str) -> str:
    if key == "ssl":
        return f"{NOT_A_SETTING}: CTS's name for this block is tls"
    if key in _CONSUL_TEMPLATE_KEYS:
        return f"{NOT_A_SETTING}: consul-template has it, CTS does not"
    return NOT_A_SETTING


def _tls(block: Mapping[str, Any], env: Mapping[str, str]) -> VaultTLSSettings:
    """TLSConfig.FinalizeVault: each key unset takes its VAULT_* variable."""

    def text(key: str, var: str) -> str:
        value = _opt_str(f"tls.{key}", block.get(key))
        return _env(env, var) if value is None else value

    verify = _opt_bool("tls.verify", block.get("verify"))
    if verify is None:
        verify = not _env_bool(env, "VAULT_SKIP_VERIFY", False)
    enabled = _opt_bool("tls.enabled", block.get("enabled"))
    return VaultTLSSettings(
        enabled=True if enabled is None else enabled,
        ca_cert=text("ca_cert", "VAULT_CACERT"),
        ca_path=text("ca_path", "VAULT_CAPATH"),
        cert=text("cert", "VAULT_CLIENT_CERT"),
        key=text("key", "VAULT_CLIENT_KEY"),
        server_name=text("server_name", "VAULT_TLS_SERVER_NAME"),
        verify=verify,
    )


def _transport(block: Mapping[str, Any]) -> VaultTransportSettings:
    def seconds(key: str, default: float) -> float:
        ns = _opt_duration(f"transport.{key}", block.get(key))
        return default if ns is None else ns / 1e9

    def count(key: str, default: int) -> int:
        n = _opt_int(f"transport.{key}", block.get(key))
        return default if n is None else n

    disable = _opt_bool("transport.disable_keep_alives", block.get("disable_keep_alives"))
    return VaultTransportSettings(
        dial_timeout=seconds("dial_timeout", DEFAULT_DIAL_TIMEOUT),
        dial_keep_alive=seconds("dial_keep_alive", DEFAULT_DIAL_KEEP_ALIVE),
        disable_keep_alives=bool(disable),
        idle_conn_timeout=seconds("idle_conn_timeout", DEFAULT_IDLE_CONN_TIMEOUT),
        max_idle_conns=count("max_idle_conns", DEFAULT_MAX_IDLE_CONNS),
        max_idle_conns_per_host=count("max_idle_conns_per_host", DEFAULT_MAX_IDLE_CONNS_PER_HOST),
        tls_handshake_timeout=seconds("tls_handshake_timeout", DEFAULT_TLS_HANDSHAKE_TIMEOUT),
    )


def _sub_block(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, list):
        if len(value) != 1:
            raise VaultConfigError(f"vault: only one '{name}' block can be configured")
        value = value[0]
    if not isinstance(value, dict):
        raise VaultConfigError(f"vault.{name} must be a block")
    return value


# Values as mapstructure's weakly typed decoding takes them (CTS decodes with
# WeaklyTypedInput): strings for bools and numbers, numbers for strings.
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def _go_bool(text: str) -> bool | None:
    """strconv.ParseBool; None when it would fail."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    return None


def _opt_str(key: str, value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise VaultConfigError(f"vault.{key} must be a string")


def _opt_bool(key: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and (parsed := _go_bool(value)) is not None:
        return parsed
    raise VaultConfigError(f"vault.{key} must be true or false")


def _opt_int(key: str, value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise VaultConfigError(f"vault.{key} must be a whole number")


def _opt_duration(key: str, value: Any) -> int | None:
    """Nanoseconds. A string is a Go duration ("10s"); a bare number is nanoseconds, as
    mapstructure decodes a number into a time.Duration."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise VaultConfigError(f"vault.{key}: {exc}") from None
    raise VaultConfigError(f'vault.{key} must be a duration such as "10s"')


def _env(env: Mapping[str, str], name: str) -> str:
    """stringFromEnv: the variable, surrounding whitespace dropped."""
    return env.get(name, "").strip()


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """boolFromEnv: a value strconv.ParseBool rejects is ignored."""
    parsed = _go_bool(_env(env, name))
    return default if parsed is None else parsed


def _env_timeout(env: Mapping[str, str]) -> float:
    """VAULT_CLIENT_TIMEOUT: whole seconds or a Go duration (parseutil.ParseDurationSecond)."""
    text = _env(env, "VAULT_CLIENT_TIMEOUT")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(int(text)) if text.isdigit() else parse_duration(text) / 1e9
    except ValueError:
        raise VaultConfigError(
            f'VAULT_CLIENT_TIMEOUT "{text}": use seconds or a duration such as "30s"'
        ) from None
    return seconds if seconds > 0 else DEFAULT_TIMEOUT


def _env_retries(env: Mapping[str, str]) -> int:
    text = _env(env, "VAULT_MAX_RETRIES")
    if not text:
        return DEFAULT_MAX_RETRIES
    try:
        return max(0, int(text))
    except ValueError:
        raise VaultConfigError(f'VAULT_MAX_RETRIES "{text}" is not a whole number') from None


# --- the address -------------------------------------------------------------------------


@dataclass(frozen=True)
class VaultBase:
    url: str
    uds: str | None
    https: bool


def vault_base(settings: VaultSettings) -> VaultBase:
    """Vault's Go client accepts http://, https:// and unix:// addresses."""
    address = settings.address
    try:
        url = urlsplit(address)
    except ValueError as exc:  # "http://[::1": an unclosed IPv6 bracket
        raise VaultConfigError(f'vault.address "{address}": {exc}') from None
    if url.scheme in ("http", "https") and url.netloc:
        return VaultBase(address, None, url.scheme == "https")
    if url.scheme == "unix" and url.path:
        return VaultBase("http://localhost", url.path, False)
    raise VaultConfigError(
        f'vault.address "{address}": use http://, https:// or unix:// (for example '
        '"https://vault.service.consul:8200")'
    )
