"""The in-test Consul and the client, pacing and watchers over it, shared by the Consul
client tests (tests/consul) and the Consul trigger source tests (tests/triggers)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from consulfake import FakeConsul

from reconciler.consul import ConsulClient, ConsulWatchers, Pacing, retry_policy
from reconciler.consul.connection import client_config
from reconciler.settings.model import ConsulSettings


class RecordingSleep:
    """Stands in for asyncio.sleep in the watcher's pacing: records every requested
    duration and yields only briefly, so backoff is asserted, not waited for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        await asyncio.sleep(min(seconds, 0.01))


@pytest.fixture
async def consul() -> AsyncIterator[FakeConsul]:
    async with FakeConsul() as fake:
        yield fake


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def pacing(sleeps: RecordingSleep) -> Pacing:
    return Pacing(sleep=sleeps, retry=retry_policy(rnd=random.Random(7)), rnd=random.Random(7))


def make_client(fake: FakeConsul, *, wait: float = 5.0, **settings: object) -> ConsulClient:
    return ConsulClient(client_config(ConsulSettings(address=fake.address, **settings), wait=wait))  # type: ignore[arg-type]


@pytest.fixture
async def client(consul: FakeConsul) -> AsyncIterator[ConsulClient]:
    c = make_client(consul)
    yield c
    await c.aclose()


@pytest.fixture
async def watchers(client: ConsulClient, pacing: Pacing) -> AsyncIterator[ConsulWatchers]:
    w = ConsulWatchers(client, pacing=pacing)
    yield w
    await w.aclose()
