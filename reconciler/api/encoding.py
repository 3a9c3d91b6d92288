"""TaskSpec -> a POST /v1/tasks body, keeping only the fields the task sets.

The inverse of `reconciler.api.decoding.decode_task_request`: a client (the CLI's
`task create`) sends what its task file says, so the file the daemon writes holds the same
fields. Unlike `representation.task_object`, nothing is filled in: the daemon's defaults
(buffer period, `enabled`) apply as they would to the file itself.
"""

from __future__ import annotations

from typing import Any

from reconciler.api.representation import variables_object
from reconciler.taskfiles.conditions import Condition, ModuleInput, kind_of
from reconciler.taskfiles.durations import format_duration
from reconciler.taskfiles.model import TaskSpec

JSON = dict[str, Any]

# Fields of a task file that the API does not take, and what to do instead.
NOT_SENDABLE = {
    "variable_files": "read them into `variables` first",
    "working_dir": "the daemon places every task in its own working_dir/<task name>",
    "services": 'the deprecated "services" list: use condition "services" or '
    'module_input "services"',
}


def _set(**fields: Any) -> JSON:
    """The fields that are not None; tuples as lists, mappings copied."""
    out: JSON = {}
    for key, value in fields.items():
        if value is None:
            continue
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):
            value = dict(value)
        out[key] = value
    return out


def _typed(item: Condition | ModuleInput) -> JSON:
    """A condition's or module_input's fields that are set, in their kind's field order."""
    return _set(**{f.name: getattr(item, f.name) for f in kind_of(item).fields(item)})


def condition_request(c: Condition) -> JSON:
    return {kind_of(c).api_name: _typed(c)}


def module_input_request(inputs: tuple[ModuleInput, ...]) -> JSON:
    return {kind_of(mi).api_name: _typed(mi) for mi in inputs}


def task_request(spec: TaskSpec) -> JSON:
    """`{"task": {...}}` for `spec`. ValueError names a field the API does not take
    (see NOT_SENDABLE): the caller resolves it before sending."""
    for name in NOT_SENDABLE:
        if getattr(spec, name) is not None:
            raise ValueError(f'"{name}" cannot be sent to the API: {NOT_SENDABLE[name]}')
    bp = spec.buffer_period
    task = _set(
        name=spec.name,
        module=spec.module,
        description=spec.description,
        enabled=spec.enabled,
        version=spec.version,
        providers=spec.providers,
        variables=variables_object(spec.variables) if spec.variables is not None else None,
        condition=condition_request(spec.condition) if spec.condition is not None else None,
        module_input=module_input_request(spec.module_inputs) if spec.module_inputs else None,
        buffer_period=_set(
            enabled=bp.enabled,
            min=format_duration(bp.min) if bp.min is not None else None,
            max=format_duration(bp.max) if bp.max is not None else None,
        )
        if bp is not None
        else None,
        terraform_version=spec.terraform_version,
        terraform_cloud_workspace=spec.terraform_cloud_workspace,
    )
    return {"task": task}
