"""The condition kinds: the one table of every `condition` and `module_input` type.

Each kind lives in a module of its own (its dataclasses and its `ConditionKind`, see
`base`); this table lists them, in the order in which messages and the OpenAPI document
name them. The code that decodes, validates, writes, encodes, shows and describes
conditions and module inputs, and the trigger sources and module-input rendering above
this layer, go through the table. A new kind is a new module and an entry here (in
`KINDS` and in the `Condition` / `ModuleInput` unions, which type checkers and the parse
cache read).
"""

from __future__ import annotations

from typing import Any

from reconciler.taskfiles.conditions.base import ConditionKind
from reconciler.taskfiles.conditions.catalog_services import (
    CATALOG_SERVICES,
    CatalogServicesCondition,
)
from reconciler.taskfiles.conditions.consul_kv import CONSUL_KV, ConsulKVCondition, ConsulKVInput
from reconciler.taskfiles.conditions.schedule import SCHEDULE, ScheduleCondition
from reconciler.taskfiles.conditions.services import SERVICES, ServicesCondition, ServicesInput

Kind = ConditionKind[Any, Any]

KINDS: tuple[Kind, ...] = (SERVICES, CATALOG_SERVICES, CONSUL_KV, SCHEDULE)

Condition = ServicesCondition | CatalogServicesCondition | ConsulKVCondition | ScheduleCondition
ModuleInput = ServicesInput | ConsulKVInput

# By the name task files use ("consul-kv"), and by the API's ("consul_kv").
CONDITION_KINDS: dict[str, Kind] = {k.name: k for k in KINDS}
INPUT_KINDS: dict[str, Kind] = {k.name: k for k in KINDS if k.module_input is not None}
CONDITION_API_KINDS: dict[str, Kind] = {k.api_name: k for k in KINDS}
INPUT_API_KINDS: dict[str, Kind] = {k.api_name: k for k in INPUT_KINDS.values()}


def kind_of(item: Condition | ModuleInput) -> Kind:
    """The kind of a condition or module_input."""
    return CONDITION_KINDS[item.type]


__all__ = [
    "CONDITION_API_KINDS",
    "CONDITION_KINDS",
    "INPUT_API_KINDS",
    "INPUT_KINDS",
    "KINDS",
    "CatalogServicesCondition",
    "Condition",
    "ConditionKind",
    "ConsulKVCondition",
    "ConsulKVInput",
    "Kind",
    "ModuleInput",
    "ScheduleCondition",
    "ServicesCondition",
    "ServicesInput",
    "kind_of",
]
