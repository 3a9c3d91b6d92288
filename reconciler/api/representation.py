"""A task as the API shows it: the configured task with CTS's defaults filled in.

Differences from a file: condition and module_input types use underscores (`consul_kv`);
every optional field is explicit (`description: ""`, `providers: []`, ...); service names
are sorted; `variables` values are HCL literal source strings (cts-spec 3.6); and
`buffer_period` is the period the task actually gets, after inheritance (cts-spec 6).
"""

from __future__ import annotations

from typing import Any

from reconciler.taskfiles.buffer import EffectiveBuffer, effective_buffer
from reconciler.taskfiles.conditions import kind_of
from reconciler.taskfiles.durations import format_duration
from reconciler.taskfiles.model import GlobalDefaults, ServicesCondition, ServicesInput, TaskSpec
from reconciler.taskfiles.write import render_key, render_string, render_value

JSON = dict[str, Any]

__all__ = ["EffectiveBuffer", "effective_buffer"]

# --- variables -----------------------------------------------------------------------------


def hcl_literal(value: Any) -> str:
    """One-line canonical HCL source for a literal value: `"a"`, `3`, `["a", "b"]`,
    `{ a = 1 }`. `parse_variable` reads it back as the same value."""
    if isinstance(value, str):
        return render_string(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(hcl_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        pairs = (f"{render_key(str(k))} = {hcl_literal(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    return render_value(value)


def variables_object(variables: dict[str, Any] | None) -> dict[str, str]:
    return {name: hcl_literal(value) for name, value in (variables or {}).items()}


# --- conditions and inputs -----------------------------------------------------------------


def _legacy_services(names: tuple[str, ...], as_condition: bool) -> JSON:
    item = ServicesCondition(names=names) if as_condition else ServicesInput(names=names)
    return kind_of(item).represent(item)


def condition_object(spec: TaskSpec) -> JSON:
    c = spec.condition
    if c is None:
        # The deprecated `services` list acts as the condition when there is none.
        return {"services": _legacy_services(spec.services, True)} if spec.services else {}
    kind = kind_of(c)
    return {kind.api_name: kind.represent(c)}


def module_input_object(spec: TaskSpec) -> JSON:
    out: JSON = {}
    if spec.services and spec.condition is not None:
        # With a condition, the deprecated `services` list is a services module input.
        out["services"] = _legacy_services(spec.services, False)
    for mi in spec.module_inputs:
        kind = kind_of(mi)
        out[kind.api_name] = kind.represent(mi)
    return out


# --- the task object -----------------------------------------------------------------------


def task_object(spec: TaskSpec, defaults: GlobalDefaults) -> JSON:
    """The API's task object (keys in the order the CTS documentation shows them)."""
    buffer = effective_buffer(spec, defaults)
    return {
        "buffer_period": {
            "enabled": buffer.enabled,
            "max": format_duration(buffer.max),
            "min": format_duration(buffer.min),
        },
        "condition": condition_object(spec),
        "description": spec.description or "",
        "enabled": spec.is_enabled,
        "module": spec.module or "",
        "module_input": module_input_object(spec),
        "name": spec.name,
        "providers": list(spec.providers or ()),
        "variables": variables_object(spec.variables),
        "version": spec.version or "",
    }
