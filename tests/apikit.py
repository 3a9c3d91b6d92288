"""The real core (directory source, reconciler, source loop, write-back, task commands),
built by the daemon's builder in the running event loop so that its locks and the
requests share one loop, behind the API."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from helpers import async_wait_for, fresh_load
from starlette.applications import Starlette

from reconciler.api.app import ApiContext, create_app
from reconciler.commands import TaskCommands
from reconciler.daemon.consul import ConsulTrigger
from reconciler.daemon.core import Core as DaemonCore
from reconciler.daemon.core import RunPlan, SourcePlan
from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.reconcile.writeback import WriteBack
from reconciler.registry.status import StatusStore
from reconciler.registry.store import Registry
from reconciler.runner.driver import Driver
from reconciler.runner.inputs import Catalog
from reconciler.runner.workspace import Workspaces
from reconciler.runs.scheduler import Scheduler
from reconciler.sources.directory import DirectorySource
from reconciler.taskfiles.model import GlobalDefaults, TaskSpec

SECOND = 1_000_000_000
JSON_HEADERS = {"Content-Type": "application/json"}


@dataclass
class Core:
    root: Path
    registry: Registry
    reconciler: Reconciler
    loop: SourceLoop
    writeback: WriteBack
    app: Starlette
    client: httpx2.AsyncClient
    runs: Scheduler | None = None
    commands: TaskCommands | None = None

    @property
    def scheduler(self) -> Scheduler:
        assert self.runs is not None, "this core runs no Terraform"
        return self.runs

    def specs(self) -> dict[str, TaskSpec]:
        return {t.spec.name: t.spec for t in self.registry}

    def assert_files_agree(self) -> None:
        """A fresh load of the directory gives exactly the live registry."""
        assert fresh_load(self.root) == self.specs()

    async def post_task(self, task: dict[str, Any], **params: str) -> httpx2.Response:
        return await self.client.post("/v1/tasks", json={"task": task}, params=params)


@contextlib.asynccontextmanager
async def running_core(
    root: Path,
    *,
    defaults: GlobalDefaults | None = None,
    watch: bool = True,
    driver: Driver | None = None,
    work: Path | None = None,
    catalog: Catalog | None = None,
    workers: int = 4,
    consul: ConsulTrigger | None = None,
) -> AsyncIterator[Core]:
    """The core behind the API; with a `driver`, tasks run (workspaces under `work`)."""
    root.mkdir(parents=True, exist_ok=True)
    runs = None
    if driver is not None:
        work = work or root.parent / "work"
        runs = RunPlan(
            Workspaces(work),
            driver,
            StatusStore(work / ".reconciler" / "events.json"),
            workers=workers,
            catalog=catalog,
            retry_delay=lambda attempt: 0.01,
            consul=consul,
        )
    source = DirectorySource(root, display_base=root.parent)
    core = DaemonCore([SourcePlan(source)], runs=runs)
    loop = core.loops[source.name]
    await core.load()  # events kept under `work` from an earlier core, then the files
    runner = asyncio.create_task(loop.run()) if watch else None
    shown = defaults or GlobalDefaults()
    context = ApiContext(core.commands, lambda: shown)
    app = create_app(context)
    client = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://reconciler.test"
    )
    try:
        if runner is not None:
            await async_wait_for(lambda: source.watching, what="the directory watcher")
        yield Core(
            root,
            core.registry,
            core.reconciler,
            loop,
            core.writeback,
            app,
            client,
            core.scheduler,
            core.commands,
        )
    finally:
        await client.aclose()
        if runner is not None:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
        await core.close()


def is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def assert_matches(actual: Any, expected: Any, path: str = "$") -> None:
    """Field-by-field equality; `request_id` values only need to be fresh UUIDs."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert sorted(actual) == sorted(expected), (
            f"{path}: fields differ: got {sorted(actual)}, expected {sorted(expected)}"
        )
        for key, value in expected.items():
            if key == "request_id":
                assert is_uuid(actual[key]), f"{path}.request_id: not a UUID: {actual[key]!r}"
            else:
                assert_matches(actual[key], value, f"{path}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{path}: expected an array, got {actual!r}"
        assert len(actual) == len(expected), (
            f"{path}: {len(actual)} items, expected {len(expected)}"
        )
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_matches(a, e, f"{path}[{i}]")
    else:
        assert type(actual) is type(expected) and actual == expected, (
            f"{path}: got {actual!r}, expected {expected!r}"
        )


def assert_error(response: httpx2.Response, status: int, *fragments: str) -> str:
    """The response is `status` in the error shape, its message holding each fragment."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert sorted(body) == ["error", "request_id"], body
    assert is_uuid(body["request_id"]), body
    assert sorted(body["error"]) == ["message"], body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message
