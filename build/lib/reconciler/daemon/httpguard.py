"""What uvicorn does not bound by itself: slow clients, oversized heads, connection floods.

uvicorn (0.54, httptools) has no deadline for reading a request: a client that opens a
connection and sends its headers one byte at a time, or its body a byte a minute, holds a
connection and its buffers forever. httptools also accumulates a header of any length.
`limit_concurrency` counts open connections as well as requests in flight, so idle
connections alone would turn every request into a 503.

`guarded_protocol(limits)` is uvicorn's httptools protocol with:

- a head deadline: from the moment a connection is ready for a request (accepted, or its
  previous response sent) until the request's headers are complete; then it is closed;
- a body deadline: from the end of the headers until the end of the body; then a 408 and
  the connection is closed;
- a cap on the bytes of a request head (431);
- a cap on open connections: one over it gets an immediate 503 and is closed, before
  anything is read or parsed;
- a cap on requests in flight (503), instead of uvicorn's count of connections.

A connection whose request body was not read to its end (a 413, a 404 for a POST, a 431)
is closed after the response rather than kept for the client to push the rest of a 100 MB
body through. Closing a socket with unread input makes the kernel send a reset, which can
destroy the response before the client reads it; so the close lingers, as nginx's and Go's
do: the response, then a FIN (half-close), then whatever still arrives is discarded
unparsed for at most `linger` seconds, then the connection is closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


@dataclass(frozen=True)
class HttpLimits:
    header_timeout: float = 10.0  # seconds from "ready for a request" to its headers' end
    body_timeout: float = 15.0  # seconds from the headers' end to the body's end
    keep_alive_timeout: int = 5  # seconds an idle connection is kept (uvicorn's)
    max_header_bytes: int = 64 * 1024  # request line and headers
    max_connections: int = 4096  # open at once; lowered to what RLIMIT_NOFILE allows
    max_requests: int = 128  # in flight at once (each may hold a body of up to 1 MiB)
    backlog: int = 2048  # connections the kernel queues before we accept them
    linger: float = 2.0  # seconds unread input is discarded after a final response


def _canned(status: bytes) -> bytes:
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 0\r\nconnection: close\r\n\r\n"
    )


BUSY = _canned(b"503 Service Unavailable")
HEAD_TOO_LARGE = _canned(b"431 Request Header Fields Too Large")
TIMED_OUT = _canned(b"408 Request Timeout")


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._refused = False
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True  # between "ready for a request" and the end of its headers
        self._head_bytes = 0
        self._lingering = False

    # --- connection -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if len(self.connections) >= self.limits.max_connections:
            # Refused before anything is read: a flood costs one write and one close per
            # connection, and memory stays bounded by the cap.
            self._refused = True
            transport.write(BUSY)
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self.limits.header_timeout, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if not self._refused:
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused or self._lingering:
            return
        super().data_received(data)
        if self._in_head and not self.transport.is_closing():
            # Counted after parsing, so that a chunk that completes the head (and may
            # carry a body) is not counted: the head is capped to the limit plus one read.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_header_bytes:
                self._linger(HEAD_TOO_LARGE)

    # --- parser callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        if self._deadline is None:  # a pipelined request
            self._arm(self.limits.header_timeout, self._head_timed_out)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        # uvicorn's check is `connections >= limit or tasks >= limit`. Connections are
        # capped in connection_made, so set the limit only when the requests in flight
        # reach theirs: then uvicorn answers 503 itself.
        busy = len(self.tasks) >= self.limits.max_requests
        self.limit_concurrency = self.limits.max_requests if busy else None
        super().on_headers_complete()
        self._arm(self.limits.body_timeout, self._body_timed_out)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or self.pipeline:
            return
        if self.cycle is not None and self.cycle.more_body:
            self._linger(None)  # answered before the body ended: do not read the rest
            return
        self._in_head = True
        self._head_bytes = 0
        self._arm(self.limits.header_timeout, self._head_timed_out)

    # --- deadlines --------------------------------------------------------------------

    def _arm(self, seconds: float, handler: Callable[[], None]) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, handler)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._deadline = None
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()
        else:
            self._linger(TIMED_OUT)

    def _linger(self, response: bytes | None) -> None:
        """Send `response` (if any) and close without a reset (see the module's doc)."""
        if self.transport.is_closing():
            return
        self._lingering = True
        self._unset_keepalive_if_required()
        if self.cycle is not None:
            # The application, if still waiting for the body, sees the client gone.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if response is not None:
            self.transport.write(response)
        if not self.transport.can_write_eof():  # TLS: no half-close
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        self._arm(self.limits.linger, self.transport.close)


def guarded_protocol(limits: HttpLimits) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, bound to `limits`."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"limits": limits})
