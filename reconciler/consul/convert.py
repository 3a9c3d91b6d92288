"""Consul's JSON answers -> the module-input data model (cts-spec 4.2, 4.3).

Pure functions over decoded JSON in Consul's own field names. The results are tuples of
immutable values so that a watcher can compare one answer with the last one (Consul bumps
its indexes for unrelated changes; only a real change of the converted data counts) and
hand the same object to every subscriber.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.runner.inputs import ServiceInstance
from reconciler.taskfiles.goregexp import Regexp, compile_regexp

# consul/api health.go
NODE_MAINT = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"

CatalogEntries = tuple[tuple[str, tuple[str, ...]], ...]  # (service name, sorted tags)
KVPairs = tuple[tuple[str, str], ...]  # (key, value)
# (node, check ID, service name, service ID, status, modify index); service name "" is a
# node-level check (serfHealth, node maintenance)
Check = tuple[str, str, str, str, str, int]


class ConversionError(ValueError):
    """An answer that does not have the shape Consul documents."""


def aggregated_status(checks: Iterable[Mapping[str, Any]] | None) -> str:
    """consul/api HealthChecks.AggregatedStatus: maintenance > critical > warning >
    passing; no checks is passing; an unknown status makes the whole status ""."""
    passing = warning = critical = maintenance = False
    for check in checks or ():
        check_id = str(check.get("CheckID") or "")
        if check_id == NODE_MAINT or check_id.startswith(SERVICE_MAINT_PREFIX):
            maintenance = True
            continue
        status = check.get("Status")
        if status == "passing":
            passing = True
        elif status == "warning":
            warning = True
        elif status == "critical":
            critical = True
        else:
            return ""
    if maintenance:
        return "maintenance"
    if critical:
        return "critical"
    if warning:
        return "warning"
    del passing  # passing, and no checks at all, are both "passing"
    return "passing"


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConversionError(f"{what}: expected an object, got {type(value).__name__}")
    return {str(k): "" if v is None else str(v) for k, v in sorted(value.items())}


def _tags(value: Any) -> tuple[str, ...]:
    # hcat deepCopyAndSortTags: tags are sorted (and a null list is empty).
    return tuple(sorted(str(t) for t in value or ()))


def health_instance(entry: Mapping[str, Any]) -> ServiceInstance:
    """One element of `/v1/health/service/<name>` (a consul/api ServiceEntry)."""
    node = entry.get("Node") or {}
    service = entry.get("Service") or {}
    if not isinstance(node, Mapping) or not isinstance(service, Mapping):
        raise ConversionError("health entry: Node and Service must be objects")
    port = service.get("Port") or 0
    if not isinstance(port, int) or isinstance(port, bool):
        raise ConversionError(f"health entry: Service.Port is not a number: {port!r}")
    node_address = str(node.get("Address") or "")
    return ServiceInstance(
        id=str(service.get("ID") or ""),
        name=str(service.get("Service") or ""),
        node=str(node.get("Node") or ""),
        kind=str(service.get("Kind") or ""),
        # hcat health_service.go: the service address, falling back to the node's.
        address=str(service.get("Address") or "") or node_address,
        port=port,
        meta=_str_map(service.get("Meta"), "Service.Meta"),
        tags=_tags(service.get("Tags")),
        namespace=str(service.get("Namespace") or ""),
        status=aggregated_status(entry.get("Checks")),
        node_id=str(node.get("ID") or ""),
        node_address=node_address,
        node_datacenter=str(node.get("Datacenter") or ""),
        node_tagged_addresses=_str_map(node.get("TaggedAddresses"), "Node.TaggedAddresses"),
        node_meta=_str_map(node.get("Meta"), "Node.Meta"),
    )


def health_instances(body: Any) -> tuple[ServiceInstance, ...]:
    """`/v1/health/service/<name>`, sorted by node, then service ID (hcat's order)."""
    if body is None:
        return ()
    if not isinstance(body, list):
        raise ConversionError("health.service: expected a JSON list")
    instances = [health_instance(e) for e in body]
    instances.sort(key=lambda i: (i.node, i.id))
    return tuple(instances)


def services_map(instances: Iterable[ServiceInstance]) -> dict[str, ServiceInstance]:
    """CTS's `services` map: keyed `id.node[.namespace].datacenter`, in key order."""
    return dict(sorted((i.key, i) for i in instances))


def catalog_entries(body: Any) -> CatalogEntries:
    """`/v1/catalog/services`: service name -> tags, by name, tags sorted."""
    if body is None:
        return ()
    if not isinstance(body, Mapping):
        raise ConversionError("catalog.services: expected a JSON object")
    return tuple((str(name), _tags(tags)) for name, tags in sorted(body.items()))


def health_checks(body: Any) -> tuple[Check, ...]:
    """`/v1/health/state/any`: every check of the datacenter, sorted."""
    if body is None:
        return ()
    if not isinstance(body, list):
        raise ConversionError("health.state: expected a JSON list")
    out: list[Check] = []
    for c in body:
        if not isinstance(c, Mapping):
            raise ConversionError("health.state: expected a list of checks")
        try:
            modify = int(c.get("ModifyIndex") or 0)
        except (TypeError, ValueError) as err:
            raise ConversionError(f"health.state: ModifyIndex: {err}") from err
        out.append(
            (
                str(c.get("Node") or ""),
                str(c.get("CheckID") or ""),
                str(c.get("ServiceName") or ""),
                str(c.get("ServiceID") or ""),
                str(c.get("Status") or ""),
                modify,
            )
        )
    out.sort()
    return tuple(out)


def catalog_services(
    entries: CatalogEntries, regexp: str | Regexp | None = None
) -> dict[str, list[str]]:
    """The `catalog_services` variable: the entries whose name the regexp matches
    anywhere in the name (Go's MatchString is a search, not a full match)."""
    pattern = compile_regexp(regexp) if isinstance(regexp, str) else regexp
    return {name: list(tags) for name, tags in entries if pattern is None or pattern.search(name)}


def kv_value(pair: Mapping[str, Any]) -> str:
    raw = pair.get("Value")
    if raw is None:  # a key holding zero bytes
        return ""
    try:
        data = base64.b64decode(str(raw), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ConversionError(f"kv {pair.get('Key')!r}: Value is not base64: {err}") from err
    # Terraform strings are Unicode; bytes that are not UTF-8 become U+FFFD rather than
    # failing the whole render.
    return data.decode("utf-8", errors="replace")


def kv_pairs(body: Any) -> KVPairs:
    """`/v1/kv/<path>[?recurse]`: (full key path, value) by key. A 404 (body None) is a
    key or prefix that does not exist: a valid, empty answer."""
    if body is None:
        return ()
    if not isinstance(body, list):
        raise ConversionError("kv: expected a JSON list")
    pairs = []
    for pair in body:
        if not isinstance(pair, Mapping) or not isinstance(pair.get("Key"), str):
            raise ConversionError("kv: every entry needs a string Key")
        pairs.append((pair["Key"], kv_value(pair)))
    return tuple(sorted(pairs))


def consul_kv(pairs: KVPairs) -> dict[str, str]:
    """The `consul_kv` variable: full key path -> value (cts-spec 4.3)."""
    return dict(pairs)
