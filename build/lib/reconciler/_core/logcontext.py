"""The request a log line belongs to: the API sets it per request (a context variable),
the log formatter reads it.

Tasks started while a request is handled (a watcher for a new query, a task's run
worker) inherit the variable but outlive the request; they must not label their lines
with it. So the variable holds the request's own asyncio task too, and only lines logged
from that task carry the id.
"""

from __future__ import annotations

import asyncio
from contextvars import ContextVar, Token

_current: ContextVar[tuple[str, asyncio.Task[object] | None]] = ContextVar(
    "request_id", default=("", None)
)


def enter_request(rid: str) -> Token[tuple[str, asyncio.Task[object] | None]]:
    return _current.set((rid, asyncio.current_task()))


def leave_request(token: Token[tuple[str, asyncio.Task[object] | None]]) -> None:
    _current.reset(token)


def current_request_id() -> str:
    """The id of the request being handled by the running task, or ""."""
    rid, task = _current.get()
    if not rid:
        return ""
    try:
        running = asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return ""
    return rid if running is task else ""
