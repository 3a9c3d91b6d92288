"""The API server's configuration: uvicorn with the `tls` block and the HTTP limits.

Resolved once into a `uvicorn.Config` (as uvicorn itself does): TLS from the settings, the
guarded protocol of `httpguard`, and the open-file limit raised so that the connection cap,
not the kernel, decides when connections are turned away.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import resource
import ssl
from collections.abc import Callable
from typing import Any, ClassVar

import uvicorn

from reconciler._core.errors import ConfigError, Problem
from reconciler.daemon.httpguard import HttpLimits, guarded_protocol
from reconciler.settings import TLSSettings
from reconciler.settings.tls import TLSFileError, server_context

log = logging.getLogger(__name__)

# File descriptors kept for everything but API connections: task files, git, Terraform's
# pipes, the parse cache, the listening socket.
RESERVED_FDS = 256
# Far above any real need; some systems report an effectively unlimited hard limit.
MAX_NOFILE = 1 << 20


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE as far as the hard limit allows; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_NOFILE if hard == resource.RLIM_INFINITY else min(hard, MAX_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open file limit from %d to %d: %s", soft, target, exc)
    return soft if soft != resource.RLIM_INFINITY else MAX_NOFILE


def fitted(limits: HttpLimits, open_files: int) -> HttpLimits:
    """`limits` with the connection cap lowered to what `open_files` descriptors allow."""
    room = max(open_files - RESERVED_FDS, 16)
    if limits.max_connections <= room:
        return limits
    log.warning(
        "the open file limit (%d) allows %d API connections, not %d",
        open_files,
        room,
        limits.max_connections,
    )
    return dataclasses.replace(limits, max_connections=room)


class GuardedEventLoop(asyncio.SelectorEventLoop):
    """asyncio's event loop, with a deadline for the TLS handshakes of the servers it runs.

    uvicorn creates its server without one, so asyncio's default (60 s) applies, and the
    guarded protocol's deadlines and connection cap only start once a handshake completes:
    a client that never finishes its handshake would hold a socket and its TLS state for a
    minute, uncounted."""

    handshake_timeout: ClassVar[float] = 10.0

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None and kwargs.get("ssl_handshake_timeout") is None:
            kwargs["ssl_handshake_timeout"] = self.handshake_timeout
        return await super().create_server(*args, **kwargs)


def tls_context(tls: TLSSettings) -> ssl.SSLContext:
    """The server context; a file that became unusable since the settings loaded is a
    configuration error naming the setting."""
    try:
        return server_context(tls)
    except TLSFileError as exc:
        raise ConfigError(Problem(exc.message, ("tls",))) from None


class ServerTLS:
    """The API's TLS context, whose certificates a reload re-reads (rotated without a
    restart).

    The listening socket keeps the context it was created with; its SNI callback, which
    OpenSSL runs on every handshake (a client that sends no name included), hands each
    new connection the latest context: its certificate chain and the CAs that client
    certificates are checked against. Whether a client certificate is required at all is
    copied from the listening context before the callback runs, so `verify_incoming`
    changes only at a restart."""

    def __init__(self, tls: TLSSettings) -> None:
        self.tls = tls
        self.listening = self.current = tls_context(tls)
        self.listening.sni_callback = self._select

    def _select(self, connection: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        connection.context = self.current

    def reload(self, tls: TLSSettings) -> None:
        """Read the files of `tls` again; new connections use them. Raises ConfigError
        (and keeps the current certificates) when they cannot be used."""
        self.current = tls_context(tls)
        self.tls = tls


def server_config(
    app: Callable[..., Any],
    *,
    host: str,
    port: int,
    tls: TLSSettings | ServerTLS,
    limits: HttpLimits | None = None,
    open_files: int | None = None,
) -> uvicorn.Config:
    """A uvicorn configuration serving `app` with TLS when `tls` is enabled and `limits`
    (default HttpLimits(), the connection cap fitted to `open_files`)."""
    limits = limits or HttpLimits()
    if open_files is not None:
        limits = fitted(limits, open_files)
    served = tls if isinstance(tls, ServerTLS) else ServerTLS(tls) if tls.enabled else None
    context = served.listening if served is not None else None
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=guarded_protocol(limits),
        ws="none",  # the API has no WebSocket endpoint: no upgrade path to guard
        log_config=None,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=5,
        timeout_keep_alive=limits.keep_alive_timeout,
        backlog=limits.backlog,
        # Connections and requests in flight are capped by the protocol (see httpguard).
        limit_concurrency=None,
        ssl_context_factory=(lambda _config, _default: context) if context else None,
    )
