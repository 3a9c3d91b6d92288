"""The API over real HTTP: uvicorn embedded in the test's event loop, as the daemon runs it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import uvicorn
from apikit import assert_error, running_core
from helpers import async_wait_for
from serverkit import started

pytestmark = pytest.mark.anyio


class EmbeddedServer(uvicorn.Server):
    """As the daemon runs it: no signal handlers of its own (the daemon owns them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def test_real_server_round_trip(task_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with running_core(task_dir) as core:
        config = uvicorn.Config(
            core.app, host="127.0.0.1", port=0, lifespan="off", log_config=None, access_log=False
        )
        server = EmbeddedServer(config)
        serving = asyncio.create_task(server.serve())
        try:
            await async_wait_for(lambda: started(server, serving), 10, what="the server to start")
            port = server.servers[0].sockets[0].getsockname()[1]
            async with httpx2.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                task = {
                    "name": "web",
                    "module": "./mod",
                    "condition": {"services": {"names": ["web"]}},
                }
                created = await http.post("/v1/tasks", json={"task": task})
                assert created.status_code == 201, created.text
                assert created.headers["content-type"] == "application/json"
                assert (task_dir / "web.hcl").exists()

                got = await http.get("/v1/tasks/web")
                assert got.status_code == 200 and got.json()["task"] == created.json()["task"]
                listing = await http.get("/v1/tasks")
                assert [t["name"] for t in listing.json()["tasks"]] == ["web"]

                patched = await http.patch("/v1/tasks/web", json={"enabled": False})
                assert patched.status_code == 200 and patched.json() == {}
                assert (await http.get("/v1/tasks/web")).json()["task"]["enabled"] is False

                assert (await http.delete("/v1/tasks/web")).status_code == 202
                assert not (task_dir / "web.hcl").exists()

                assert_error(await http.get("/v1/tasks/web"), 404, "web")
                assert_error(await http.get("/v1/unknown"), 404)
                wrong = await http.put("/v1/tasks/web")
                assert_error(wrong, 405)
                assert wrong.headers["allow"] == "DELETE, GET, HEAD, PATCH"
                head = await http.head("/v1/tasks")
                assert head.status_code == 200 and head.content == b""
                assert (await http.get("/v1/health")).json() == {}
        finally:
            server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(serving, 10)
