"""The Vault client against the in-test Vault: KV v2 detection and the `data/` shim as
hcat does them, KV v1, namespaces, tokens, errors that never carry a token or a secret,
retries, timeouts, TLS; and the `vault` block resolved into settings."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme
from vaultfake import FakeVault, ThreadedVault

from reconciler.runner.vault import JSONNumber, VaultClient, VaultError, shim_kv2_path
from reconciler.settings.vault import (
    VaultConfigError,
    VaultSettings,
    VaultTLSSettings,
)

pytestmark = pytest.mark.anyio

TOKEN = "hvs.test-root-token"
SECRET = "s3cr3t-value-never-shown"
DEADLINE = 10.0  # every wait in here ends well before this


@pytest.fixture
async def vault() -> AsyncIterator[FakeVault]:
    async with FakeVault(token=TOKEN) as fake:
        yield fake


def settings(fake: FakeVault, **kwargs: Any) -> VaultSettings:
    base: dict[str, Any] = {"address": fake.address, "token": TOKEN, "max_retries": 0}
    return VaultSettings(**(base | kwargs))


def client(s: VaultSettings) -> VaultClient:
    return VaultClient(s, retry_wait=(0.0, 0.01))


async def read(s: VaultSettings, *paths: str) -> list[dict[str, Any]]:
    async with client(s) as c:
        return [await c.read(p) for p in paths]


async def refused(s: VaultSettings, path: str) -> str:
    async with client(s) as c:
        with pytest.raises(VaultError) as info:
            await c.read(path)
    return info.value.message


def assert_clean(message: str, *secrets: str) -> None:
    for secret in (TOKEN, SECRET, *secrets):
        assert secret not in message


# --- KV v2, KV v1 -------------------------------------------------------------------------


async def test_kv2_with_and_without_data_in_the_path(vault: FakeVault) -> None:
    vault.put_kv2("secret", "aws", {"key": SECRET, "region": "eu-west-1"})
    async with client(settings(vault)) as c:
        plain = await c.read("secret/aws")
        shimmed = await c.read("secret/data/aws")
        trimmed = await c.read("  /secret/aws/ ")
        assert c.mounts == {"secret/": True}
    # `.Data` is the answer's data object: `.Data.data.key` works on either path.
    assert plain["data"] == {"key": SECRET, "region": "eu-west-1"}
    assert plain["metadata"]["version"] == 1 and plain["metadata"]["deletion_time"] == ""
    assert shimmed == plain == trimmed
    # All three read the data/ path; the mount was asked about once, then remembered.
    assert [r.path for r in vault.reads] == ["/v1/secret/data/aws"] * 3
    assert [r.path for r in vault.requests if r.path.startswith("/v1/sys/")] == [
        "/v1/sys/internal/ui/mounts/secret/aws"
    ]
    assert all(r.headers["x-vault-token"] == TOKEN for r in vault.requests)


async def test_kv2_version_query_and_other_paths_of_the_mount(vault: FakeVault) -> None:
    vault.put_kv2("secret", "db", {"password": "one"})
    vault.put_kv2("secret", "db", {"password": "two"})
    vault.put_kv2("secret", "team/app", {"token": "x"})
    async with client(settings(vault)) as c:
        first = await c.read("secret/db?version=1")
        latest = await c.read("secret/db")
        nested = await c.read("secret/team/app")
    assert first["data"] == {"password": "one"} and first["metadata"]["version"] == 1
    assert latest["data"] == {"password": "two"}
    assert nested["data"] == {"token": "x"}
    assert vault.reads[0].query == {"version": ["1"]}
    assert len(vault.requests_to("/v1/sys/internal/ui/mounts/secret/db")) == 1
    assert len(vault.requests) == 4  # one mount look-up, three reads


def test_the_kv2_shim_follows_hcat() -> None:
    # hcat vault_common.go shimKVv2Path
    assert shim_kv2_path("secret/aws", "secret/") == "secret/data/aws"
    assert shim_kv2_path("secret/data/aws", "secret/") == "secret/data/aws"
    assert shim_kv2_path("secret/metadata/aws", "secret/") == "secret/metadata/aws"
    assert shim_kv2_path("secret", "secret/") == "secret/data"
    assert shim_kv2_path("secret/", "secret/") == "secret/data"
    assert shim_kv2_path("team/kv/app/data", "team/kv/") == "team/kv/data/app/data"


async def test_kv1(vault: FakeVault) -> None:
    vault.put_kv1("kv", "app", {"password": SECRET, "ratio": 0.10})
    async with client(settings(vault)) as c:
        data = await c.read("kv/app")
        assert c.mounts == {"kv/": False}
    assert data == {"password": SECRET, "ratio": JSONNumber("0.1")}
    assert [r.path for r in vault.reads] == ["/v1/kv/app"]


async def test_an_old_vault_without_the_mounts_endpoint_reads_the_path_as_written(
    vault: FakeVault,
) -> None:
    vault.preflight = False
    vault.put_kv1("kv", "app", {"a": "b"})
    vault.put_kv2("secret", "aws", {"key": SECRET})
    s = settings(vault)
    assert await read(s, "kv/app", "secret/data/aws") == [
        {"a": "b"},
        {"data": {"key": SECRET}, "metadata": _meta(vault)},
    ]
    # Without the shim, a KV v2 path lacking data/ gets Vault's own warning back.
    message = await refused(s, "secret/aws")
    assert "no secret exists at secret/aws" in message and "versioned K/V" in message
    assert_clean(message)


def _meta(vault: FakeVault) -> dict[str, Any]:
    v = vault.mounts[("", "secret/")].kv2["aws"][-1]
    return {
        "created_time": v.created_time,
        "custom_metadata": None,
        "deletion_time": "",
        "destroyed": False,
        "version": 1,
    }


# --- namespaces and tokens ----------------------------------------------------------------


async def test_namespace_header(vault: FakeVault) -> None:
    vault.put_kv2("secret", "aws", {"key": SECRET}, namespace="team-a")
    data = (await read(settings(vault, namespace="team-a"), "secret/aws"))[0]
    assert data["data"] == {"key": SECRET}
    assert vault.requests and all(r.namespace == "team-a" for r in vault.requests)
    # The secret lives in its namespace only.
    vault.requests.clear()
    message = await refused(settings(vault), "secret/aws")
    assert "secret/aws" in message and "no handler for route" in message
    assert "mount could not be identified" in message
    assert all("x-vault-namespace" not in r.headers for r in vault.requests)
    assert_clean(message)


async def test_no_token_is_refused_without_showing_token_or_secret(vault: FakeVault) -> None:
    vault.put_kv2("secret", "aws", {"key": SECRET})
    message = await refused(settings(vault, token=""), "secret/aws")
    assert all("x-vault-token" not in r.headers for r in vault.requests)
    assert "vault.read(secret/aws)" in message
    assert "403 Forbidden: permission denied" in message and "no token was sent" in message
    assert_clean(message)


async def test_a_wrong_token_is_named_by_neither_message_nor_log(
    vault: FakeVault, caplog: pytest.LogCaptureFixture
) -> None:
    vault.put_kv2("secret", "aws", {"key": SECRET})
    wrong = "hvs.not-the-right-one"
    caplog.set_level(logging.DEBUG)
    message = await refused(settings(vault, token=wrong, namespace="ns1"), "secret/data/aws")
    assert "GET secret/data/aws" in message and "permission denied" in message
    assert "check the token's policies" in message and 'namespace "ns1"' in message
    assert_clean(message, wrong)
    await read(settings(vault), "secret/aws")  # a good read logs nothing secret either
    assert_clean(caplog.text, wrong)


async def test_agent_token_file_is_read_at_each_read(vault: FakeVault, tmp_path: Path) -> None:
    vault.put_kv1("kv", "app", {"a": "b"})
    vault.tokens |= {"agent-1", "agent-2"}
    token_file = tmp_path / "agent-token"
    token_file.write_text("agent-1\n")
    async with client(settings(vault, token="ignored", agent_token_file=str(token_file))) as c:
        await c.read("kv/app")
        token_file.write_text("agent-2\n")  # Vault Agent re-authenticated
        await c.read("kv/app")
        token_file.unlink()
        with pytest.raises(VaultError, match="vault_agent_token_file"):
            await c.read("kv/app")
    assert [r.token for r in vault.reads] == ["agent-1", "agent-2"]


async def test_home_token_file_only_without_a_token(vault: FakeVault, tmp_path: Path) -> None:
    vault.put_kv1("kv", "app", {"a": "b"})
    home = tmp_path / ".vault-token"
    home.write_text(f"{TOKEN}\n")
    await read(settings(vault, token="", home_token_file=str(home)), "kv/app")
    assert vault.reads[-1].token == TOKEN
    home.unlink()  # a missing ~/.vault-token means no token
    assert "no token was sent" in await refused(
        settings(vault, token="", home_token_file=str(home)), "kv/app"
    )


async def test_unwrap_token(vault: FakeVault) -> None:
    vault.put_kv1("kv", "app", {"a": "b"})
    wrapping = vault.wrap("hvs.unwrapped")
    async with client(settings(vault, token=wrapping, unwrap_token=True)) as c:
        await c.read("kv/app")
        await c.read("kv/app")  # unwrapped once: a wrapping token works only once
    assert [r.token for r in vault.requests_to("/v1/sys/wrapping/unwrap")] == [wrapping]
    assert {r.token for r in vault.reads} == {"hvs.unwrapped"}
    message = await refused(settings(vault, token=wrapping, unwrap_token=True), "kv/app")
    assert "wrapping token is not valid" in message and "unwrap_token" in message
    assert_clean(message, wrapping, "hvs.unwrapped")


# --- missing secrets, failures ------------------------------------------------------------


async def test_missing_and_deleted_secrets(vault: FakeVault) -> None:
    vault.put_kv2("secret", "old", {"key": SECRET})
    vault.put_kv1("kv", "present", {"a": "b"})
    s = settings(vault)
    message = await refused(s, "secret/nothing")
    assert (
        message
        == "vault.read(secret/nothing): no secret exists at secret/data/nothing (404 Not Found)"
    )
    message = await refused(s, "kv/absent")
    assert message == "vault.read(kv/absent): no secret exists at kv/absent (404 Not Found)"
    vault.delete_kv2("secret", "old")
    message = await refused(s, "secret/old")
    assert "no secret exists at secret/data/old (this version was deleted at 20" in message
    vault.put_kv2("secret", "old", {"key": "again"})
    vault.destroy_kv2("secret", "old", version=1)
    assert "destroyed" in await refused(s, "secret/old?version=1")
    assert (await read(s, "secret/old"))[0]["data"] == {"key": "again"}
    assert_clean(message)


async def test_a_500_fails_the_read_then_vault_recovers(vault: FakeVault) -> None:
    vault.put_kv2("secret", "aws", {"key": SECRET})
    vault.fail(500, path="/v1/secret/data/aws", errors=["internal error"])
    async with client(settings(vault)) as c:
        with pytest.raises(VaultError) as info:
            await c.read("secret/aws")
        assert info.value.message == (
            "vault.read(secret/aws): GET secret/data/aws: Vault answered "
            "500 Internal Server Error: internal error"
        )
        assert (await c.read("secret/aws"))["data"] == {"key": SECRET}


async def test_5xx_is_retried_as_vaults_client_does(vault: FakeVault) -> None:
    vault.put_kv2("secret", "aws", {"key": SECRET})
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    vault.fail(503, times=2, path="/v1/secret/data/aws")
    s = settings(vault, max_retries=2)
    async with VaultClient(s, retry_wait=(1.0, 1.5), sleep=sleep) as c:
        assert (await c.read("secret/aws"))["data"] == {"key": SECRET}
        assert len(vault.requests_to("/v1/secret/data/aws")) == 3
        # Linear back-off with jitter: attempt n waits n x [1, 1.5] s.
        assert 1.0 <= sleeps[0] <= 1.5 and 2.0 <= sleeps[1] <= 3.0
        # 501 is not retried, nor are 4xx.
        vault.fail(501, path="/v1/secret/data/aws")
        with pytest.raises(VaultError, match="501 Not Implemented"):
            await c.read("secret/aws")
        vault.fail(400, path="/v1/secret/data/aws", errors=["bad"])
        with pytest.raises(VaultError, match="400 Bad Request: bad"):
            await c.read("secret/aws")
    assert len(sleeps) == 2


async def test_a_failed_mount_lookup_falls_back_to_the_path_and_is_asked_again(
    vault: FakeVault,
) -> None:
    vault.put_kv2("secret", "aws", {"key": SECRET})
    vault.fail(500, path="/v1/sys/internal/ui/mounts/")
    async with client(settings(vault)) as c:
        # hcat reads the path as written when the look-up fails: here, Vault's warning.
        with pytest.raises(VaultError) as info:
            await c.read("secret/aws")
        assert "mount could not be identified" in info.value.message
        assert "500 Internal Server Error" in info.value.message
        # The path with data/ reads even so; the next read asks about the mount again.
        assert (await c.read("secret/data/aws"))["data"] == {"key": SECRET}
        assert c.mounts == {"secret/": True}
    assert len(vault.requests_to("/v1/sys/internal/ui/mounts/secret/data/aws")) == 1


async def test_a_vault_that_does_not_answer_times_out(vault: FakeVault) -> None:
    vault.put_kv1("kv", "app", {"a": "b"})
    vault.stall(DEADLINE, path="/v1/kv/app")
    started = time.monotonic()
    message = await refused(settings(vault, timeout=0.3), "kv/app")
    assert time.monotonic() - started < DEADLINE / 2
    assert (
        message == "vault.read(kv/app): Vault at " + vault.address + " did not answer within 300ms"
    )


async def test_connection_refused(vault: FakeVault) -> None:
    s = settings(vault)
    await vault.stop()
    message = await refused(s, "kv/app")
    assert message.startswith(f"vault.read(kv/app): Vault at {vault.address} does not answer: ")
    assert "ConnectError" in message


# --- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(ctx)
    return ctx


async def test_tls_with_a_ca_cert(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with FakeVault(token=TOKEN, tls=_server_context(ca, "127.0.0.1")) as fake:
        fake.put_kv2("secret", "aws", {"key": SECRET})
        good = settings(fake, tls=VaultTLSSettings(ca_cert=str(ca_file)))
        assert fake.address.startswith("https://")
        assert (await read(good, "secret/aws"))[0]["data"] == {"key": SECRET}
        # Without our CA the chain is untrusted: a clear error, not retried.
        message = await refused(settings(fake, max_retries=2), "secret/aws")
        assert "certificate" in message.lower() and "ConnectError" in message
        assert_clean(message)
        # Unless verification is off (tls.verify = false or VAULT_SKIP_VERIFY).
        off = settings(fake, tls=VaultTLSSettings(verify=False))
        assert (await read(off, "secret/aws"))[0]["data"] == {"key": SECRET}


async def test_tls_server_name(ca: trustme.CA, tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    async with FakeVault(token=TOKEN, tls=_server_context(ca, "vault.test")) as fake:
        fake.put_kv1("kv", "app", {"a": "b"})
        # The certificate names vault.test, not the address dialled.
        named = settings(fake, tls=VaultTLSSettings(ca_cert=str(ca_file), server_name="vault.test"))
        assert await read(named, "kv/app") == [{"a": "b"}]
        message = await refused(
            settings(fake, tls=VaultTLSSettings(ca_cert=str(ca_file))), "kv/app"
        )
        assert "certificate" in message.lower() or "hostname" in message.lower()


def test_an_unreadable_client_certificate_is_a_config_error(tmp_path: Path) -> None:
    s = VaultSettings(
        address="https://vault:8200", tls=VaultTLSSettings(cert=str(tmp_path / "no.pem"))
    )
    with pytest.raises(VaultConfigError, match=r"vault\.tls"):
        VaultClient(s)


# --- the threaded runner -------------------------------------------------------------------


def test_threaded_vault_serves_a_sync_test() -> None:
    with ThreadedVault(token=TOKEN) as server:
        server.put_kv2("secret", "aws", {"key": SECRET})
        server.put_kv1("kv", "app", {"a": "b"})
        s = VaultSettings(address=server.address, token=TOKEN, max_retries=0)
        aws, app = asyncio.run(read(s, "secret/aws", "kv/app"))
        assert aws["data"] == {"key": SECRET} and app == {"a": "b"}
        assert [r.path for r in server.fake.reads] == ["/v1/secret/data/aws", "/v1/kv/app"]


async def test_a_path_that_leaves_the_api_is_refused_unsent(vault: FakeVault) -> None:
    for path in ("../sys/raw", "secret/../../sys/raw", "secret/./aws", "secret/%2e%2e/x"):
        message = await refused(settings(vault), path)
        assert "invalid path" in message, message
    assert vault.requests == []
