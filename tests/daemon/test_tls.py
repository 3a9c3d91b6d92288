"""The API over TLS, with certificates made in the test and real handshakes: HTTPS works,
plain HTTP to the TLS port gets no API answer, and with verify_incoming a client needs a
certificate signed by the configured CA (ca_cert, or any file in ca_path)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from serverkit import Certs, daemon_process, embedded_server, small_app, tls_block, wait_listening

from reconciler.daemon.server import GuardedEventLoop
from reconciler.settings import TLSSettings

pytestmark = pytest.mark.anyio


class QuickHandshakes(GuardedEventLoop):
    handshake_timeout = 1.0


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    """The daemon's event loop (run_daemon uses GuardedEventLoop), with a short deadline."""
    return ("asyncio", {"loop_factory": QuickHandshakes})


HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


async def ask(port: int, ctx: ssl.SSLContext | None) -> str:
    """GET /v1/health over TLS (or plain with ctx None): the status line, or how it failed."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="localhost" if ctx else None
            ),
            30,
        )
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    try:
        writer.write(HEALTH)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 30)
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {type(exc).__name__}: {exc}"
    finally:
        writer.close()
    return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "refused: closed"


async def test_the_daemon_serves_https_and_plain_http_gets_no_answer(tmp_path: Path) -> None:
    certs = Certs(tmp_path / "certs")
    with daemon_process(tmp_path, tls_block(certs)) as (proc, port):
        wait_listening(port, proc)
        assert await ask(port, certs.client_context()) == "HTTP/1.1 200 OK"
        plain = await ask(port, None)
        assert plain.startswith("refused"), plain
        # A client that does not trust the CA refuses the server.
        stranger = ssl.create_default_context()
        assert (await ask(port, stranger)).startswith("refused: SSLCertVerificationError")
        assert await ask(port, certs.client_context()) == "HTTP/1.1 200 OK"
    assert "serving the API on https://" in (tmp_path / "daemon.log").read_text()


async def test_verify_incoming_requires_a_client_certificate_from_the_ca(tmp_path: Path) -> None:
    certs = Certs(tmp_path / "certs")
    block = tls_block(certs, f'  verify_incoming = true\n  ca_cert = "{certs.ca_cert}"\n')
    with daemon_process(tmp_path, block) as (proc, port):
        wait_listening(port, proc)
        without = await ask(port, certs.client_context())
        assert without.startswith("refused"), without
        rogue = await ask(port, certs.client_context(certs.rogue_client))
        assert rogue.startswith("refused"), rogue
        assert (await ask(port, None)).startswith("refused")
        assert await ask(port, certs.client_context(certs.client)) == "HTTP/1.1 200 OK"


async def test_ca_path_is_a_directory_of_pem_files_of_any_name(tmp_path: Path) -> None:
    certs = Certs(tmp_path / "certs")
    cas = tmp_path / "cas"
    cas.mkdir()
    # Not OpenSSL's hashed names: CTS reads every file of the directory.
    certs.ca.cert_pem.write_to_path(str(cas / "team-ca.pem"))
    trustme.CA().cert_pem.write_to_path(str(cas / "other.crt"))
    tls = TLSSettings(True, certs.cert, certs.key, verify_incoming=True, ca_path=cas)
    async with embedded_server(small_app(), tls=tls) as port:
        assert await ask(port, certs.client_context(certs.client)) == "HTTP/1.1 200 OK"
        assert (await ask(port, certs.client_context())).startswith("refused")
        assert (await ask(port, certs.client_context(certs.rogue_client))).startswith("refused")


async def test_a_handshake_that_never_completes_is_closed(tmp_path: Path) -> None:
    certs = Certs(tmp_path / "certs")
    tls = TLSSettings(True, certs.cert, certs.key)
    async with embedded_server(small_app(), tls=tls) as port:
        started = time.monotonic()
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
        # The first bytes of a ClientHello, then nothing more.
        for _, writer in silent[5:]:
            writer.write(b"\x16\x03\x01\x02\x00\x01")
        assert await ask(port, certs.client_context()) == "HTTP/1.1 200 OK"

        async def closed(reader: asyncio.StreamReader) -> bytes:
            with contextlib.suppress(ConnectionResetError):
                async with asyncio.timeout(30):  # under asyncio's own 60 s default
                    return await reader.read()
            return b""

        assert await asyncio.gather(*(closed(r) for r, _ in silent)) == [b""] * 10
        took = time.monotonic() - started
        for _, writer in silent:
            writer.close()
        assert await ask(port, certs.client_context()) == "HTTP/1.1 200 OK"
        print(f"10 stalled TLS handshakes closed after {took:.2f}s (handshake_timeout 1s)")
