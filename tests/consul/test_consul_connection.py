"""The `consul` block -> the client's configuration, and TLS against a real HTTPS server."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from consulfake import FakeConsul

from reconciler.consul import ConsulClient, ConsulConfigError, ConsulUnavailable
from reconciler.consul.connection import client_config
from reconciler.settings.model import (
    SECOND,
    ConsulAuthSettings,
    ConsulSettings,
    ConsulTLSSettings,
    ConsulTransportSettings,
)

pytestmark = pytest.mark.anyio


def test_address_forms() -> None:
    assert client_config(ConsulSettings()).base_url == "http://localhost:8500"
    # CTS's e2e configs give the address without a scheme; tls.enabled picks https.
    tls = client_config(
        ConsulSettings(address="127.0.0.1:8501", tls=ConsulTLSSettings(enabled=True))
    )
    assert tls.base_url == "https://127.0.0.1:8501" and tls.tls
    assert client_config(ConsulSettings(address="https://consul.internal:8501")).tls
    # "http://" never turns off TLS that was asked for (consul/api NewClient).
    kept = client_config(
        ConsulSettings(address="http://c:8501", tls=ConsulTLSSettings(enabled=True))
    )
    assert kept.base_url == "https://c:8501"
    sock = client_config(ConsulSettings(address="unix:///run/consul.sock"))
    assert sock.uds == "/run/consul.sock" and sock.base_url == "http://localhost"
    with pytest.raises(ConsulConfigError, match='unknown protocol scheme "ftp"'):
        client_config(ConsulSettings(address="ftp://x:1"))
    with pytest.raises(ConsulConfigError, match="empty"):
        client_config(ConsulSettings(address=""))


def test_transport_settings_all_map() -> None:
    default = client_config(ConsulSettings())
    assert default.connect_timeout == 30.0 and default.keepalive == 30.0
    assert default.max_keepalive_connections == 100 and default.keepalive_expiry == 5.0
    t = ConsulTransportSettings(
        dial_keep_alive=-1,
        dial_timeout=2 * SECOND,
        disable_keep_alives=True,
        idle_conn_timeout=0,
        max_idle_conns=7,
        max_idle_conns_per_host=50,
        tls_handshake_timeout=3 * SECOND,
    )
    c = client_config(ConsulSettings(transport=t, tls=ConsulTLSSettings(enabled=True)))
    assert c.keepalive is None  # negative: TCP keep-alive off, as Go's Dialer
    assert c.connect_timeout == 5.0  # dial + TLS handshake
    assert c.max_keepalive_connections == 0  # keep-alives disabled
    assert c.keepalive_expiry is None  # 0: idle connections never expire, as Go
    idle = client_config(ConsulSettings(transport=ConsulTransportSettings(max_idle_conns=7)))
    assert idle.max_keepalive_connections == 7  # the smaller of total and per host
    go_zero = client_config(ConsulSettings(transport=ConsulTransportSettings(dial_keep_alive=0)))
    assert go_zero.keepalive == 15.0  # Go's default when KeepAlive is 0
    # Blocking reads outlast wait + wait/16.
    assert c.timeout(blocking_wait=160.0).read == 160.0 + 10.0 + 5.0
    authed = client_config(
        ConsulSettings(auth=ConsulAuthSettings(enabled=True, username="u", password="pw-9x"))
    )
    assert authed.auth == ("u", "pw-9x") and "pw-9x" not in repr(authed)
    assert "s3cret" not in repr(client_config(ConsulSettings(token="s3cret")))


async def test_basic_auth_is_sent() -> None:
    async with FakeConsul() as fake:
        auth = ConsulAuthSettings(enabled=True, username="ops", password="pw")
        client = ConsulClient(client_config(ConsulSettings(address=fake.address, auth=auth)))
        try:
            assert await client.leader() == "127.0.0.1:8300"
        finally:
            await client.aclose()
        assert fake.requests[0].headers["authorization"] == "Basic b3BzOnB3"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA, *names: str, client_ca: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    if client_ca:
        ca.configure_trust(ctx)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


async def _leader(address: str, tls: ConsulTLSSettings) -> str:
    client = ConsulClient(client_config(ConsulSettings(address=address, tls=tls)))
    try:
        return await client.leader()
    finally:
        await client.aclose()


async def test_tls_ca_and_server_name(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with FakeConsul(tls=_server_context(ca, "consul.test")) as fake:
        # The certificate names consul.test, not the address dialled: server_name is
        # what the certificate is checked against.
        good = ConsulTLSSettings(enabled=True, ca_cert=ca_file, server_name="consul.test")
        assert await _leader(fake.address, good) == "127.0.0.1:8300"
        with pytest.raises(ConsulUnavailable, match=r"(?i)certificate|hostname"):
            await _leader(fake.address, ConsulTLSSettings(enabled=True, ca_cert=ca_file))
        # Without our CA the chain is untrusted, unless verification is off.
        with pytest.raises(ConsulUnavailable, match=r"(?i)certificate"):
            await _leader(fake.address, ConsulTLSSettings(enabled=True, server_name="consul.test"))
        assert await _leader(fake.address, ConsulTLSSettings(enabled=True, verify=False))


async def test_tls_client_certificate(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf = ca.issue_cert("reconciler.client")
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    combined = tmp_path / "combined.pem"
    combined.write_bytes(key.read_bytes() + cert.read_bytes())
    async with FakeConsul(tls=_server_context(ca, "127.0.0.1", client_ca=True)) as fake:
        with_cert = ConsulTLSSettings(enabled=True, ca_cert=ca_file, cert=cert, key=key)
        assert await _leader(fake.address, with_cert)
        # The key may sit in the certificate file (hcat loads the cert as both).
        assert await _leader(
            fake.address, ConsulTLSSettings(enabled=True, ca_cert=ca_file, cert=combined)
        )
        with pytest.raises(ConsulUnavailable):
            await _leader(fake.address, ConsulTLSSettings(enabled=True, ca_cert=ca_file))


def test_unreadable_tls_files_are_configuration_errors(tmp_path: Path) -> None:
    from reconciler.consul.connection import ssl_context

    missing = tmp_path / "nope.pem"
    config = client_config(ConsulSettings(tls=ConsulTLSSettings(enabled=True, ca_cert=missing)))
    with pytest.raises(ConsulConfigError, match=r"consul\.tls: .*No such file"):
        ssl_context(config)


async def test_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from reconciler.consul.connection import environment_proxy

    async with FakeConsul() as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://{proxy.address}")
        monkeypatch.setenv("NO_PROXY", "skip.internal")
        remote = client_config(ConsulSettings(address="consul.internal:8500"))
        assert environment_proxy(remote) == f"http://{proxy.address}"
        for direct in ("127.0.0.1:8500", "localhost:8500", "skip.internal:8500"):
            assert environment_proxy(client_config(ConsulSettings(address=direct))) is None
        # The request really goes through the proxy (here the in-test server, which
        # answers the absolute-URI request itself).
        client = ConsulClient(remote)
        try:
            assert await client.leader() == "127.0.0.1:8300"
        finally:
            await client.aclose()
        assert proxy.requests[0].path == "/v1/status/leader"
