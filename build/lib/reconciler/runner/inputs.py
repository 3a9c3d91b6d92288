"""Where a task's module inputs come from: the services, catalog services and Consul KV
data that fill the `services`, `catalog_services` and `consul_kv` variables (cts-spec 4.2,
4.3).

A `Catalog` answers the queries a task's condition and module_input blocks describe. No
Consul client exists yet, so the default, `EmptyCatalog`, answers every query with
nothing: every task gets `services = {}` (and `{}` for the other variables it declares),
which is exactly what CTS renders for a query without passing instances. A Consul-backed
catalog (blocking queries, passing instances only) plugs in here without touching
rendering or running.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reconciler.config.model import (
    CatalogServicesCondition,
    ConsulKVCondition,
    ConsulKVInput,
    ServicesCondition,
    ServicesInput,
    TaskSpec,
)

ServicesQuery = ServicesCondition | ServicesInput
KVQuery = ConsulKVCondition | ConsulKVInput


@dataclass(frozen=True)
class ServiceInstance:
    """One passing service instance, with the fields of CTS's service definition
    protocol v0 except `cts_user_defined_meta`, which comes from the task."""

    id: str
    name: str
    node: str
    kind: str = ""
    address: str = ""
    port: int = 0
    meta: Mapping[str, str] = field(default_factory=dict)
    tags: Sequence[str] = ()
    namespace: str = ""
    status: str = "passing"
    node_id: str = ""
    node_address: str = ""
    node_datacenter: str = ""
    node_tagged_addresses: Mapping[str, str] = field(default_factory=dict)
    node_meta: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """`<id>.<node>.<namespace>.<datacenter>` with empty parts left out (CTS's key)."""
        parts = (self.id, self.node, self.namespace, self.node_datacenter)
        return ".".join(p for p in parts if p)


class Catalog(Protocol):
    async def services(self, query: ServicesQuery) -> Sequence[ServiceInstance]:
        """Passing instances of the services the query names or matches."""
        ...

    async def catalog_services(self, query: CatalogServicesCondition) -> Mapping[str, list[str]]:
        """Service name -> tags, for names matching the query's regexp."""
        ...

    async def consul_kv(self, query: KVQuery) -> Mapping[str, str]:
        """Key -> value: the key itself, or every key under it when recursive."""
        ...


class EmptyCatalog:
    """The catalog when no Consul is configured: no services, no keys."""

    async def services(self, query: ServicesQuery) -> Sequence[ServiceInstance]:
        return ()

    async def catalog_services(self, query: CatalogServicesCondition) -> Mapping[str, list[str]]:
        return {}

    async def consul_kv(self, query: KVQuery) -> Mapping[str, str]:
        return {}


@dataclass(frozen=True)
class ModuleInputs:
    """The data rendered into terraform.tfvars. `catalog_services` and `consul_kv` are
    None when the task does not feed that variable to its module."""

    services: Mapping[str, ServiceInstance] = field(default_factory=dict)
    user_meta: Mapping[str, str] = field(default_factory=dict)
    catalog_services: Mapping[str, list[str]] | None = None
    consul_kv: Mapping[str, str] | None = None


def services_query(spec: TaskSpec) -> ServicesQuery | None:
    """The query that feeds `services`, if any: a services condition used as module input,
    a services module_input, or the deprecated `services` list."""
    c = spec.condition
    if isinstance(c, ServicesCondition) and c.use_as_module_input is not False:
        return c
    for mi in spec.module_inputs:
        if isinstance(mi, ServicesInput):
            return mi
    if spec.services:
        return ServicesInput(names=spec.services)
    return None


def catalog_query(spec: TaskSpec) -> CatalogServicesCondition | None:
    c = spec.condition
    if isinstance(c, CatalogServicesCondition) and c.use_as_module_input is not False:
        return c
    return None


def kv_query(spec: TaskSpec) -> KVQuery | None:
    c = spec.condition
    if isinstance(c, ConsulKVCondition) and c.use_as_module_input is not False:
        return c
    for mi in spec.module_inputs:
        if isinstance(mi, ConsulKVInput):
            return mi
    return None


def declared_inputs(spec: TaskSpec) -> tuple[bool, bool]:
    """(feeds catalog_services, feeds consul_kv): which optional variables the root module
    declares and passes on."""
    return catalog_query(spec) is not None, kv_query(spec) is not None


async def gather_inputs(spec: TaskSpec, catalog: Catalog) -> ModuleInputs:
    services: dict[str, ServiceInstance] = {}
    meta: Mapping[str, str] = {}
    query = services_query(spec)
    if query is not None:
        for instance in await catalog.services(query):
            services[instance.key] = instance
        meta = query.cts_user_defined_meta or {}
    names = catalog_query(spec)
    kv = kv_query(spec)
    return ModuleInputs(
        services=dict(sorted(services.items())),
        user_meta=dict(meta),
        catalog_services=dict(await catalog.catalog_services(names)) if names else None,
        consul_kv=dict(await catalog.consul_kv(kv)) if kv else None,
    )
