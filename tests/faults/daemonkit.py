"""`reconciler start` as a child process, for the fault tests: start, wait until it
serves, kill -9, stop, and check what it left on disk.

Not a test module. The daemon's log goes to a file (a pipe nobody reads would fill up and
block the daemon during hundreds of writes) and is shown when a test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers import free_port, wait_for

from reconciler._core.fsutil import TEMP_PREFIX
from reconciler.taskfiles.load import load_task_file

__all__ = ["Daemon", "free_port", "running", "task_files", "temp_files"]

START = (sys.executable, "-m", "reconciler.cli.main", "start")
# A module that needs nothing: Terraform from the wheel accepts it offline.
MODULE_TF = 'variable "services" {\n  type = any\n}\n'


class Daemon:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, *, timeout: float = 60.0) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"\n===== start {self.starts} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [*START, f"-config-file={self.config}"],
                cwd=self.config.parent,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        wait_for(self.serving, timeout=timeout, what=f"the daemon to serve\n{self.log_tail()}")

    def serving(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            code = self.proc.returncode
            raise AssertionError(f"the daemon exited with {code}\n{self.log_tail()}")
        try:
            return self.call("GET", "/v1/health", timeout=5)[0] in (200, 503)
        except OSError:
            return False

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int:
        """SIGTERM and the exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "daemon log (tail):\n" + "\n".join(text.splitlines()[-lines:])

    # --- HTTP ----------------------------------------------------------------------------

    def call(
        self, method: str, path: str, body: Any = None, *, timeout: float = 30.0
    ) -> tuple[int, Any]:
        """(status, decoded JSON body). Raises OSError when no answer arrives."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method
        )
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    def tasks(self) -> dict[str, bool]:
        """name -> enabled, as the API shows them."""
        status, body = self.call("GET", "/v1/tasks")
        assert status == 200, body
        return {t["name"]: bool(t["enabled"]) for t in body["tasks"]}

    def health(self) -> tuple[int, str]:
        status, body = self.call("GET", "/v1/health")
        return status, "" if status == 200 else body["error"]["message"]


@contextmanager
def running(config: Path, port: int, log: Path) -> Iterator[Daemon]:
    """A started daemon, killed on the way out whatever happens."""
    daemon = Daemon(config, port, log)
    try:
        daemon.start()
        yield daemon
    except BaseException:
        print(daemon.log_tail(80), file=sys.stderr)
        raise
    finally:
        daemon.close()


def task_files(root: Path) -> dict[str, bool]:
    """name -> enabled for every task the files under `root` define; fails on a torn file
    (one that does not load) and on a name defined twice."""
    found: dict[str, bool] = {}
    for path in sorted(root.rglob("*.hcl")):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")):
            continue
        loaded = load_task_file(path.read_bytes(), rel)
        assert not loaded.problems, f"{rel} is torn or broken: {loaded.problems}"
        for task in loaded.tasks:
            assert task.spec.name not in found, f"task {task.spec.name} defined twice"
            found[task.spec.name] = task.spec.is_enabled
    return found


def temp_files(root: Path) -> list[str]:
    """Our atomic-write temp files left anywhere under `root`."""
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root)
        for f in files
        if f.startswith(TEMP_PREFIX)
    )
