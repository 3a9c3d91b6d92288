"""Consul as the Catalog module inputs are rendered from: a task's inputs gathered from
the in-test server and rendered into terraform.tfvars as CTS renders them."""

from __future__ import annotations

import re

import pytest
from consulfake import FakeConsul
from helpers import async_wait_for

from reconciler.consul import ConsulWatchers, HealthServiceQuery
from reconciler.consul.catalog import ConsulCatalog
from reconciler.runner.inputs import InputsError, gather_inputs
from reconciler.runner.rootmodule import RootModule, render_terraform_tfvars
from reconciler.taskfiles.model import (
    CatalogServicesCondition,
    ConsulKVCondition,
    ConsulKVInput,
    ServicesCondition,
    TaskSpec,
)

pytestmark = pytest.mark.anyio


async def seed(consul: FakeConsul) -> None:
    await consul.register("api", address="1.2.3.4", port=8080, tags=["tag1"])
    await consul.register("web", address="5.6.7.8", port=8000, tags=["tag2"])
    await consul.register("db", address="10.10.10.10", port=8000, tags=["tag3", "tag4"])
    await consul.register("unhealthy-service", port=1, status="critical")


async def test_services_by_name_rendered(consul: FakeConsul, watchers: ConsulWatchers) -> None:
    await seed(consul)
    spec = TaskSpec(
        name="t",
        module="./m",
        condition=ServicesCondition(
            names=("web", "api", "unhealthy-service"), cts_user_defined_meta={"k": "v"}
        ),
    )
    inputs = await gather_inputs(spec, ConsulCatalog(watchers))
    assert list(inputs.services) == ["api.node-1.dc1", "web.node-1.dc1"]  # critical left out
    tfvars = render_terraform_tfvars(RootModule(task="t", description="", source="./m"), inputs)
    assert '"api.node-1.dc1" = {' in tfvars
    assert re.search(r'\n\s+address\s+= "1\.2\.3\.4"\n', tfvars)
    assert re.search(r'\n\s+node_datacenter\s+= "dc1"\n', tfvars)
    assert re.search(r'cts_user_defined_meta = \{\n\s+k = "v"', tfvars)


async def test_services_by_regexp(consul: FakeConsul, watchers: ConsulWatchers) -> None:
    await seed(consul)
    spec = TaskSpec(name="t", module="./m", condition=ServicesCondition(regexp="^(web|db)$"))
    inputs = await gather_inputs(spec, ConsulCatalog(watchers))
    assert list(inputs.services) == ["db.node-1.dc1", "web.node-1.dc1"]


async def test_catalog_services_and_kv(consul: FakeConsul, watchers: ConsulWatchers) -> None:
    await seed(consul)
    await consul.kv_put("cfg/color", 'red "and" ${blue}')
    await consul.kv_put("cfg/size", "xl")
    catalog = ConsulCatalog(watchers)
    spec = TaskSpec(
        name="t",
        module="./m",
        condition=CatalogServicesCondition(regexp="^(api|db)"),
        module_inputs=(ConsulKVInput(path="cfg", recurse=True),),
    )
    inputs = await gather_inputs(spec, catalog)
    assert inputs.catalog_services == {"api": ["tag1"], "db": ["tag3", "tag4"]}
    assert inputs.consul_kv == {"cfg/color": 'red "and" ${blue}', "cfg/size": "xl"}
    one = TaskSpec(name="k", module="./m", condition=ConsulKVCondition(path="cfg/size"))
    assert (await gather_inputs(one, catalog)).consul_kv == {"cfg/size": "xl"}
    missing = TaskSpec(name="k", module="./m", condition=ConsulKVCondition(path="nope"))
    assert (await gather_inputs(missing, catalog)).consul_kv == {}


async def test_a_watched_query_is_read_from_its_snapshot(
    consul: FakeConsul, watchers: ConsulWatchers
) -> None:
    await seed(consul)
    seen: list[object] = []
    watchers.subscribe(HealthServiceQuery("api"), seen.append)
    await async_wait_for(lambda: len(seen) == 1, what="the first data")
    before = len(consul.requests)
    spec = TaskSpec(name="t", module="./m", condition=ServicesCondition(names=("api",)))
    inputs = await gather_inputs(spec, ConsulCatalog(watchers))
    assert list(inputs.services) == ["api.node-1.dc1"]
    assert len(consul.requests) == before  # rendered without asking Consul again


async def test_consul_errors_fail_the_read(consul: FakeConsul, watchers: ConsulWatchers) -> None:
    spec = TaskSpec(
        name="t", module="./m", condition=ServicesCondition(names=("api",), datacenter="mars")
    )
    with pytest.raises(InputsError, match="No path to datacenter"):
        await gather_inputs(spec, ConsulCatalog(watchers))
