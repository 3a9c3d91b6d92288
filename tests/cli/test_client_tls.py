"""The client commands over TLS, against `reconciler start` serving HTTPS with certificates
made here (trustme): the CA from -ca-cert, -ca-path or CTS_CACERT; no CA is a clear
certificate error; -ssl-verify=false skips the check; and with verify_incoming the client
certificate from -client-cert/-client-key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from clikit import ok, run_cli
from serverkit import Certs, daemon_process, tls_block, wait_listening


@pytest.fixture(scope="module")
def tls_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Certs, str]]:
    root = tmp_path_factory.mktemp("tls")
    certs = Certs(root / "certs")
    with daemon_process(root, tls_block(certs)) as (proc, port):
        wait_listening(port, proc)
        yield certs, f"https://localhost:{port}"


def listing(address: str, *flags: str, env: dict[str, str] | None = None) -> object:
    return run_cli("task", "list", f"-http-addr={address}", *flags, env=env)


def test_the_ca_from_a_file_a_directory_or_the_environment(
    tls_daemon: tuple[Certs, str], tmp_path: Path
) -> None:
    certs, address = tls_daemon
    assert ok(listing(address, f"-ca-cert={certs.ca_cert}")).stdout == "No tasks.\n"
    # Every file of the directory, of any name (go-rootcerts), as the daemon reads ca_path.
    cas = tmp_path / "cas"
    cas.mkdir()
    trustme.CA().cert_pem.write_to_path(str(cas / "another.crt"))
    certs.ca.cert_pem.write_to_path(str(cas / "team-ca.pem"))
    ok(listing(address, f"-ca-path={cas}"))
    ok(listing(address, env={"CTS_CACERT": str(certs.ca_cert)}))
    ok(run_cli("task", "list", env={"CTS_ADDRESS": address, "CTS_CAPATH": str(cas)}))


def test_without_the_ca_the_certificate_error_is_clear(tls_daemon: tuple[Certs, str]) -> None:
    _, address = tls_daemon
    result = listing(address)
    assert result.returncode == 11, result
    (line,) = result.stderr.splitlines()
    assert f"cannot verify the certificate of the daemon at {address}" in line
    assert "-ca-cert or -ca-path" in line
    assert "Traceback" not in result.stderr


def test_ssl_verify_false_skips_the_check(tls_daemon: tuple[Certs, str]) -> None:
    _, address = tls_daemon
    ok(listing(address, "-ssl-verify=false"))
    ok(listing(address, env={"CTS_SSL_VERIFY": "false"}))
    # The flag wins over the environment.
    refused = listing(address, "-ssl-verify=true", env={"RECONCILER_SSL_VERIFY": "false"})
    assert refused.returncode == 11 and "cannot verify the certificate" in refused.stderr


def test_plain_http_to_the_tls_port_gets_cts_hint(tls_daemon: tuple[Certs, str]) -> None:
    _, address = tls_daemon
    result = listing(address.replace("https://", "http://"))
    assert result.returncode == 11, result
    assert "consider using the https scheme instead" in result.stderr


def test_client_certificates_for_verify_incoming(tmp_path: Path) -> None:
    certs = Certs(tmp_path / "certs")
    client_cert, client_key = tmp_path / "client.pem", tmp_path / "client.key"
    certs.client.cert_chain_pems[0].write_to_path(str(client_cert))
    certs.client.private_key_pem.write_to_path(str(client_key))
    block = tls_block(certs, f'  verify_incoming = true\n  ca_cert = "{certs.ca_cert}"\n')
    with daemon_process(tmp_path, block) as (proc, port):
        wait_listening(port, proc)
        address = f"https://127.0.0.1:{port}"
        ca = f"-ca-cert={certs.ca_cert}"
        ok(listing(address, ca, f"-client-cert={client_cert}", f"-client-key={client_key}"))
        env = {"CTS_CLIENT_CERT": str(client_cert), "CTS_CLIENT_KEY": str(client_key)}
        ok(listing(address, ca, env=env))

        without = listing(address, ca)
        assert without.returncode == 11, without
        (line,) = without.stderr.splitlines()
        assert f"the daemon at {address}" in line
        assert "may require a client certificate (-client-cert and -client-key)" in line

        # A certificate from a CA the daemon does not trust.
        rogue_cert, rogue_key = tmp_path / "rogue.pem", tmp_path / "rogue.key"
        certs.rogue_client.cert_chain_pems[0].write_to_path(str(rogue_cert))
        certs.rogue_client.private_key_pem.write_to_path(str(rogue_key))
        rogue = listing(address, ca, f"-client-cert={rogue_cert}", f"-client-key={rogue_key}")
        assert rogue.returncode == 11, rogue
        assert "may not accept this client certificate" in rogue.stderr

        half = listing(address, ca, f"-client-cert={client_cert}")
        assert half.returncode == 11
        assert "both client cert and client key must be provided" in half.stderr
