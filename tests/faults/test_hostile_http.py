"""Hostile HTTP clients: slow heads and bodies, oversized heads and bodies, connection floods.

Each test asserts outcomes (closed, refused, 413, still serving), never latencies; the
deadlines are generous so that a loaded machine does not fail them. The short timeouts come
from HttpLimits given to the daemon's own server configuration; the flood and the large
bodies go to the daemon itself, in its own process, with its default limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

import pytest
from helpers import async_wait_for
from serverkit import (
    daemon_process,
    embedded_server,
    raise_nofile,
    rss_kib,
    small_app,
    wait_listening,
)
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reconciler.api.inputs import MAX_BODY_BYTES
from reconciler.daemon.httpguard import HttpLimits

pytestmark = pytest.mark.anyio

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]
HEALTH = b"GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n"


async def connect(port: int) -> Streams:
    return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)


async def response_head(reader: asyncio.StreamReader, timeout: float = 30) -> bytes:
    """The status line and headers of the next response, or b"" when the server closed."""
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except asyncio.IncompleteReadError as exc:
        return exc.partial
    except ConnectionResetError:
        return b""


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 60) -> bytes:
    """Everything the server sent until it closed the connection (fails if it never does)."""
    data = b""
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
    return data


async def get_health(port: int) -> bytes:
    reader, writer = await connect(port)
    try:
        writer.write(HEALTH)
        return await response_head(reader)
    finally:
        writer.close()


async def drip(writer: asyncio.StreamWriter, data: bytes, pause: float) -> None:
    """Send `data` one byte at a time, forever if need be, until the server closes."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(pause)


# --- slow clients ------------------------------------------------------------------------------


async def test_slow_heads_are_closed_and_other_clients_are_served() -> None:
    limits = HttpLimits(header_timeout=1.0)
    async with embedded_server(small_app(), limits=limits) as port:
        idle = [await connect(port) for _ in range(10)]  # connect, then say nothing
        slow = [await connect(port) for _ in range(10)]  # a header, a byte every 50 ms
        endless = b"GET /v1/health HTTP/1.1\r\nHost: t\r\nX-Slow: " + b"a" * 100_000
        drips = [asyncio.create_task(drip(w, endless, 0.05)) for _, w in slow]
        started = time.monotonic()
        try:
            # Meanwhile everyone else is served.
            for _ in range(5):
                assert (await get_health(port)).startswith(b"HTTP/1.1 200 ")
            closing = [closed_by_server(r) for r, _ in idle + slow]
            sent = await asyncio.gather(*closing)
            took = time.monotonic() - started
        finally:
            for task in drips:
                task.cancel()
            for _, w in idle + slow:
                w.close()
        assert sent == [b""] * 20  # closed, no answer to a request that never ended
        assert (await get_health(port)).startswith(b"HTTP/1.1 200 ")
        print(f"20 slow heads closed {took:.2f}s after they connected (header_timeout 1s)")


async def test_a_keep_alive_connection_gets_a_new_head_deadline() -> None:
    limits = HttpLimits(header_timeout=1.0, keep_alive_timeout=60)
    async with embedded_server(small_app(), limits=limits) as port:
        reader, writer = await connect(port)
        writer.write(HEALTH)
        assert (await response_head(reader)).startswith(b"HTTP/1.1 200 ")
        assert await reader.readexactly(2) == b"{}"
        # The next request never completes its head: closed although keep-alive is long.
        drips = asyncio.create_task(drip(writer, b"GET /v1/health HTTP/1.1\r\n" * 1000, 0.05))
        try:
            assert await closed_by_server(reader) == b""
        finally:
            drips.cancel()
            writer.close()


async def test_a_slow_body_is_cut_with_408(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    limits = HttpLimits(body_timeout=1.0)
    async with embedded_server(small_app(), limits=limits) as port:
        reader, writer = await connect(port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
        drips = asyncio.create_task(drip(writer, b"x" * 100_000, 0.05))
        try:
            answer = await closed_by_server(reader)
        finally:
            drips.cancel()
            writer.close()
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert (await get_health(port)).startswith(b"HTTP/1.1 200 ")
        # The application saw the body end early: an expected outcome, not a server error.
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        # A body that arrives in time is read whole.
        reader, writer = await connect(port)
        writer.write(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello")
        assert (await response_head(reader)).startswith(b"HTTP/1.1 200 ")
        writer.close()


async def test_an_oversized_head_gets_431() -> None:
    async with embedded_server(small_app(), limits=HttpLimits(max_header_bytes=16 * 1024)) as port:
        reader, writer = await connect(port)
        head = b"GET /v1/health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 1024
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000):  # 10 MB of one header, unless the server stops it first
                writer.write(head if _ == 0 else b"a" * 1024)
                await writer.drain()
        answer = await closed_by_server(reader)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 ")
        # Big but within the limit is fine.
        reader, writer = await connect(port)
        writer.write(b"GET /v1/health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        assert (await response_head(reader)).startswith(b"HTTP/1.1 200 ")
        writer.close()


# --- caps on connections and on requests in flight -------------------------------------------


async def test_connections_over_the_cap_get_503_and_the_rest_are_served() -> None:
    release = asyncio.Event()
    waiting: list[Request] = []

    async def slow(request: Request) -> JSONResponse:
        waiting.append(request)
        await release.wait()
        return JSONResponse({})

    limits = HttpLimits(max_connections=20, max_requests=3, header_timeout=60)
    app = small_app([Route("/slow", slow)])
    async with embedded_server(app, limits=limits) as port:
        held = [await connect(port) for _ in range(19)]
        # Once this answer comes, the server has accepted the 19 before it.
        assert (await get_health(port)).startswith(b"HTTP/1.1 200 ")
        held.append(await connect(port))  # the 20th still fits
        for _, w in held[:3]:
            w.write(b"GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
        await async_wait_for(lambda: len(waiting) == 3, timeout=30, what="3 requests in flight")

        reader, writer = await connect(port)  # the 21st connection: refused at once
        assert (await closed_by_server(reader)).startswith(b"HTTP/1.1 503 ")
        writer.close()
        r, w = held[3]  # a 4th request in flight: 503, the connection closes
        w.write(HEALTH)
        assert (await closed_by_server(r)).startswith(b"HTTP/1.1 503 ")

        release.set()
        for r, _ in held[:3]:
            assert (await response_head(r)).startswith(b"HTTP/1.1 200 ")
        for _, w in held:
            w.close()

        async def served() -> bool:
            return (await get_health(port)).startswith(b"HTTP/1.1 200 ")

        await async_wait_for(served, timeout=30, what="the server to serve again")


# --- the daemon itself: large bodies, a flood of connections -----------------------------------


def post_head(length: int | None) -> bytes:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /v1/tasks HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{size}\r\n\r\n"
    ).encode()


async def test_100_mb_bodies_are_refused_early_with_413(tmp_path: Path) -> None:
    with daemon_process(tmp_path) as (proc, port):
        wait_listening(port, proc)
        assert (await get_health(port)).startswith(b"HTTP/1.1 200 ")
        rss_before = rss_kib(proc.pid)

        # A declared size over the limit: refused before a byte of the body is read.
        reader, writer = await connect(port)
        writer.write(post_head(100 * 1024 * 1024))
        head = await response_head(reader)
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert b"byte limit" in await closed_by_server(reader)  # the error body, then EOF
        writer.close()

        # A chunked body has no declared size: cut off once it passes 1 MiB.
        reader, writer = await connect(port)
        writer.write(post_head(None))
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b" " * 64 * 1024)
        sent = 0
        answer = asyncio.create_task(response_head(reader, timeout=60))
        with contextlib.suppress(ConnectionError):
            while sent < 100 * 1024 * 1024 and not answer.done():
                writer.write(chunk)
                await writer.drain()
                sent += 64 * 1024
                # drain() does not yield while the socket takes everything: let the
                # task reading the answer see it.
                await asyncio.sleep(0)
        head = await answer
        writer.close()
        assert head.startswith(b"HTTP/1.1 413 "), head
        assert sent < 50 * 1024 * 1024, f"{sent} bytes went in before the 413"
        assert MAX_BODY_BYTES < 2 * 1024 * 1024

        assert (await get_health(port)).startswith(b"HTTP/1.1 200 ")
        grown = rss_kib(proc.pid) - rss_before
        assert grown < 32 * 1024, f"the daemon grew by {grown} KiB"
        print(f"chunked 100 MB: 413 after {sent / 2**20:.1f} MiB sent; RSS +{grown} KiB")


async def _open(port: int, count: int) -> list[Streams | None]:
    """`count` connections, opened 500 at a time; None where the connect failed."""
    out: list[Streams | None] = []
    for start in range(0, count, 500):
        batch = await asyncio.gather(
            *(connect(port) for _ in range(min(500, count - start))), return_exceptions=True
        )
        out.extend(None if isinstance(b, BaseException) else b for b in batch)
    return out


async def _ask(streams: Streams | None) -> str:
    if streams is None:
        return "refused"
    reader, writer = streams
    try:
        writer.write(HEALTH)
        await writer.drain()
        head = await response_head(reader, timeout=60)
    except (ConnectionError, TimeoutError):
        return "closed"
    if head.startswith(b"HTTP/1.1 200 "):
        return "200"
    if head.startswith(b"HTTP/1.1 503 "):
        return "503"
    return "closed" if not head else head.decode(errors="replace")


async def test_ten_thousand_connections(tmp_path: Path) -> None:
    room = raise_nofile() - 200
    count = min(10_000, room)
    if count < 10_000:
        print(f"only {count} connections: the open file limit is {room + 200}")
    with daemon_process(tmp_path) as (proc, port):
        wait_listening(port, proc)
        assert (await get_health(port)).startswith(b"HTTP/1.1 200 ")
        rss_before = rss_kib(proc.pid)
        started = time.monotonic()
        conns = await _open(port, count)
        opened = time.monotonic() - started
        rss_held = rss_kib(proc.pid)
        try:
            outcomes = await asyncio.gather(*(_ask(c) for c in conns))
        finally:
            for c in conns:
                if c is not None:
                    c[1].close()
        tally = {k: outcomes.count(k) for k in sorted(set(outcomes))}
        assert set(tally) <= {"200", "503", "closed", "refused"}, tally
        assert tally.get("200", 0) > 0, tally
        if count > HttpLimits.max_connections:
            assert tally.get("503", 0) + tally.get("closed", 0) + tally.get("refused", 0) > 0

        async def served() -> bool:
            return (await get_health(port)).startswith(b"HTTP/1.1 200 ")

        await async_wait_for(served, timeout=60, what="the daemon to serve after the flood")
        assert proc.poll() is None
        rss_after = rss_kib(proc.pid)
        # Bounded by the connection cap: a few KiB per held connection, not per attempt.
        assert rss_held - rss_before < 128 * 1024, (rss_before, rss_held)
        print(
            f"{count} connections opened in {opened:.1f}s: {tally}; daemon RSS "
            f"{rss_before} KiB before, {rss_held} KiB holding them, {rss_after} KiB after"
        )
