"""`condition "services"` and `module_input "services"`: the instances of services named
by `names` or matched by `regexp`, which fill the `services` variable."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.taskfiles.conditions.base import (
    DATACENTER,
    NAMESPACE,
    REGEXP,
    USE_AS_MODULE_INPUT,
    ConditionKind,
    Field,
    Invalid,
    ServicesSelection,
    check_regexp,
)


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
class ServicesInput:
    type: Literal["services"] = "services"
    names: tuple[str, ...] | None = None
    regexp: str | None = None
    datacenter: str | None = None
    namespace: str | None = None
    filter: str | None = None
    cts_user_defined_meta: dict[str, str] | None = None


_FIELDS = (
    Field("names", "list", description='Service names; set either "names" or "regexp".'),
    REGEXP,
    DATACENTER,
    NAMESPACE,
    Field("filter", "str", description="A Consul filter expression over the service instances."),
    Field(
        "cts_user_defined_meta",
        "map",
        description="Metadata passed on to the module with each service.",
    ),
)

Services = ServicesCondition | ServicesInput


class ServicesKind(ConditionKind[ServicesCondition, ServicesInput]):
    name = "services"
    api_name = "services"
    condition = ServicesCondition
    condition_fields = (*_FIELDS, USE_AS_MODULE_INPUT)
    condition_schema = "ServicesCondition"
    module_input = ServicesInput
    input_fields = _FIELDS
    input_schema = "ServicesModuleInput"
    variable = "services"
    trigger = "consul"
    # tasks-api.md's "Create a task" example.
    example = {
        "description": "Writes the service name, id, and IP address to a file",
        "enabled": True,
        "name": "task_a",
        "providers": ["my-provider"],
        "condition": {"services": {"names": ["web", "api"]}},
        "module": "path/to/module",
    }

    def validate(
        self, item: Services, path: tuple[str | int, ...], where: tuple[str, ...]
    ) -> list[Invalid]:
        out = []
        if item.names is not None and item.regexp is not None:
            out.append(Invalid(path, where, 'set either "names" or "regexp", not both'))
        elif item.names is None and item.regexp is None:
            out.append(Invalid(path, where, 'either "names" or "regexp" must be set'))
        if item.names is not None:
            if not item.names:
                out.append(
                    Invalid((*path, "names"), where, '"names" must list at least one service')
                )
            if any(not n for n in item.names):
                out.append(
                    Invalid((*path, "names"), where, '"names" must not contain empty strings')
                )
        if item.regexp is not None:
            problem = check_regexp(item.regexp)
            if problem:
                out.append(Invalid((*path, "regexp"), where, problem))
        return out

    def represent(self, item: Services) -> dict[str, Any]:
        # One key where "names" sorts: as CTS, the names (sorted) when there are any, else
        # the regexp; never both.
        out: dict[str, Any] = {}
        for key, value in super().represent(item).items():
            if key == "names":
                if item.names:
                    out["names"] = sorted(item.names)
                elif item.regexp is not None:
                    out["regexp"] = item.regexp
                else:
                    out["names"] = []
            elif key != "regexp":
                out[key] = value
        return out

    def summary(self, shown: Mapping[str, Any]) -> str:
        return ", ".join(shown.get("names") or []) or f"regexp {shown.get('regexp', '')}"

    def services(self, item: Services) -> ServicesSelection:
        return item


SERVICES = ServicesKind()
