"""What Go's HTTP client does, for the Consul and Vault clients that follow hcat (CTS reads
both through Go's net/http): the proxy it picks from the environment, its TCP keep-alive,
and hcat's client TLS settings. One place, so that both clients keep the same rules."""

from __future__ import annotations

import ipaddress
import socket
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

from reconciler._core.hosts import is_loopback

# Go's net.Dialer keeps alive every 15 s when KeepAlive is zero.
GO_KEEPALIVE = 15.0


def client_ssl_context(
    *, ca_cert: str | None, ca_path: str | None, cert: str | None, key: str | None, verify: bool
) -> ssl.SSLContext:
    """hcat client_set.go newTransport: a client certificate (the key may sit in the cert
    file), a CA file or directory replacing the system roots, `verify = false` skipping
    verification altogether. Raises OSError or ssl.SSLError for files it cannot use."""
    ctx = ssl.create_default_context(cafile=ca_cert or None, capath=ca_path or None)
    if cert:
        ctx.load_cert_chain(cert, key or None)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def keepalive_options(seconds: float | None) -> list[tuple[int, int, int]]:
    """Socket options for Go's Dialer.KeepAlive: None or negative is off, zero is Go's
    15 s; it sets both the idle time and the probe interval."""
    if seconds is None or seconds < 0:
        return []
    secs = max(1, round(seconds or GO_KEEPALIVE))
    options = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL"):
        if hasattr(socket, name):
            options.append((socket.IPPROTO_TCP, getattr(socket, name), secs))
    return options


def go_proxy(address: str, env: Mapping[str, str]) -> str | None:
    """The proxy Go's http.ProxyFromEnvironment picks for `address` (hcat's transport uses
    it): HTTPS_PROXY or HTTP_PROXY by scheme (upper case first), NO_PROXY honoured, loopback
    and unix sockets never proxied, HTTP_PROXY ignored under CGI (REQUEST_METHOD set)."""
    try:
        url = urlsplit(address)
        explicit_port = url.port
    except ValueError:
        return None  # not an address at all: the client built from it says so
    if url.scheme not in ("http", "https"):
        return None

    def var(name: str) -> str:
        return env.get(name.upper()) or env.get(name.lower()) or ""

    if url.scheme == "https":
        proxy = var("HTTPS_PROXY")
    else:
        proxy = "" if env.get("REQUEST_METHOD") else var("HTTP_PROXY")
    host = (url.hostname or "").lower()
    if not proxy or not host or is_loopback(host):
        return None
    port = str(explicit_port or (443 if url.scheme == "https" else 80))
    if _no_proxy(host, port, var("NO_PROXY")):
        return None
    return proxy if "://" in proxy else f"http://{proxy}"


def _no_proxy(host: str, port: str, no_proxy: str) -> bool:
    """golang.org/x/net/http/httpproxy useProxy: "*", IPs, CIDRs, and names where
    "example.com" also covers its subdomains and ".example.com" only them."""
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if ip is not None and ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, entry_port = entry, ""
        if entry.count(":") == 1 or entry.startswith("["):
            name, _, entry_port = entry.rpartition(":")
            name = name.strip("[]")
        if entry_port and entry_port != port:
            continue
        try:
            entry_ip = ipaddress.ip_address(name)
        except ValueError:
            entry_ip = None
        if entry_ip is not None:
            # An IP entry matches that IP only, never a name.
            if entry_ip == ip:
                return True
            continue
        if name.startswith("*."):
            name = name[1:]
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False
