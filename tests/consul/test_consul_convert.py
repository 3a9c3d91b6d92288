"""Consul's JSON (fixtures in Consul's own field names) -> the module-input data model,
and the queries' requests."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from reconciler.consul import (
    HealthServiceQuery,
    KVQuery,
    catalog_services_query,
    health_queries,
    kv_query,
)
from reconciler.consul.client import ConsulProtocolError, parse_index
from reconciler.consul.convert import (
    ConversionError,
    aggregated_status,
    catalog_entries,
    catalog_services,
    consul_kv,
    health_instances,
    kv_pairs,
    services_map,
)
from reconciler.consul.retry import min_gap_sleep, retry_policy
from reconciler.runner.inputs import ServiceInstance
from reconciler.runner.rootmodule import service_object
from reconciler.taskfiles.model import (
    CatalogServicesCondition,
    ConsulKVCondition,
    ServicesCondition,
    ServicesInput,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "consul"


def load(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


def test_health_entries_become_instances_with_every_rendered_field() -> None:
    instances = health_instances(load("health_service_api.json"))
    # Sorted by node, then service ID (hcat's order), not Consul's order.
    assert [i.node for i in instances] == ["worker-00", "worker-01"]
    api = instances[1]
    assert api == ServiceInstance(
        id="api",
        name="api",
        node="worker-01",
        kind="",
        address="1.2.3.4",
        port=8080,
        meta={"version": "v1"},
        tags=("tag1", "tag2"),  # sorted
        namespace="",
        status="passing",
        node_id="40e4a748-2192-161a-0510-9bf59fe950b5",
        node_address="127.0.0.1",
        node_datacenter="dc1",
        node_tagged_addresses={
            "lan": "127.0.0.1",
            "lan_ipv4": "127.0.0.1",
            "wan": "10.0.10.10",
            "wan_ipv4": "10.0.10.10",
        },
        node_meta={"consul-network-segment": "", "consul-version": "1.22.3"},
    )
    sidecar = instances[0]
    assert sidecar.kind == "connect-proxy" and sidecar.namespace == "team-a"
    assert sidecar.address == "10.10.0.7"  # no service address: the node's
    assert sidecar.tags == () and sidecar.meta == {} and sidecar.node_meta == {}
    assert sidecar.status == "maintenance"

    keyed = services_map(instances)
    assert list(keyed) == ["api-sidecar.worker-00.team-a.dc2", "api.worker-01.dc1"]
    # Exactly the object CTS renders for it (consul-client.md section 3).
    assert service_object(api, {"owner": "team"}) == {
        "id": "api",
        "name": "api",
        "kind": "",
        "address": "1.2.3.4",
        "port": 8080,
        "meta": {"version": "v1"},
        "tags": ["tag1", "tag2"],
        "namespace": "",
        "status": "passing",
        "node": "worker-01",
        "node_id": "40e4a748-2192-161a-0510-9bf59fe950b5",
        "node_address": "127.0.0.1",
        "node_datacenter": "dc1",
        "node_tagged_addresses": {
            "lan": "127.0.0.1",
            "lan_ipv4": "127.0.0.1",
            "wan": "10.0.10.10",
            "wan_ipv4": "10.0.10.10",
        },
        "node_meta": {"consul-network-segment": "", "consul-version": "1.22.3"},
        "cts_user_defined_meta": {"owner": "team"},
    }


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], "passing"),
        (["passing", "passing"], "passing"),
        (["passing", "warning"], "warning"),
        (["warning", "critical", "passing"], "critical"),
        (["passing", "bogus"], ""),
    ],
)
def test_aggregated_status(statuses: list[str], expected: str) -> None:
    checks = [{"CheckID": f"c{n}", "Status": s} for n, s in enumerate(statuses)]
    assert aggregated_status(checks) == expected


def test_maintenance_wins_over_everything() -> None:
    checks = [{"CheckID": "_node_maintenance", "Status": "critical"}]
    checks.append({"CheckID": "service:web", "Status": "passing"})
    assert aggregated_status(checks) == "maintenance"


def test_malformed_answers_are_errors_not_crashes() -> None:
    with pytest.raises(ConversionError, match="expected a JSON list"):
        health_instances({"Node": {}})
    with pytest.raises(ConversionError, match="Port"):
        health_instances([{"Node": {}, "Service": {"Port": "80"}}])
    with pytest.raises(ConversionError, match="base64"):
        kv_pairs([{"Key": "k", "Value": "%%%"}])


def test_catalog_services() -> None:
    entries = catalog_entries(load("catalog_services_api.json"))
    assert entries == (
        ("api", ("tag1",)),
        ("consul", ()),
        ("db", ("tag3", "tag4")),
        ("web", ()),
    )
    assert catalog_services(entries) == {
        "api": ["tag1"],
        "consul": [],
        "db": ["tag3", "tag4"],
        "web": [],
    }
    # Go's regexp MatchString finds a match anywhere in the name.
    assert catalog_services(entries, "b") == {"db": ["tag3", "tag4"], "web": []}
    assert catalog_services(entries, "^(api|web)$") == {"api": ["tag1"], "web": []}


def test_kv_values_are_decoded_verbatim() -> None:
    pairs = kv_pairs(load("kv_recurse_api.json"))
    assert consul_kv(pairs) == {"path": "red", "path/b": 'say "hi"\n${x}', "path/empty": ""}
    assert kv_pairs(None) == ()  # a 404: no such key
    bad_utf8 = kv_pairs([{"Key": "k", "Value": "/w=="}])
    assert bad_utf8 == (("k", "\ufffd"),)


def test_queries_from_conditions() -> None:
    cond = ServicesCondition(
        names=("web", "api", "web"), datacenter="dc2", filter='Service.Tags contains "x"'
    )
    queries = health_queries(cond)
    assert [q.name for q in queries] == ["api", "web"]
    assert queries[0].params() == [
        ("passing", "1"),
        ("dc", "dc2"),
        ("filter", 'Service.Tags contains "x"'),
    ]
    # A module input asking the same thing is the same query: one watcher serves both.
    assert health_queries(ServicesInput(names=("api",), datacenter="dc2", filter=cond.filter)) == (
        queries[0],
    )
    status = HealthServiceQuery("web", filter='Checks.Status == "critical"')
    assert not status.passing_only and ("passing", "1") not in status.params()
    with pytest.raises(ValueError, match="regexp"):
        health_queries(ServicesCondition(regexp="^web"))

    catalog = catalog_services_query(
        CatalogServicesCondition(regexp="^web", namespace="ns1", node_meta={"rack": "r1"})
    )
    assert catalog.params() == [("ns", "ns1"), ("node-meta", "rack:r1")]
    # The regexp is the subscriber's business: it does not split the long poll.
    assert catalog == catalog_services_query(
        CatalogServicesCondition(regexp="^db", namespace="ns1", node_meta={"rack": "r1"})
    )
    kv = kv_query(ConsulKVCondition(path="/app/flag", recurse=True, datacenter="dc2"))
    assert kv == KVQuery("app/flag", recurse=True, datacenter="dc2")
    assert kv.params() == [("recurse", ""), ("dc", "dc2")]
    # Two namespaces are two queries (hcat's kv.list id leaves the namespace out).
    assert KVQuery("p", True, namespace="a") != KVQuery("p", True, namespace="b")
    assert KVQuery("p", True, namespace="a").id != KVQuery("p", True, namespace="b").id


def test_index_header_parsing() -> None:
    assert parse_index("42", "q") == 42
    assert parse_index(None, "q") is None and parse_index("", "q") is None
    for bad in ("-1", "4 2", "x", "1.5", "٣"):
        with pytest.raises(ConsulProtocolError, match="Failed to parse X-Consul-Index"):
            parse_index(bad, "q")


def test_backoff_numbers_are_ctss() -> None:
    rnd = random.Random(3)
    wait = retry_policy(rnd=rnd).delay  # CTS's wait before retry n is the one after n + 1 failures
    for attempt, (low, high) in enumerate([(1, 1.5), (2, 3), (4, 6), (8, 12), (256, 384)]):
        n = attempt if attempt < 4 else 8
        for _ in range(20):
            assert low <= wait(n + 1) < high
    assert wait(9 + 1) < 900
    assert wait(10 + 1) == 900.0  # capped at 15 minutes, without jitter
    assert wait(40 + 1) == 900.0
    assert 0.05 <= min_gap_sleep(0.05, rnd) <= 0.07
    assert min_gap_sleep(0.1, rnd) == 0.0 and min_gap_sleep(3.0, rnd) == 0.0
