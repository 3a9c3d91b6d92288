"""Consul as a trigger source: a client for the endpoints CTS reads, blocking-query
watchers with hcat's rules, shared between subscribers, and conversions of Consul's
answers into the module-input data model."""

from reconciler.triggers.consul.catalog import ConsulCatalog
from reconciler.triggers.consul.client import (
    ConsulAPI,
    ConsulClient,
    ConsulError,
    ConsulHTTPError,
    ConsulProtocolError,
    ConsulUnavailable,
)
from reconciler.triggers.consul.config import ClientConfig, ConsulConfigError, client_config
from reconciler.triggers.consul.leader import LeaderState, LeaderStatus, LeaderWait
from reconciler.triggers.consul.queries import (
    CatalogServicesQuery,
    HealthServiceQuery,
    KVQuery,
    Query,
    catalog_services_query,
    health_queries,
    kv_query,
)
from reconciler.triggers.consul.regexp import RegexpServicesWatch
from reconciler.triggers.consul.retry import Pacing, RetryPolicy
from reconciler.triggers.consul.watcher import WatchState, WatchStatus
from reconciler.triggers.consul.watchers import ConsulWatchers, Subscription, Update

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
    "RetryPolicy",
    "Subscription",
    "Update",
    "WatchState",
    "WatchStatus",
    "catalog_services_query",
    "client_config",
    "health_queries",
    "kv_query",
]
