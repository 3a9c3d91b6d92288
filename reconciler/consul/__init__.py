"""Consul as a trigger source: a client for the endpoints CTS reads, blocking-query
watchers with hcat's rules, shared between subscribers, and conversions of Consul's
answers into the module-input data model."""

from reconciler.consul.catalog import ConsulCatalog
from reconciler.consul.client import (
    ConsulAPI,
    ConsulClient,
    ConsulError,
    ConsulHTTPError,
    ConsulProtocolError,
    ConsulUnavailable,
)
from reconciler.consul.connection import ClientConfig, ConsulConfigError, client_config
from reconciler.consul.leader import LeaderState, LeaderStatus, LeaderWait
from reconciler.consul.queries import (
    CatalogServicesQuery,
    HealthServiceQuery,
    KVQuery,
    Query,
    catalog_services_query,
    health_queries,
    kv_query,
)
from reconciler.consul.regexp import RegexpServicesWatch
from reconciler.consul.retry import Pacing, retry_policy
from reconciler.consul.watcher import WatchState, WatchStatus
from reconciler.consul.watchers import ConsulWatchers, Subscription, Update

__all__ = [
    "CatalogServicesQuery",
    "ClientConfig",
    "ConsulAPI",
    "ConsulCatalog",
    "ConsulClient",
    "ConsulConfigError",
    "ConsulError",
    "ConsulHTTPError",
    "ConsulProtocolError",
    "ConsulUnavailable",
    "ConsulWatchers",
    "HealthServiceQuery",
    "KVQuery",
    "LeaderState",
    "LeaderStatus",
    "LeaderWait",
    "Pacing",
    "Query",
    "RegexpServicesWatch",
    "Subscription",
    "Update",
    "WatchState",
    "WatchStatus",
    "catalog_services_query",
    "client_config",
    "health_queries",
    "kv_query",
    "retry_policy",
]
