"""`condition "consul-kv"` and `module_input "consul-kv"`: one Consul KV key, or every key
under it with `recurse`, which fill the `consul_kv` variable (key -> value)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from reconciler.taskfiles.conditions.base import (
    DATACENTER,
    NAMESPACE,
    USE_AS_MODULE_INPUT,
    ConditionKind,
    Field,
    Invalid,
    KVSelection,
)


@dataclass(frozen=True)
class ConsulKVCondition:
    type: Literal["consul-kv"] = "consul-kv"
    path: str | None = None
    recurse: bool | None = None
    datacenter: str | None = None
    namespace: str | None = None
    use_as_module_input: bool | None = None


@dataclass(frozen=True)
class ConsulKVInput:
    type: Literal["consul-kv"] = "consul-kv"
    path: str | None = None
    recurse: bool | None = None
    datacenter: str | None = None
    namespace: str | None = None


_FIELDS = (
    Field("path", "str", required=True),
    Field(
        "recurse",
        "bool",
        description="Whether keys under `path` are read too (default false).",
    ),
    DATACENTER,
    NAMESPACE,
)

ConsulKV = ConsulKVCondition | ConsulKVInput


def kv_path_problem(path: str) -> str | None:
    """A Consul KV path is sent as /v1/kv/<path>: a "." or ".." segment would be resolved
    on the way and read another endpoint (/v1/acl/tokens) with the daemon's token."""
    if any(part in (".", "..") for part in path.split("/")):
        return f'"path" must not contain "." or ".." segments: "{path}"'
    return None


class ConsulKVKind(ConditionKind[ConsulKVCondition, ConsulKVInput]):
    name = "consul-kv"
    api_name = "consul_kv"
    condition = ConsulKVCondition
    condition_fields = (*_FIELDS, USE_AS_MODULE_INPUT)
    condition_schema = "ConsulKVCondition"
    module_input = ConsulKVInput
    input_fields = _FIELDS
    input_schema = "ConsulKVModuleInput"
    variable = "consul_kv"
    trigger = "consul"
    example = {
        "name": "kv_task",
        "module": "path/to/module",
        "enabled": False,
        "condition": {"consul_kv": {"path": "config/app", "datacenter": "dc1"}},
        "module_input": {
            "services": {"regexp": "^api", "cts_user_defined_meta": {"team": "payments"}}
        },
    }

    def validate(
        self, item: ConsulKV, path: tuple[str | int, ...], where: tuple[str, ...]
    ) -> list[Invalid]:
        if not item.path:
            return [Invalid(path, where, '"path" is required')]
        problem = kv_path_problem(item.path)
        return [Invalid((*path, "path"), where, problem)] if problem else []

    def summary(self, shown: Mapping[str, Any]) -> str:
        return str(shown.get("path", "")) + (" (recurse)" if shown.get("recurse") else "")

    def consul_kv(self, item: ConsulKV) -> KVSelection:
        return item


CONSUL_KV = ConsulKVKind()
