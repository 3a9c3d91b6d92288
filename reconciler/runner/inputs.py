"""Where a task's module inputs come from: the services, catalog services and Consul KV
data that fill the `services`, `catalog_services` and `consul_kv` variables (cts-spec 4.2,
4.3).

A `Catalog` answers the queries a task's condition and module_input blocks describe:
Consul (reconciler.consul.catalog, from the watchers' latest answers), the
embedded catalog through the same code, or `EmptyCatalog` where no Consul is wired in (a
core without one, in tests), which answers every query with nothing.

The deprecated `services = [...]` list is read as CTS reads it: each entry names a
deprecated `service` block by its id (its name, datacenter, namespace, filter and
cts_user_defined_meta shape the query), or else is a service name.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from reconciler._core.errors import ReconcilerError
from reconciler.settings.model import ServiceSettings
from reconciler.taskfiles.conditions import Condition, Kind, ModuleInput, kind_of
from reconciler.taskfiles.conditions.base import (
    CatalogServicesSelection,
    KVSelection,
    ServicesSelection,
)
from reconciler.taskfiles.model import ServicesInput, TaskSpec

# What the `services` and `consul_kv` variables are read from: a condition or module_input
# whose kind reads them (or, for services, an entry of the deprecated list).
ServicesQuery = ServicesSelection
KVQuery = KVSelection


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


class InputsError(ReconcilerError):
    """The module inputs cannot be read now (Consul does not answer, or refuses): a run
    fails with this message instead of rendering empty maps as if nothing existed."""

    reason = "InputsUnavailable"


class Catalog(Protocol):
    """Where module inputs come from. Each method raises InputsError when it cannot
    answer."""

    async def services(self, query: ServicesQuery) -> Sequence[ServiceInstance]:
        """Passing instances of the services the query names or matches."""
        ...

    async def catalog_services(self, query: CatalogServicesSelection) -> Mapping[str, list[str]]:
        """Service name -> tags, for names matching the query's regexp."""
        ...

    async def consul_kv(self, query: KVQuery) -> Mapping[str, str]:
        """Key -> value: the key itself, or every key under it when recursive."""
        ...


class EmptyCatalog:
    """The catalog when no Consul is configured: no services, no keys."""

    async def services(self, query: ServicesQuery) -> Sequence[ServiceInstance]:
        return ()

    async def catalog_services(self, query: CatalogServicesSelection) -> Mapping[str, list[str]]:
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
    # Per instance key, where it differs from `user_meta` (the deprecated service blocks
    # give each service its own cts_user_defined_meta).
    instance_meta: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def meta_of(self, key: str) -> Mapping[str, str]:
        return self.instance_meta.get(key, self.user_meta)


def legacy_services(
    spec: TaskSpec, blocks: Sequence[ServiceSettings] = ()
) -> tuple[ServicesInput, ...]:
    """The deprecated `services` list, one query per entry, as CTS resolves it
    (controller/driver_factory.go getService): the `service` block whose id is the entry,
    else the service of that name in the default datacenter and namespace."""
    by_id = {b.id: b for b in blocks}
    out: list[ServicesInput] = []
    for entry in spec.services or ():
        block = by_id.get(entry)
        if block is None:
            out.append(ServicesInput(names=(entry,)))
            continue
        out.append(
            ServicesInput(
                names=(block.name,),
                datacenter=block.datacenter or None,
                namespace=block.namespace or None,
                filter=block.filter or None,
                cts_user_defined_meta=dict(block.cts_user_defined_meta) or None,
            )
        )
    return tuple(out)


def _feeding(spec: TaskSpec) -> Iterator[tuple[Kind, Condition | ModuleInput]]:
    """The condition (unless `use_as_module_input = false`) and the module inputs: what
    fills the module's variables, each through its kind."""
    c = spec.condition
    if c is not None and kind_of(c).feeds(c):
        yield kind_of(c), c
    for mi in spec.module_inputs:
        yield kind_of(mi), mi


def services_queries(
    spec: TaskSpec, blocks: Sequence[ServiceSettings] = ()
) -> tuple[ServicesQuery, ...]:
    """The queries that feed `services`: a services condition used as module input, a
    services module_input, or the deprecated `services` list (one per entry)."""
    for kind, item in _feeding(spec):
        query = kind.services(item)
        if query is not None:
            return (query,)
    return legacy_services(spec, blocks)


def catalog_query(spec: TaskSpec) -> CatalogServicesSelection | None:
    """The query that feeds `catalog_services`, if any."""
    for kind, item in _feeding(spec):
        query = kind.catalog_services(item)
        if query is not None:
            return query
    return None


def kv_query(spec: TaskSpec) -> KVQuery | None:
    """The query that feeds `consul_kv`, if any."""
    for kind, item in _feeding(spec):
        query = kind.consul_kv(item)
        if query is not None:
            return query
    return None


def declared_inputs(spec: TaskSpec) -> tuple[bool, bool]:
    """(feeds catalog_services, feeds consul_kv): which optional variables the root module
    declares and passes on."""
    return catalog_query(spec) is not None, kv_query(spec) is not None


async def gather_inputs(
    spec: TaskSpec, catalog: Catalog, blocks: Sequence[ServiceSettings] = ()
) -> ModuleInputs:
    """The task's module inputs now. `blocks`: the deprecated service blocks."""
    services: dict[str, ServiceInstance] = {}
    queries = services_queries(spec, blocks)
    meta: Mapping[str, str] = (queries[0].cts_user_defined_meta or {}) if queries else {}
    instance_meta: dict[str, Mapping[str, str]] = {}
    for query in queries:
        for instance in await catalog.services(query):
            services[instance.key] = instance
            own = query.cts_user_defined_meta or {}
            if own != meta:
                instance_meta[instance.key] = dict(own)
    names = catalog_query(spec)
    kv = kv_query(spec)
    return ModuleInputs(
        services=dict(sorted(services.items())),
        user_meta=dict(meta),
        catalog_services=dict(await catalog.catalog_services(names)) if names else None,
        consul_kv=dict(await catalog.consul_kv(kv)) if kv else None,
        instance_meta=instance_meta,
    )
