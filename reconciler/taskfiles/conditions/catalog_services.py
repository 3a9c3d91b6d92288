"""`condition "catalog-services"`: the names of the services matching `regexp`, which fill
the `catalog_services` variable (name -> tags). Only a name appearing or disappearing
triggers, not a new instance or new tags (CTS)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Never

from reconciler.taskfiles.conditions.base import (
    DATACENTER,
    NAMESPACE,
    REGEXP,
    USE_AS_MODULE_INPUT,
    CatalogServicesSelection,
    ConditionKind,
    Field,
    Invalid,
    check_regexp,
)


@dataclass(frozen=True)
class CatalogServicesCondition:
    type: Literal["catalog-services"] = "catalog-services"
    regexp: str | None = None
    datacenter: str | None = None
    namespace: str | None = None
    node_meta: dict[str, str] | None = None
    use_as_module_input: bool | None = None


class CatalogServicesKind(ConditionKind[CatalogServicesCondition, Never]):
    name = "catalog-services"
    api_name = "catalog_services"
    condition = CatalogServicesCondition
    condition_fields = (
        Field("regexp", "str", description=REGEXP.description, required=True),
        DATACENTER,
        NAMESPACE,
        Field("node_meta", "map", description="Only services on nodes with this metadata."),
        USE_AS_MODULE_INPUT,
    )
    condition_schema = "CatalogServicesCondition"
    variable = "catalog_services"
    trigger = "consul"
    example = {
        "name": "catalog_task",
        "module": "path/to/module",
        "condition": {
            "catalog_services": {
                "regexp": "^web",
                "node_meta": {"rack": "r1"},
                "use_as_module_input": False,
            }
        },
        "module_input": {"consul_kv": {"path": "config/web", "recurse": True}},
        "variables": {"greeting": '"hello"', "replicas": "3", "zones": '["a", "b"]'},
        "buffer_period": {"enabled": True, "min": "10s", "max": "1m30s"},
    }

    def validate(
        self,
        item: CatalogServicesCondition,
        path: tuple[str | int, ...],
        where: tuple[str, ...],
    ) -> list[Invalid]:
        if item.regexp is None:
            return [Invalid(path, where, '"regexp" must be set')]
        problem = check_regexp(item.regexp)
        return [Invalid((*path, "regexp"), where, problem)] if problem else []

    def summary(self, shown: Mapping[str, Any]) -> str:
        return f"regexp {shown.get('regexp', '')}"

    def catalog_services(self, item: CatalogServicesCondition) -> CatalogServicesSelection:
        return item


CATALOG_SERVICES = CatalogServicesKind()
