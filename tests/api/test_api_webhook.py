"""POST /v1/source/webhook: HMAC-signed calls schedule a fetch, nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from apikit import assert_error
from gitkit import Remote, git_core, source, tasks
from helpers import async_wait_for

from reconciler.api.app import ApiContext, create_app
from reconciler.api.webhooks import MAX_BODY, WEBHOOK_PATH, webhook_routes

pytestmark = pytest.mark.anyio

SECRET = "s3cret-webhook-key"
OTHER = "another-key"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Calls:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


def app_with(context: ApiContext | None, triggers: dict[str, Calls]) -> httpx2.AsyncClient:
    """The API app with the webhook routes added, as the daemon does."""
    if context is None:
        from reconciler.daemon.core import Core

        context = ApiContext(Core([]).commands)
    app = create_app(context)
    app.router.routes.extend(webhook_routes(triggers))
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://t")


@pytest.fixture
async def hooks() -> AsyncIterator[tuple[httpx2.AsyncClient, Calls, Calls]]:
    mine, other = Calls(), Calls()
    async with app_with(None, {SECRET: mine, OTHER: other}) as client:
        yield client, mine, other


async def test_github_and_generic_signatures_schedule_a_fetch(
    hooks: tuple[httpx2.AsyncClient, Calls, Calls],
) -> None:
    client, mine, other = hooks
    body = b'{"ref": "refs/heads/main", "after": "0000"}'
    r = await client.post(WEBHOOK_PATH, content=body, headers={"X-Hub-Signature-256": sign(body)})
    assert r.status_code == 202, r.text
    assert r.json()["scheduled"] == 1
    r = await client.post(WEBHOOK_PATH, content=body, headers={"X-Signature": sign(body, OTHER)})
    assert r.status_code == 202
    assert (mine.count, other.count) == (1, 1)


async def test_the_payload_is_never_parsed(hooks: tuple[httpx2.AsyncClient, Calls, Calls]) -> None:
    client, mine, _ = hooks
    for body in (b"", b"not json at all \xff", b'{"action": "delete everything"}'):
        r = await client.post(WEBHOOK_PATH, content=body, headers={"X-Signature": sign(body)})
        assert r.status_code == 202
    assert mine.count == 3


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ({}, "not signed"),
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64}, "does not match"),
        ({"X-Signature": "sha1=abcdef"}, "sha256=<hex digest>"),
        ({"X-Hub-Signature": "sha1=abcdef"}, "not signed"),  # the SHA-1 header is not enough
        ({"X-Signature": "sha256=zz\u00e9".encode("latin-1")}, "does not match"),
    ],
    ids=["missing", "wrong", "malformed", "sha1-only", "non-hex"],
)
async def test_unsigned_or_wrongly_signed_calls_get_401(
    hooks: tuple[httpx2.AsyncClient, Calls, Calls],
    headers: dict[str, str | bytes],
    fragment: str,
) -> None:
    client, mine, other = hooks
    raw = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]
    r = await client.post(WEBHOOK_PATH, content=b"{}", headers=raw)
    assert_error(r, 401, fragment)
    assert (mine.count, other.count) == (0, 0)


async def test_signature_of_another_body_gets_401(
    hooks: tuple[httpx2.AsyncClient, Calls, Calls],
) -> None:
    client, mine, _ = hooks
    r = await client.post(
        WEBHOOK_PATH, content=b'{"a": 2}', headers={"X-Signature": sign(b'{"a": 1}')}
    )
    assert_error(r, 401, "does not match")
    assert mine.count == 0


async def test_bodies_over_one_mib_get_413_even_when_signed(
    hooks: tuple[httpx2.AsyncClient, Calls, Calls],
) -> None:
    client, mine, _ = hooks
    big = b"x" * (MAX_BODY + 1)
    r = await client.post(WEBHOOK_PATH, content=big, headers={"X-Signature": sign(big)})
    assert_error(r, 413, "larger than")

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the cap still holds
        for _ in range(20):
            yield b"y" * 65536

    streamed = b"y" * 65536 * 20
    for _ in range(3):  # replays
        r = await client.post(
            WEBHOOK_PATH, content=chunks(), headers={"X-Signature": sign(streamed)}
        )
        assert_error(r, 413, "larger than")
    exactly = b"z" * MAX_BODY
    r = await client.post(WEBHOOK_PATH, content=exactly, headers={"X-Signature": sign(exactly)})
    assert r.status_code == 202
    assert mine.count == 1


async def test_only_post_and_no_route_without_secrets(
    hooks: tuple[httpx2.AsyncClient, Calls, Calls],
) -> None:
    client, _, _ = hooks
    assert_error(await client.get(WEBHOOK_PATH), 405, "POST")
    assert webhook_routes({}) == []
    async with app_with(None, {}) as bare:
        assert_error(await bare.post(WEBHOOK_PATH, content=b"{}"), 404)


async def test_push_then_webhook_brings_the_change_live_and_a_burst_fetches_once(
    tmp_path: Path,
) -> None:
    remote = Remote.create(tmp_path, tasks("a"))
    async with git_core(source(remote, tmp_path / "work"), rescan_interval=300) as core:
        context = ApiContext(core.commands)
        app = create_app(context)
        app.router.routes.extend(webhook_routes({SECRET: lambda: core.loop.hint(None)}))
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://t"
        ) as client:
            remote.commit_and_push(tasks("b"))
            body = b'{"ref": "refs/heads/main"}'
            headers = {"X-Hub-Signature-256": sign(body)}
            fetches = core.source.status().fetches
            burst = [client.post(WEBHOOK_PATH, content=body, headers=headers) for _ in range(20)]
            assert {r.status_code for r in await asyncio.gather(*burst)} == {202}
            await async_wait_for(lambda: core.names() == {"a", "b"}, timeout=5, what="webhook")
            await async_wait_for(
                lambda: core.loop.reconciles > 0 and not core.loop._wakeup.is_set(),
                what="the loop to go idle",
            )
            assert core.source.status().fetches - fetches == 1
            # With the loop idle, a later call fetches again.
            remote.commit_and_push(tasks("c"))
            r = await client.post(WEBHOOK_PATH, content=body, headers=headers)
            assert r.status_code == 202
            await async_wait_for(lambda: "c" in core.names(), timeout=5, what="second webhook")
            assert core.source.status().fetches - fetches == 2


async def test_webhook_outcomes_are_counted() -> None:
    from reconciler.daemon.core import Core
    from reconciler.daemon.metrics import PrometheusMetrics

    metrics = PrometheusMetrics()
    app = create_app(ApiContext(Core([]).commands))
    app.router.routes.extend(webhook_routes({SECRET: Calls()}, recorder=metrics))
    body = b"{}"
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://t"
    ) as c:
        assert (
            await c.post(WEBHOOK_PATH, content=body, headers={"X-Signature": sign(body)})
        ).status_code == 202
        assert (
            await c.post(WEBHOOK_PATH, content=body, headers={"X-Signature": "sha256=00"})
        ).status_code == 401
        assert (await c.post(WEBHOOK_PATH, content=body)).status_code == 401
    value = metrics.registry.get_sample_value
    assert value("reconciler_webhook_requests_total", {"outcome": "accepted"}) == 1
    assert value("reconciler_webhook_requests_total", {"outcome": "rejected"}) == 2
