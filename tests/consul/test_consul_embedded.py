"""The embedded catalog: files served through Consul's HTTP API in-process, followed by
the same shared watchers as a Consul agent."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers import async_wait_for

from reconciler.consul import ConsulError, ConsulWatchers, HealthServiceQuery, KVQuery
from reconciler.consul.embedded import DirectoryCatalog
from reconciler.consul.watchers import Update
from reconciler.runner.inputs import ServiceInstance

pytestmark = pytest.mark.anyio


def service(path: Path, name: str, id: str, *, status: str = "passing", port: int = 80) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        f'service {{\n  name = "{name}"\n  id = "{id}"\n  address = "10.0.0.1"\n'
        f'  port = {port}\n  status = "{status}"\n  meta = {{ owner = "a \\"b\\"" }}\n}}\n'
    )
    os.replace(tmp, path)


@pytest.fixture
async def catalog(tmp_path: Path) -> AsyncIterator[DirectoryCatalog]:
    c = DirectoryCatalog(tmp_path / "catalog", debounce=0.02)
    await c.start()
    yield c
    await c.aclose()


async def test_service_files_are_followed_by_a_watcher(catalog: DirectoryCatalog) -> None:
    seen: list[tuple[ServiceInstance, ...]] = []

    def changed(update: Update) -> None:
        assert isinstance(update.data, tuple)
        seen.append(update.data)

    watchers = ConsulWatchers(catalog)
    watchers.subscribe(HealthServiceQuery(name="web"), changed)
    await async_wait_for(lambda: seen == [()])
    file = catalog.root / "web.hcl"
    service(file, "web", "web-1")
    await async_wait_for(lambda: len(seen) == 2)
    [instance] = seen[-1]
    assert (instance.id, instance.node_datacenter, instance.port) == ("web-1", "dc1", 80)
    assert instance.meta == {"owner": 'a "b"'} and instance.status == "passing"
    service(file, "web", "web-1", status="critical")  # passing only: it leaves
    await async_wait_for(lambda: len(seen) == 3)
    assert seen[-1] == ()
    service(file, "web", "web-1", port=81)
    await async_wait_for(lambda: len(seen) == 4 and seen[-1][0].port == 81)
    file.unlink()
    await async_wait_for(lambda: len(seen) == 5 and seen[-1] == ())
    await watchers.aclose()


async def test_kv_files_are_keys(catalog: DirectoryCatalog) -> None:
    seen: list[object] = []
    watchers = ConsulWatchers(catalog)
    watchers.subscribe(KVQuery(path="app", recurse=True), lambda u: seen.append(u.data))
    await async_wait_for(lambda: seen == [()])
    (catalog.root / "kv" / "app").mkdir(parents=True)
    (catalog.root / "kv" / "app" / "flag").write_bytes(b'on\n${x} "q"')
    await async_wait_for(lambda: len(seen) == 2)
    assert seen[-1] == (("app/flag", 'on\n${x} "q"'),)
    (catalog.root / "kv" / "app" / "flag").unlink()
    await async_wait_for(lambda: len(seen) == 3 and seen[-1] == ())
    await watchers.aclose()


async def test_a_broken_file_keeps_its_last_good_content(catalog: DirectoryCatalog) -> None:
    file = catalog.root / "web.hcl"
    service(file, "web", "web-1")
    await catalog.refresh()
    file.write_text('service {\n  name = "web"\n  port = "eighty\n}\n')
    await catalog.refresh()
    [problem] = catalog.problems()
    assert f"{file}:" in problem
    answer = await catalog.get("/v1/health/service/web")
    assert [e["Service"]["ID"] for e in answer.body] == ["web-1"]
    file.write_text("service {\n  port = 1\n}\n")
    await catalog.refresh()
    assert 'a service needs a "name"' in catalog.problems()[0]
    service(file, "web", "web-2")
    await catalog.refresh()
    assert catalog.problems() == []


async def test_another_datacenter_or_a_filter_is_refused(catalog: DirectoryCatalog) -> None:
    with pytest.raises(ConsulError, match="No path to datacenter"):
        await HealthServiceQuery(name="web", datacenter="dc9").fetch(catalog, 0)
    with pytest.raises(ConsulError, match="filter expressions are not supported"):
        await HealthServiceQuery(name="web", filter='Service.Tags contains "a"').fetch(catalog, 0)


async def test_a_blocking_query_waits_for_a_change(catalog: DirectoryCatalog) -> None:
    first = await catalog.get("/v1/catalog/services")
    assert first.body == {} and first.index is not None
    timed_out = await catalog.get("/v1/catalog/services", index=first.index, wait=0.05)
    assert timed_out.index == first.index
    service(catalog.root / "db.json.hcl", "db", "db-1")
    (catalog.root / "api.json").write_text(
        '{"service": {"name": "api", "id": "api-1", "tags": ["x"]}}'
    )
    answer = await catalog.get("/v1/catalog/services", index=first.index, wait=5)
    assert answer.index is not None and answer.index > first.index
    await async_wait_for(lambda: catalog.state.services != () and len(catalog.state.services) == 2)
    final = await catalog.get("/v1/catalog/services")
    assert final.body == {"api": ["x"], "db": []}
