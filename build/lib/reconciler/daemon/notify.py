"""systemd's sd_notify protocol: one datagram to $NOTIFY_SOCKET; a no-op without it.

What the daemon sends: READY=1 once the API serves (and again after a reload), RELOADING=1
with MONOTONIC_USEC when a SIGHUP reload begins, STOPPING=1, STATUS= lines with the task
counts, and WATCHDOG=1 every half `WatchdogSec` from the event loop (a loop that hangs
stops the pings, and systemd restarts the service).
"""

from __future__ import annotations

import os
import socket
import time


def sd_notify(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError:
        return False
    return True


def reloading_message() -> str:
    """RELOADING=1 with the time it began, as `Type=notify-reload` requires."""
    usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return f"RELOADING=1\nMONOTONIC_USEC={usec}"


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WATCHDOG_USEC), or None when systemd asks
    for none, or asks another process (WATCHDOG_PID)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return None
    pid = env.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1e6 / 2
