from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from apikit import Core, running_core


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def task_dir(tmp_path: Path) -> Path:
    root = tmp_path / "tasks"
    root.mkdir()
    return root


@pytest.fixture
async def core(task_dir: Path) -> AsyncIterator[Core]:
    async with running_core(task_dir) as running:
        yield running
