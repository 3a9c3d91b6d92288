"""The systemd notify protocol against a real unix datagram socket, with `reconciler
start` as a child process: READY=1 with a STATUS line, RELOADING=1 with MONOTONIC_USEC and
READY=1 again around a SIGHUP reload, WATCHDOG=1 pings when WatchdogSec asks for them,
STOPPING=1."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.daemon.notify import watchdog_interval

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "reconciler.service"


class Notifications:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.seen: list[str] = []

    def until(self, word: str, timeout: float = 60) -> str:
        """The next message holding `word` (every message is kept in `seen`)."""
        deadline = time.monotonic() + timeout
        while True:
            self.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                raise AssertionError(f"no {word} within {timeout}s; got {self.seen}") from None
            self.seen.append(message)
            if word in message:
                return message


def test_ready_reloading_watchdog_and_stopping(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    (tmp_path / "config.hcl").write_text(
        'port = 0\nworking_dir = "work"\n'
        'source "directory" {\n  path = "tasks"\n  allow_empty = true\n}\n'
    )
    notify = Notifications(tmp_path / "notify")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    with (tmp_path / "daemon.log").open("wb") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "start", "-config-file=config.hcl"],
            cwd=tmp_path,
            env=env,
            stderr=log,
        )
    try:
        ready = notify.until("READY=1")
        assert "STATUS=serving 0 tasks" in ready
        assert "WATCHDOG=1" in notify.until("WATCHDOG=1", timeout=10)

        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        daemon.send_signal(signal.SIGHUP)
        reloading = notify.until("RELOADING=1")
        usec = int(reloading.split("MONOTONIC_USEC=")[1].split("\n")[0])
        assert before <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert "STATUS=serving" in notify.until("READY=1")

        # A reload that fails validation keeps the running configuration and says so.
        (tmp_path / "config.hcl").write_text('port = "nope"\n')
        daemon.send_signal(signal.SIGHUP)
        notify.until("RELOADING=1")
        assert "reload failed" in notify.until("READY=1")

        daemon.send_signal(signal.SIGTERM)
        notify.until("STOPPING=1")
        assert daemon.wait(60) == 0
    finally:
        notify.sock.close()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()


def test_the_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    pid = str(os.getpid())
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_unit_verifies(tmp_path: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in result.stderr.splitlines()
        if "reconciler.service" in line and "Command /opt/reconciler" not in line
    ]
    assert not problems, result.stderr
