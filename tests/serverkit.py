"""Servers for the HTTP-level tests: the daemon in its own process, or the API server
configuration (TLS, limits) embedded in the test's event loop around a small app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import resource
import socket
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, TypeVar

import trustme
import uvicorn
from helpers import async_wait_for, free_port, wait_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from reconciler.api.inputs import read_body
from reconciler.daemon.httpguard import HttpLimits
from reconciler.daemon.server import server_config
from reconciler.settings import TLSSettings

T = TypeVar("T")


def rss_kib(pid: int) -> int:
    """Resident set size of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


def raise_nofile() -> int:
    """Raise this process's soft open-file limit to the hard one; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not ended after `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@contextlib.contextmanager
def reconciler_start(
    root: Path, port: int, *, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """`reconciler start -config-file=config.hcl` in `root` (which the test wrote, with
    `port`), standard error appended to `root/daemon.log`; listening when it yields,
    stopped at the end."""
    with open(root / "daemon.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "start", "-config-file=config.hcl"],
            cwd=root,
            env=dict(env) if env is not None else None,
            stderr=log,
        )
        try:
            wait_listening(port, proc)
            yield proc
        finally:
            stop_process(proc)


def post_task(port: int, task: Mapping[str, Any], query: str = "") -> tuple[int, Any]:
    """POST /v1/tasks{query} with `task`: (status, JSON answer), errors included."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/tasks{query}",
        json.dumps({"task": task}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@contextlib.contextmanager
def daemon_process(
    tmp_path: Path, extra_config: str = "", *, port: int | None = None
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`reconciler start` on a free port with an empty task directory; stopped at the end.
    Standard error goes to `tmp_path/daemon.log` (a pipe nobody reads could fill up).

    Unless `extra_config` configures Consul or a catalog, the daemon reads an empty
    embedded catalog (`catalog/`): tasks with Consul conditions then run with no services,
    instead of waiting for a Consul agent at CTS's default address."""
    port = port or free_port()
    (tmp_path / "tasks").mkdir(exist_ok=True)
    config = tmp_path / "config.hcl"
    catalog = ""
    if not re.search(r"^(consul|catalog)\b", extra_config, re.MULTILINE):
        (tmp_path / "catalog").mkdir(exist_ok=True)
        catalog = 'catalog "directory" {\n  path = "catalog"\n}\n'
    config.write_text(
        f'port = {port}\nworking_dir = "state"\n'
        f'source "directory" {{\n  path = "tasks"\n  allow_empty = true\n}}\n'
        + catalog
        + extra_config
    )
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli.main", "start", f"-config-file={config}"],
            cwd=tmp_path,
            stderr=log,
        )
        try:
            yield proc, port
        finally:
            stop_process(proc)


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Until the port accepts connections (the daemon listens once every task is loaded)."""

    def listening() -> bool:
        assert proc.poll() is None, f"the daemon exited with {proc.returncode}"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            return False

    wait_for(listening, timeout, what=f"a listener on port {port}")


# --- certificates -----------------------------------------------------------------------


class Certs:
    """A CA, a server certificate for localhost, a client signed by the CA and one signed by
    another CA; written as PEM files under `directory`."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        self.rogue_ca = trustme.CA()
        server = self.ca.issue_cert("localhost", "127.0.0.1")
        self.client = self.ca.issue_cert("client@example.com")
        self.rogue_client = self.rogue_ca.issue_cert("client@example.com")
        self.cert, self.key = directory / "server.pem", directory / "server.key"
        self.ca_cert = directory / "ca.pem"
        server.cert_chain_pems[0].write_to_path(str(self.cert))
        server.private_key_pem.write_to_path(str(self.key))
        self.ca.cert_pem.write_to_path(str(self.ca_cert))

    def client_context(self, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        if cert is not None:
            cert.configure_cert(ctx)
        return ctx


def tls_block(certs: Certs, extra: str = "") -> str:
    return f'tls {{\n  cert = "{certs.cert}"\n  key = "{certs.key}"\n{extra}}}\n'


# --- the server configuration, embedded -----------------------------------------------------


async def _health(request: Request) -> JSONResponse:
    return JSONResponse({})


async def _echo(request: Request) -> JSONResponse:
    body = await read_body(request)
    return JSONResponse({"size": len(body)})


def small_app(extra: list[Route] | None = None) -> Starlette:
    """/v1/health, and POST /echo that reads its body as the API does (with its limit)."""
    from reconciler.api.errors import ApiError

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse({"error": {"message": exc.message}}, status_code=exc.status)

    routes = [Route("/v1/health", _health), Route("/echo", _echo, methods=["POST"])]
    return Starlette(routes=routes + (extra or []), exception_handlers={ApiError: api_error})


def started(server: uvicorn.Server, serving: asyncio.Task[None]) -> bool:
    """Whether an embedded uvicorn server listens; it must not have stopped first."""
    assert not serving.done(), "the server stopped before it started"
    return bool(server.started)


class _Embedded(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def embedded_server(
    app: Callable[..., Any],
    *,
    limits: HttpLimits | None = None,
    tls: TLSSettings | None = None,
) -> AsyncIterator[int]:
    """The daemon's server configuration around `app` on a free loopback port; its port."""
    config = server_config(app, host="127.0.0.1", port=0, tls=tls or TLSSettings(), limits=limits)
    server = _Embedded(config)
    serving = asyncio.create_task(server.serve())
    try:
        await async_wait_for(lambda: started(server, serving), 30, what="the server to start")
        yield int(server.servers[0].sockets[0].getsockname()[1])
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(serving, 30)


@contextlib.contextmanager
def server_thread(
    serve: Callable[[], AbstractAsyncContextManager[T]], timeout: float = 60
) -> Iterator[T]:
    """`serve()` (say, a core and `embedded_server` around it) entered in an event loop on
    a thread of its own, for clients that block (requests, schemathesis); what it yields.
    An error of the serving side, at start or at the end, is raised here."""
    started = threading.Event()
    state: dict[str, Any] = {}

    async def main() -> None:
        stop = asyncio.Event()
        state["stop"] = (asyncio.get_running_loop(), stop)
        try:
            async with serve() as value:
                state["value"] = value
                started.set()
                await stop.wait()
        except BaseException as exc:
            state["error"] = exc
        finally:
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name="server", daemon=True)
    thread.start()
    try:
        assert started.wait(timeout), f"the server did not start within {timeout}s"
        if "error" in state:
            raise state["error"]
        yield state["value"]
    finally:
        loop, stop = state.get("stop", (None, None))
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(timeout)
        assert not thread.is_alive(), f"the server did not stop within {timeout}s"
    if "error" in state:
        raise state["error"]


def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def up(port: int) -> bool:
    try:
        return call(port, "GET", "/v1/health")[0] in (200, 503)
    except OSError:
        return False


@contextlib.contextmanager
def daemon(config: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli.main", "start", f"-config-file={config}"],
        cwd=config.parent,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()
