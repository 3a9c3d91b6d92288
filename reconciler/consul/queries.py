"""The Consul queries a task's conditions and module inputs turn into.

A query is a frozen, hashable value: two tasks asking the same question build equal
queries, which is how one watcher (one long poll) serves both. Each knows its request
and how to convert the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import quote

from reconciler.consul import convert
from reconciler.consul.client import (
    ConsulAPI,
    datacenter_params,
    node_meta_params,
)
from reconciler.runner.inputs import ServiceInstance
from reconciler.taskfiles.conditions.base import (
    CatalogServicesSelection,
    KVSelection,
    ServicesSelection,
)

NodeMeta = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Answer:
    data: object  # the converted answer: immutable, comparable with ==
    index: int | None  # X-Consul-Index; None when Consul sent none


class Query(Protocol):
    """What a watcher polls. Implementations are frozen dataclasses (hashable)."""

    @property
    def id(self) -> str:
        """A human-readable identity, for logs and status."""
        ...

    async def fetch(self, client: ConsulAPI, index: int) -> Answer: ...


def _freeze(meta: Mapping[str, str] | None) -> NodeMeta:
    return tuple(sorted((meta or {}).items()))


@dataclass(frozen=True)
class HealthServiceQuery:
    """`GET /v1/health/service/<name>`: the instances of one service."""

    name: str
    datacenter: str = ""
    namespace: str = ""
    filter: str = ""

    @property
    def passing_only(self) -> bool:
        # hcat health_service.go: passing=1 unless a filter option mentions Checks.Status.
        return "Checks.Status" not in self.filter

    @property
    def id(self) -> str:
        opts = [f"dc={self.datacenter}"] if self.datacenter else []
        opts += [f"ns={self.namespace}"] if self.namespace else []
        opts += [f"filter={self.filter}"] if self.filter else []
        opts += [] if self.passing_only else ["any-status"]
        return f"health.service({self.name}{'?' + '&'.join(opts) if opts else ''})"

    def params(self) -> list[tuple[str, str]]:
        out = [("passing", "1")] if self.passing_only else []
        out += datacenter_params(self.datacenter, self.namespace)
        if self.filter:
            out.append(("filter", self.filter))
        return out

    async def fetch(self, client: ConsulAPI, index: int) -> Answer:
        r = await client.get(
            f"/v1/health/service/{quote(self.name, safe='')}",
            self.params(),
            index=index,
            what=self.id,
        )
        return Answer(convert.health_instances(r.body), r.index)


@dataclass(frozen=True)
class CatalogServicesQuery:
    """`GET /v1/catalog/services`: every service name with its tags. The task's regexp
    is applied by the subscriber, so tasks that differ only in their regexp share one
    long poll (hcat keys the query by its regexp and polls once per regexp)."""

    datacenter: str = ""
    namespace: str = ""
    node_meta: NodeMeta = ()

    @property
    def id(self) -> str:
        opts = [f"dc={self.datacenter}"] if self.datacenter else []
        opts += [f"ns={self.namespace}"] if self.namespace else []
        opts += [f"node-meta={k}:{v}" for k, v in self.node_meta]
        return f"catalog.services({'&'.join(opts)})"

    def params(self) -> list[tuple[str, str]]:
        return datacenter_params(self.datacenter, self.namespace) + node_meta_params(
            dict(self.node_meta)
        )

    async def fetch(self, client: ConsulAPI, index: int) -> Answer:
        r = await client.get("/v1/catalog/services", self.params(), index=index, what=self.id)
        return Answer(convert.catalog_entries(r.body), r.index)


@dataclass(frozen=True)
class HealthStateQuery:
    """`GET /v1/health/state/any`: every check of a datacenter with its ModifyIndex, the
    cluster-wide index that says which services' health changed (feed.py)."""

    datacenter: str = ""
    namespace: str = ""

    @property
    def id(self) -> str:
        opts = [f"dc={self.datacenter}"] if self.datacenter else []
        opts += [f"ns={self.namespace}"] if self.namespace else []
        return f"health.state({'&'.join(opts)})"

    async def fetch(self, client: ConsulAPI, index: int) -> Answer:
        r = await client.get(
            "/v1/health/state/any",
            datacenter_params(self.datacenter, self.namespace),
            index=index,
            what=self.id,
        )
        return Answer(convert.health_checks(r.body), r.index)


@dataclass(frozen=True)
class KVQuery:
    """`GET /v1/kv/<path>[?recurse]`: one key, or every key under a prefix. A 404 is
    "does not exist", a valid answer (hcat kv_exists_get.go)."""

    path: str
    recurse: bool = False
    datacenter: str = ""
    namespace: str = ""

    def __post_init__(self) -> None:
        # hcat kv_list.go trims the leading "/" of a prefix; Consul's URL has one slash.
        object.__setattr__(self, "path", self.path.lstrip("/"))

    @property
    def id(self) -> str:
        # Unlike hcat's kv.list id, the namespace is part of the identity: two
        # namespaces holding the same prefix are two queries.
        opts = ["recurse"] if self.recurse else []
        opts += [f"dc={self.datacenter}"] if self.datacenter else []
        opts += [f"ns={self.namespace}"] if self.namespace else []
        return f"kv({self.path}{'?' + '&'.join(opts) if opts else ''})"

    def params(self) -> list[tuple[str, str]]:
        out = [("recurse", "")] if self.recurse else []
        return out + datacenter_params(self.datacenter, self.namespace)

    async def fetch(self, client: ConsulAPI, index: int) -> Answer:
        r = await client.get(
            f"/v1/kv/{quote(self.path, safe='/')}",
            self.params(),
            index=index,
            not_found_ok=True,
            what=self.id,
        )
        pairs = convert.kv_pairs(r.body)
        if not self.recurse:
            # A plain GET answers the exact key only; keep it exact even if a proxy or
            # an old agent answered more.
            pairs = tuple(p for p in pairs if p[0] == self.path)
        return Answer(pairs, r.index)


def health_queries(q: ServicesSelection) -> tuple[HealthServiceQuery, ...]:
    """One query per name, names sorted (CTS renders them in that order). A `regexp`
    services query needs the catalog first and is not a single health query."""
    if q.names is None:
        raise ValueError("a services query by regexp is not a health query")
    return tuple(
        HealthServiceQuery(
            name=n,
            datacenter=q.datacenter or "",
            namespace=q.namespace or "",
            filter=q.filter or "",
        )
        for n in sorted(set(q.names))
    )


def catalog_services_query(c: CatalogServicesSelection) -> CatalogServicesQuery:
    return CatalogServicesQuery(
        datacenter=c.datacenter or "",
        namespace=c.namespace or "",
        node_meta=_freeze(c.node_meta),
    )


def kv_query(c: KVSelection) -> KVQuery:
    return KVQuery(
        path=c.path or "",
        recurse=bool(c.recurse),
        datacenter=c.datacenter or "",
        namespace=c.namespace or "",
    )


def instances_of(data: object) -> tuple[ServiceInstance, ...]:
    """A health watcher's data, typed."""
    assert isinstance(data, tuple)
    return data
