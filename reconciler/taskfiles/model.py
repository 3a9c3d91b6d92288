"""The task model: a task exactly as configured.

Optional fields are None when the file (or API request) did not set them, so that a task
can be written back with exactly the fields its author gave. `finalize`-style defaults are
applied where the task is shown (see `reconciler.api.representation`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ConditionType = Literal["services", "catalog-services", "consul-kv", "schedule"]
InputType = Literal["services", "consul-kv"]

CONDITION_TYPES: tuple[str, ...] = ("services", "catalog-services", "consul-kv", "schedule")
INPUT_TYPES: tuple[str, ...] = ("services", "consul-kv")


def hcl_type(api_name: str) -> str:
    """HCL uses hyphenated condition types, JSON/API underscores."""
    return api_name.replace("_", "-")


# The variable a condition or module_input feeds (cts-spec 1.4 rule 8).
VARIABLE_TYPES = {
    "services": "services",
    "catalog-services": "catalog_services",
    "consul-kv": "consul_kv",
    "schedule": "",
}


@dataclass(frozen=True)
class BufferPeriodConfig:
    enabled: bool | None = None
    min: int | None = None  # nanoseconds
    max: int | None = None


@dataclass(frozen=True)
class ServicesCondition:
    type: Literal["services"] = "services"
    names: tuple[str, ...] | None = None
    regexp: str | None = None
    datacenter: str | None = None
    namespace: str | None = None
    filter: str | None = None
    cts_user_defined_meta: dict[str, str] | None = None
    use_as_module_input: bool | None = None


@dataclass(frozen=True)
class CatalogServicesCondition:
    type: Literal["catalog-services"] = "catalog-services"
    regexp: str | None = None
    datacenter: str | None = None
    namespace: str | None = None
    node_meta: dict[str, str] | None = None
    use_as_module_input: bool | None = None


@dataclass(frozen=True)
class ConsulKVCondition:
    type: Literal["consul-kv"] = "consul-kv"
    path: str | None = None
    recurse: bool | None = None
    datacenter: str | None = None
    namespace: str | None = None
    use_as_module_input: bool | None = None


@dataclass(frozen=True)
class ScheduleCondition:
    type: Literal["schedule"] = "schedule"
    cron: str | None = None


@dataclass(frozen=True)
class ServicesInput:
    type: Literal["services"] = "services"
    names: tuple[str, ...] | None = None
    regexp: str | None = None
    datacenter: str | None = None
    namespace: str | None = None
    filter: str | None = None
    cts_user_defined_meta: dict[str, str] | None = None


@dataclass(frozen=True)
class ConsulKVInput:
    type: Literal["consul-kv"] = "consul-kv"
    path: str | None = None
    recurse: bool | None = None
    datacenter: str | None = None
    namespace: str | None = None


Condition = ServicesCondition | CatalogServicesCondition | ConsulKVCondition | ScheduleCondition
ModuleInput = ServicesInput | ConsulKVInput

CONDITION_CLASSES: dict[str, type[Any]] = {
    "services": ServicesCondition,
    "catalog-services": CatalogServicesCondition,
    "consul-kv": ConsulKVCondition,
    "schedule": ScheduleCondition,
}
INPUT_CLASSES: dict[str, type[Any]] = {"services": ServicesInput, "consul-kv": ConsulKVInput}


@dataclass(frozen=True)
class TaskSpec:
    """One task as configured. Equality of two specs means "no change"."""

    name: str
    module: str | None = None
    description: str | None = None
    enabled: bool | None = None
    version: str | None = None
    providers: tuple[str, ...] | None = None
    # Values are literal HCL values (str, number, bool, list, object).
    variables: dict[str, Any] | None = None
    variable_files: tuple[str, ...] | None = None
    condition: Condition | None = None
    module_inputs: tuple[ModuleInput, ...] = ()
    buffer_period: BufferPeriodConfig | None = None
    working_dir: str | None = None
    # Deprecated CTS fields, kept so that old files load unchanged.
    services: tuple[str, ...] | None = None
    # Enterprise-only fields, kept only to be rejected with CTS's hint.
    terraform_version: str | None = None
    terraform_cloud_workspace: dict[str, Any] | None = None

    @property
    def is_enabled(self) -> bool:
        return self.enabled is not False


@dataclass(frozen=True)
class Provenance:
    """Where a live task's definition comes from."""

    file: str  # path relative to the source root, '/'-separated
    line: int
    revision: str  # content hash (directory) or commit sha (git)
    # Absolute path of the file, "" when unknown. Relative paths in the task (module,
    # variable_files) resolve against its directory.
    path: str = ""


@dataclass(frozen=True)
class GlobalDefaults:
    """Daemon-level settings that shape how a task is shown and run."""

    buffer_enabled: bool = True
    buffer_min: int = 5_000_000_000
    buffer_max: int = 20_000_000_000
