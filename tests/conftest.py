import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make tests/helpers.py importable as `helpers` from every test directory.
sys.path.insert(0, str(Path(__file__).parent))

import helpers


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _test_deadline(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tell the wait helpers when pytest-timeout will stop this test."""
    marker = request.node.get_closest_marker("timeout")
    if marker is not None and marker.args:
        limit = float(marker.args[0])
    else:
        limit = float(request.config.getini("timeout") or 0)
    helpers.TEST_DEADLINE = time.monotonic() + limit if limit > 0 else None
    yield
    helpers.TEST_DEADLINE = None
