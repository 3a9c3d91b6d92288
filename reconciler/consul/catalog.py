"""Consul as the `Catalog` that module inputs are rendered from (runner/inputs.py).

A query that a watcher already follows is answered from its latest data, so rendering
costs no request and sees exactly what triggered the run. Anything else (a module_input
nobody watches, a run before the first answer) is one non-blocking request. Consul's
errors propagate: a run whose inputs cannot be read fails with Consul's message instead
of rendering an empty map as if nothing were registered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from reconciler.consul import convert
from reconciler.consul.client import ConsulError
from reconciler.consul.queries import (
    CatalogServicesQuery,
    HealthServiceQuery,
    Query,
    catalog_services_query,
    health_queries,
    kv_query,
)
from reconciler.consul.watchers import ConsulWatchers
from reconciler.runner.inputs import InputsError, ServiceInstance, ServicesQuery
from reconciler.runner.inputs import KVQuery as KVInputQuery
from reconciler.taskfiles.conditions.base import CatalogServicesSelection
from reconciler.taskfiles.goregexp import compile_regexp


class ConsulCatalog:
    def __init__(self, watchers: ConsulWatchers) -> None:
        self._watchers = watchers

    async def read(self, query: Query) -> object:
        """The latest data of `query`: a watcher's snapshot, else a fresh answer (raises
        InputsError with Consul's message when there is none)."""
        data = self._watchers.snapshot(query)
        if data is None:
            try:
                data = (await query.fetch(self._watchers.client, 0)).data
            except ConsulError as exc:
                raise InputsError(f"the module inputs cannot be read from Consul: {exc}") from None
        return data

    async def services(self, query: ServicesQuery) -> Sequence[ServiceInstance]:
        if query.names is not None:
            queries = health_queries(query)
        else:
            # By regexp (CTS tmplfunc/services_regex.go): the catalog names the
            # services, then each matching one is asked for its instances.
            catalog = CatalogServicesQuery(
                datacenter=query.datacenter or "", namespace=query.namespace or ""
            )
            entries = await self.read(catalog)
            assert isinstance(entries, tuple)
            pattern = compile_regexp(query.regexp or "")
            queries = tuple(
                HealthServiceQuery(
                    name=name,
                    datacenter=query.datacenter or "",
                    namespace=query.namespace or "",
                    filter=query.filter or "",
                )
                for name, _tags in entries
                if pattern.search(name)
            )
        instances: list[ServiceInstance] = []
        for q in queries:
            data = await self.read(q)
            assert isinstance(data, tuple)
            instances.extend(data)
        instances.sort(key=lambda i: (i.node, i.id))
        return tuple(instances)

    async def catalog_services(self, query: CatalogServicesSelection) -> Mapping[str, list[str]]:
        entries = await self.read(catalog_services_query(query))
        assert isinstance(entries, tuple)
        return convert.catalog_services(entries, query.regexp)

    async def consul_kv(self, query: KVInputQuery) -> Mapping[str, str]:
        pairs = await self.read(kv_query(query))
        assert isinstance(pairs, tuple)
        return convert.consul_kv(pairs)
