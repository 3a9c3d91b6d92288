"""What the in-test HTTP servers (consulfake, vaultfake) share: listening on 127.0.0.1,
dying as the real server dies (listening stops, open connections are cut), and running on
an event loop of their own for a test that is not async."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Coroutine, Iterator, Mapping
from http import HTTPStatus
from typing import Any, Generic, Self, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

T = TypeVar("T")


Head = tuple[str, str, dict[str, list[str]], dict[str, str], bytes]


async def read_request(reader: asyncio.StreamReader) -> Head | None:
    """One HTTP/1.1 request: (method, percent-decoded path, query, lower-cased headers,
    body); None when the client closed the connection."""
    line = await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    content = b""
    if n := int(headers.get("content-length", "0")):
        content = await reader.readexactly(n)
    url = urlsplit(target)
    return method, unquote(url.path), parse_qs(url.query, keep_blank_values=True), headers, content


async def write_response(
    writer: asyncio.StreamWriter, status: int, payload: bytes, extra: Mapping[str, str] = {}
) -> None:
    """A JSON answer with its length (keep-alive)."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    head = [f"HTTP/1.1 {status} {reason}"]
    head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    head += [f"{k}: {v}" for k, v in extra.items()]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
    await writer.drain()


class LoopbackServer:
    """Subclasses answer a connection in `_connection`, inside `with self._open(writer)`."""

    def __init__(self, *, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.tls = tls  # serve HTTPS with this context
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    @contextlib.contextmanager
    def _open(self, writer: asyncio.StreamWriter) -> Iterator[None]:
        """Count the connection as open (so that `stop` can cut it) while it is served."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        self._writers.add(writer)
        try:
            yield
        finally:
            self._writers.discard(writer)
            self._connections.discard(task)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", self.port, reuse_address=True, ssl=self.tls
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Listening stops and open connections are cut."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


S = TypeVar("S", bound=LoopbackServer)


class OnItsOwnLoop(Generic[S]):
    """`fake` started on an event loop in a thread of its own (the daemon, or Terraform,
    is another process); `run` runs a coroutine there."""

    def __init__(self, fake: S) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = fake
        self.run(self.fake.start())

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def close(self) -> None:
        self.run(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
