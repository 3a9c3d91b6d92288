"""Child process for the API benchmark: the real /v1 app over a task directory, and a bare
Starlette app returning the same bytes, each served by uvicorn on its own port.

`python -m bench.api_server TASKS_DIR API_PORT BARE_PORT NAME` prints READY when serving.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
from pathlib import Path

import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.api.app import ApiContext, create_app
from reconciler.daemon.core import Core
from reconciler.sources.base import SourcePlan
from reconciler.sources.directory import DirectorySource
from reconciler.taskfiles.load import gc_paused


def bare_app(one: bytes, every: bytes) -> Starlette:
    async def task(request: Request) -> Response:
        return Response(one, media_type="application/json")

    async def tasks(request: Request) -> Response:
        return Response(every, media_type="application/json")

    return Starlette(routes=[Route("/v1/tasks/{name}", task), Route("/v1/tasks", tasks)])


def server(app: Starlette, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, lifespan="off"
    )
    return uvicorn.Server(config)


async def main(root: Path, api_port: int, bare_port: int, name: str) -> None:
    core = Core([SourcePlan(DirectorySource(root))])
    registry = core.registry
    [loop] = core.loops.values()
    # As the daemon does after its first load (reconciler/daemon/runtime.py): the loaded
    # tasks are kept out of later garbage collections, which would stall the loop.
    with gc_paused():
        await loop.initial_load()
    gc.freeze()
    runner = asyncio.create_task(loop.run())
    app = create_app(ApiContext(core.commands))
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://x") as client:
        one = (await client.get(f"/v1/tasks/{name}")).content
        every = (await client.get("/v1/tasks")).content
    servers = [server(app, api_port), server(bare_app(one, every), bare_port)]
    serving = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        await asyncio.sleep(0.01)
    print(f"READY {len(registry)} {len(one)} {len(every)}", flush=True)
    await asyncio.wait(serving)
    runner.cancel()


if __name__ == "__main__":
    os.sched_setaffinity(0, {0})  # the load generator gets the other core
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
