"""A POST whose condition names a datacenter or namespace Consul rejects answers 400 with
Consul's message and creates nothing (checked against the in-test Consul server)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from apikit import Core, assert_error, running_core
from consulfake import FakeConsul
from runfakes import FakeDriver

from reconciler.daemon.consul import ConsulTrigger
from reconciler.settings.model import ConsulSettings

pytestmark = pytest.mark.anyio


def task(**condition: str) -> dict[str, object]:
    return {
        "name": "web",
        "module": "./mod",
        "condition": {"services": {"names": ["web"], **condition}},
    }


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[Core]:
    async with FakeConsul() as fake:
        consul = ConsulTrigger.from_settings(ConsulSettings(address=fake.address))
        async with running_core(tmp_path / "tasks", driver=FakeDriver(), consul=consul) as c:
            yield c


async def test_an_unknown_datacenter_is_refused_with_consuls_message(core: Core) -> None:
    response = await core.post_task(task(datacenter="dc9"))
    assert_error(response, 400, 'Consul rejects datacenter "dc9"', "No path to datacenter")
    assert list(core.root.iterdir()) == [] and len(core.registry) == 0


async def test_a_namespace_without_enterprise_is_refused(core: Core) -> None:
    response = await core.post_task(task(namespace="team-a"))
    assert_error(response, 400, 'namespace "team-a"', "Consul Enterprise feature")
    assert len(core.registry) == 0


async def test_the_known_datacenter_is_created(core: Core) -> None:
    response = await core.post_task(task(datacenter="dc1"))
    assert response.status_code == 201, response.text
    assert "web" in core.registry
