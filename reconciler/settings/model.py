"""The daemon configuration, resolved once: every default applied, every path absolute.

Maps hold plain values (str, number, bool, list, dict) exactly as written; they are typed
`Mapping` to say "do not mutate", not copied into read-only proxies, so that the settings
stay picklable for worker processes.

The classes of the `source` blocks are declared by their kinds of source, next to the
sources they configure (reconciler.sources), and imported here with the rest.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler._core.errors import NOWHERE, Location, Problem
from reconciler.settings.vault import VaultSettings
from reconciler.sources.base import SourceSettings as SourceSettings
from reconciler.sources.directory import DirectorySourceSettings as DirectorySourceSettings
from reconciler.sources.git.settings import GitAuthorSettings as GitAuthorSettings
from reconciler.sources.git.settings import GitSourceSettings as GitSourceSettings
from reconciler.taskfiles.model import TaskSpec

SECOND = 1_000_000_000

LOG_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERR")
LOG_FORMATS = ("text", "json")  # not in CTS
BACKEND_TYPES = ("azurerm", "consul", "cos", "gcs", "kubernetes", "local", "manta", "pg", "s3")
# version/terraform.go in CTS: ">= 0.13.0, <= 1.14.3".
TERRAFORM_MIN = (0, 13, 0)
TERRAFORM_MAX = (1, 14, 3)


@dataclass(frozen=True)
class BufferPeriodSettings:
    enabled: bool = True
    min: int = 5 * SECOND  # nanoseconds
    max: int = 20 * SECOND


@dataclass(frozen=True)
class SyslogSettings:
    enabled: bool = False
    facility: str = "LOCAL0"
    name: str = "consul-terraform-sync"


@dataclass(frozen=True)
class TLSSettings:
    """TLS for our own API server."""

    enabled: bool = False
    cert: Path | None = None
    key: Path | None = None
    verify_incoming: bool = False
    ca_cert: Path | None = None
    ca_path: Path | None = None


@dataclass(frozen=True)
class ConsulAuthSettings:
    enabled: bool = False
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True)
class ConsulTLSSettings:
    enabled: bool = False
    verify: bool = True
    cert: Path | None = None
    key: Path | None = None
    ca_cert: Path | None = None
    ca_path: Path | None = None
    server_name: str = ""


@dataclass(frozen=True)
class ConsulTransportSettings:
    dial_keep_alive: int = 30 * SECOND
    dial_timeout: int = 30 * SECOND
    disable_keep_alives: bool = False
    idle_conn_timeout: int = 5 * SECOND
    max_idle_conns: int = 0
    max_idle_conns_per_host: int = 100
    tls_handshake_timeout: int = 10 * SECOND
    # Not in CTS: the most connections held to Consul at once; 0 = no cap (one per
    # long poll, as CTS). Above it, services are watched through Consul's cluster-wide
    # indexes (consul/feed.py).
    max_conns_per_host: int = 64


@dataclass(frozen=True)
class DefaultCheckSettings:
    enabled: bool = True
    address: str = ""


@dataclass(frozen=True)
class ServiceRegistrationSettings:
    enabled: bool = True
    service_name: str = "consul-terraform-sync"
    address: str = ""
    namespace: str = ""
    default_check: DefaultCheckSettings = DefaultCheckSettings()


@dataclass(frozen=True)
class ConsulSettings:
    address: str = "localhost:8500"
    token: str = field(default="", repr=False)
    auth: ConsulAuthSettings = ConsulAuthSettings()
    tls: ConsulTLSSettings = ConsulTLSSettings()
    transport: ConsulTransportSettings = ConsulTransportSettings()
    kv_namespace: str = ""
    kv_path: str = "consul-terraform-sync/"
    service_registration: ServiceRegistrationSettings = ServiceRegistrationSettings()


@dataclass(frozen=True)
class TerraformDriverSettings:
    version: str | None = None  # None: the runner picks
    path: Path | None = None  # where the terraform binary is looked for; None: the runner picks
    log: bool = False
    persist_log: bool = False
    workers: int = 4  # at most this many Terraform runs at once
    # "changed": at start, a task whose definition and inputs equal its last successful
    # apply is not applied again; "always": every task is (CTS).
    apply_on_start: str = "changed"
    # Names and PREFIX* patterns of the daemon's environment variables that Terraform
    # gets besides the allow-list of reconciler.runner.environment.
    pass_env: tuple[str, ...] = ()
    required_providers: Mapping[str, Any] = field(default_factory=dict)
    # Exactly one backend type, as configured; a configured consul backend gets CTS's
    # defaults (address, path, gzip, TLS) merged in. None: not configured, so where each
    # task's state lives is decided per task (reconciler.runner.state): CTS's consul
    # backend when the daemon uses Consul, else local state in the task's workspace.
    backend: Mapping[str, Mapping[str, Any]] | None = None


@dataclass(frozen=True)
class TerraformProviderSettings:
    name: str
    # The block as written, meta-arguments (alias, task_env, auto_commit) included.
    body: Mapping[str, Any] = field(default_factory=dict)
    location: Location = field(default=NOWHERE, compare=False)
    # The line of each top-level key of the body (where its templates are written).
    lines: Mapping[str, int] = field(default_factory=dict, compare=False)

    def where(self, key: str) -> Location:
        return Location(self.location.file, self.lines.get(key, self.location.line))

    @property
    def alias(self) -> str | None:
        alias = self.body.get("alias")
        return alias if isinstance(alias, str) else None

    @property
    def id(self) -> str:
        """`name` or `name.alias`: how tasks refer to it."""
        return f"{self.name}.{self.alias}" if self.alias else self.name

    @property
    def task_env(self) -> Mapping[str, str]:
        env = self.body.get("task_env")
        return env if isinstance(env, dict) else {}

    @property
    def auto_commit(self) -> bool:
        return self.body.get("auto_commit") is True

    @property
    def arguments(self) -> Mapping[str, Any]:
        """The provider arguments without CTS's own meta-arguments."""
        return {k: v for k, v in self.body.items() if k not in ("task_env", "auto_commit")}


@dataclass(frozen=True)
class ServiceSettings:
    """Deprecated CTS `service` block."""

    name: str
    id: str
    description: str = ""
    datacenter: str = ""
    namespace: str = ""
    filter: str = ""
    cts_user_defined_meta: Mapping[str, str] = field(default_factory=dict)
    location: Location = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class EtcdTLSSettings:
    ca_cert: Path | None = None
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class HighAvailabilitySettings:
    """`high_availability`: members of one cluster elect a leader in etcd."""

    cluster_name: str
    endpoints: tuple[str, ...]
    session_ttl: int = 15 * SECOND  # CTS's default
    parent_path: str = "reconciler"  # the keys live under <parent_path>/<cluster_name>/
    tls: EtcdTLSSettings = EtcdTLSSettings()
    address: str = ""  # how other members and clients reach this one's API
    # Not in CTS: every member runs the tasks it owns (rendezvous hashing), not only the
    # leader; the leader still takes every API change.
    shard_runs: bool = False
    location: Location = field(default=NOWHERE, compare=False)

    @property
    def prefix(self) -> str:
        return f"{self.parent_path.strip('/')}/{self.cluster_name}/"


@dataclass(frozen=True)
class ConfiguredTask:
    """A task written in a daemon configuration file."""

    spec: TaskSpec
    file: str
    line: int


# Where the daemon's Consul comes from (`Settings.consul_from`).
CONSUL_BLOCK = "block"  # a consul block
CONSUL_ENVIRONMENT = "environment"  # no block: CONSUL_HTTP_ADDR, as CTS reads it
# No block, no CONSUL_HTTP_ADDR, no catalog: CTS's localhost:8500, used by the tasks that
# watch Consul (and looked at for state CTS may have left there).
CONSUL_DEFAULT = "default"
CONSUL_CATALOG = "catalog"  # the embedded catalog stands in for Consul


@dataclass(frozen=True)
class ApiTasksSettings:
    """What a task created through the API may use (the `api_tasks` block). Tasks from
    the sources are trusted as they are (they went through review). None: the default,
    local modules under the task sources and the configuration's directory, no
    providers."""

    modules: tuple[str, ...] | None = None
    providers: tuple[str, ...] | None = None
    # Where the lists are written, for the 403's message; "" when not written.
    modules_at: str = ""
    providers_at: str = ""


@dataclass(frozen=True)
class Settings:
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one JSON object per line
    port: int = 8558
    bind_address: str = "127.0.0.1"
    # Required as `Authorization: Bearer <token>` on the API (but /v1/health and the
    # signed webhook); "" = no token.
    api_token: str = field(default="", repr=False)
    metrics_token: bool = True  # /metrics needs the token too (when there is one)
    working_dir: Path = Path("sync-tasks")  # always absolute once loaded
    id: str = ""
    client_type: str = ""
    buffer_period: BufferPeriodSettings = BufferPeriodSettings()
    syslog: SyslogSettings = SyslogSettings()
    tls: TLSSettings = TLSSettings()
    consul: ConsulSettings = ConsulSettings()
    consul_from: str = CONSUL_DEFAULT
    # The embedded catalog: a `catalog "directory"` block, or the `catalog` directory next
    # to the first configuration file when it exists and no consul block is written.
    catalog_path: Path | None = None
    driver: TerraformDriverSettings = TerraformDriverSettings()
    terraform_providers: tuple[TerraformProviderSettings, ...] = ()
    # None: neither a vault block nor VAULT_ADDR; else `enabled` says whether templates
    # may read secrets.
    vault: VaultSettings | None = None
    services: tuple[ServiceSettings, ...] = ()
    sources: tuple[SourceSettings, ...] = ()
    tasks: tuple[ConfiguredTask, ...] = ()
    high_availability: HighAvailabilitySettings | None = None
    api_tasks: ApiTasksSettings = ApiTasksSettings()
    warnings: tuple[Problem, ...] = field(default=(), compare=False)
    config_files: tuple[str, ...] = field(default=(), compare=False)

    @property
    def consul_configured(self) -> bool:
        """Consul is configured explicitly (a block) or through CTS's environment
        variables: the daemon talks to it from the start, and keeps state in it."""
        return self.consul_from in (CONSUL_BLOCK, CONSUL_ENVIRONMENT)
