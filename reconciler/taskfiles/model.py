"""The task model: a task exactly as configured.

Optional fields are None when the file (or API request) did not set them, so that a task
can be written back with exactly the fields its author gave. `finalize`-style defaults are
applied where the task is shown (see `reconciler.api.representation`).

The condition and module_input dataclasses are defined with their kinds, one module per
kind (`reconciler.taskfiles.conditions`), and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reconciler.taskfiles.conditions import (
    CatalogServicesCondition,
    Condition,
    ConsulKVCondition,
    ConsulKVInput,
    ModuleInput,
    ScheduleCondition,
    ServicesCondition,
    ServicesInput,
)

__all__ = [
    "BufferPeriodConfig",
    "CatalogServicesCondition",
    "Condition",
    "ConsulKVCondition",
    "ConsulKVInput",
    "GlobalDefaults",
    "ModuleInput",
    "Provenance",
    "ScheduleCondition",
    "ServicesCondition",
    "ServicesInput",
    "TaskSpec",
    "hcl_type",
]


def hcl_type(api_name: str) -> str:
    """HCL uses hyphenated condition types, JSON/API underscores."""
    return api_name.replace("_", "-")


@dataclass(frozen=True)
class BufferPeriodConfig:
    enabled: bool | None = None
    min: int | None = None  # nanoseconds
    max: int | None = None


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
