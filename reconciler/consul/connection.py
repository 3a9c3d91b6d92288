"""The Consul client's configuration, resolved once from the daemon's `consul` block.

Every setting of CTS's `consul { address, token, auth, tls, transport }` maps to something
here; none is parsed and dropped. Go's `http.Transport` knobs become httpx2 limits,
timeouts and socket options, with Go's meaning of zero kept (hcat client_set.go
newTransport/newDialer).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass, field

import httpx2

from reconciler._core.goclient import client_ssl_context, go_proxy, keepalive_options
from reconciler.settings.model import SECOND, ConsulSettings

# Consul's default blocking wait when the client sends none (CTS sends none); the server
# adds up to wait/16 of jitter (consul-client.md section 2).
DEFAULT_WAIT = 300.0
# Head room above `wait + wait/16` before the client gives up reading a blocking answer.
READ_MARGIN = 5.0
# Reading a non-blocking answer, when no dial timeout is configured.
DEFAULT_READ = 30.0
# Go's net.Dialer uses 15 s of TCP keep-alive when KeepAlive is zero.
GO_DEFAULT_KEEPALIVE = 15.0
# Go's http.Transport keeps two idle connections per host when MaxIdleConnsPerHost is 0.
GO_DEFAULT_IDLE_PER_HOST = 2


class ConsulConfigError(ValueError):
    """A `consul` block that cannot make a client (bad address scheme, unreadable cert)."""


@dataclass(frozen=True)
class ClientConfig:
    base_url: str  # scheme://host:port, no trailing slash
    uds: str | None = None  # a unix socket path (address = "unix:///path")
    token: str = field(default="", repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)
    tls: bool = False
    verify: bool = True
    ca_cert: str | None = None
    ca_path: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str = ""
    wait: float = DEFAULT_WAIT
    connect_timeout: float | None = 30.0  # dial, plus the TLS handshake when TLS is on
    keepalive: float | None = GO_DEFAULT_KEEPALIVE  # TCP keep-alive; None: off
    max_keepalive_connections: int | None = 100  # idle connections kept; None: no cap
    keepalive_expiry: float | None = 5.0  # idle connections closed after; None: never
    # The most connections open to this agent at once (transport.max_conns_per_host);
    # None: no cap.
    max_connections: int | None = 64

    def timeout(self, blocking_wait: float | None = None) -> httpx2.Timeout:
        """Read timeouts outlast the longest answer Consul may take: a blocking query's
        wait plus the up to wait/16 of jitter Consul adds (libs.md: httpx's default 5 s
        kills an 8 s blocking query)."""
        read = self.connect_timeout or DEFAULT_READ
        if blocking_wait is not None:
            read = blocking_wait + blocking_wait / 16 + READ_MARGIN
        return httpx2.Timeout(
            connect=self.connect_timeout, read=read, write=self.connect_timeout, pool=None
        )

    def request_extensions(self) -> dict[str, str]:
        # tls.server_name is both the SNI name and the name the certificate is checked
        # against (hcat sets tls.Config.ServerName).
        return {"sni_hostname": self.server_name} if self.tls and self.server_name else {}


def _seconds(ns: int) -> float:
    return ns / SECOND


def client_config(consul: ConsulSettings, *, wait: float = DEFAULT_WAIT) -> ClientConfig:
    """Resolve the `consul` block into a ClientConfig."""
    address = consul.address.strip().rstrip("/")
    tls = consul.tls.enabled
    uds: str | None = None
    scheme, sep, rest = address.partition("://")
    if sep:
        # consul/api NewClient: "https://" turns TLS on; "http://" never turns it off
        # when tls.enabled asked for it; "unix://" is a socket path.
        if scheme == "https":
            tls = True
        elif scheme == "unix":
            uds = rest
            rest = "localhost"
        elif scheme != "http":
            raise ConsulConfigError(
                f'consul.address "{consul.address}": unknown protocol scheme "{scheme}"'
                " (use host:port, http://, https:// or unix://)"
            )
        address = rest
    if not address:
        raise ConsulConfigError('consul.address is empty (for example "localhost:8500")')
    t = consul.transport
    connect = _seconds(t.dial_timeout) if t.dial_timeout > 0 else None
    if connect is not None and tls and t.tls_handshake_timeout > 0:
        # httpcore counts the handshake inside the connect timeout.
        connect += _seconds(t.tls_handshake_timeout)
    if t.dial_keep_alive < 0:
        keepalive: float | None = None
    elif t.dial_keep_alive == 0:
        keepalive = GO_DEFAULT_KEEPALIVE
    else:
        keepalive = _seconds(t.dial_keep_alive)
    # One host only, so Go's total and per-host idle caps reduce to the smaller one.
    per_host = t.max_idle_conns_per_host or GO_DEFAULT_IDLE_PER_HOST
    idle = min(per_host, t.max_idle_conns) if t.max_idle_conns > 0 else per_host
    auth = (consul.auth.username, consul.auth.password) if consul.auth.enabled else None
    c = consul.tls
    return ClientConfig(
        base_url=f"{'https' if tls else 'http'}://{address}",
        uds=uds,
        token=consul.token,
        auth=auth,
        tls=tls,
        verify=c.verify,
        ca_cert=str(c.ca_cert) if c.ca_cert else None,
        ca_path=str(c.ca_path) if c.ca_path else None,
        cert=str(c.cert) if c.cert else None,
        key=str(c.key) if c.key else None,
        server_name=c.server_name,
        wait=wait,
        connect_timeout=connect,
        keepalive=keepalive,
        max_keepalive_connections=0 if t.disable_keep_alives else idle,
        keepalive_expiry=_seconds(t.idle_conn_timeout) if t.idle_conn_timeout > 0 else None,
        max_connections=t.max_conns_per_host or None,
    )


def ssl_context(config: ClientConfig) -> ssl.SSLContext:
    try:
        return client_ssl_context(
            ca_cert=config.ca_cert,
            ca_path=config.ca_path,
            cert=config.cert,
            key=config.key,
            verify=config.verify,
        )
    except (OSError, ssl.SSLError) as err:
        raise ConsulConfigError(f"consul.tls: {err}") from err


def environment_proxy(config: ClientConfig) -> str | None:
    """The proxy Go's http.ProxyFromEnvironment would pick (hcat's transport uses it)."""
    if config.uds:
        return None
    return go_proxy(config.base_url, os.environ)


def http_client(config: ClientConfig) -> httpx2.AsyncClient:
    """The one AsyncClient every query of this Consul shares."""
    verify: ssl.SSLContext | bool = ssl_context(config) if config.tls else True
    limits = httpx2.Limits(
        # A hard cap (Go's MaxConnsPerHost). The watchers keep their long polls below it
        # (watchers.py switches to cluster-wide indexes), so that requests queue here only
        # briefly; with no cap, each blocking query holds one connection (as CTS).
        max_connections=config.max_connections,
        max_keepalive_connections=config.max_keepalive_connections,
        keepalive_expiry=config.keepalive_expiry,
    )
    transport = httpx2.AsyncHTTPTransport(
        verify=verify,
        limits=limits,
        uds=config.uds,
        socket_options=keepalive_options(config.keepalive),
        proxy=environment_proxy(config),
    )
    headers = {"X-Consul-Token": config.token} if config.token else {}
    return httpx2.AsyncClient(
        base_url=config.base_url,
        headers=headers,
        auth=config.auth,
        transport=transport,
        timeout=config.timeout(),
    )
