"""A "still waiting" line on standard error while a request takes long (an apply through
`run=now` can take minutes), so that a person at a terminal sees the CLI has not hung.

Only when the stream is a terminal: piped or redirected output stays exactly what the
command prints. The line appears after a short delay (quick answers show nothing), counts
the seconds in place, and is erased when the wait ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

DELAY = 1.0
INTERVAL = 1.0


@contextmanager
def waiting(
    stream: TextIO, message: str, *, delay: float = DELAY, interval: float = INTERVAL
) -> Iterator[None]:
    if not stream.isatty():
        yield
        return
    done = threading.Event()
    started = time.monotonic()
    shown = False

    def show() -> None:
        nonlocal shown
        if done.wait(delay):
            return
        while True:
            elapsed = int(time.monotonic() - started)
            stream.write(f"\r{message} ({elapsed}s)\x1b[K")
            stream.flush()
            shown = True
            if done.wait(interval):
                return

    thread = threading.Thread(target=show, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        if shown:
            stream.write("\r\x1b[K")
            stream.flush()
