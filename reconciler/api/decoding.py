"""A POST /v1/tasks body -> TaskSpec, keeping exactly the fields the client sent.

Fields the client did not send stay None, so the file written for the task holds only what
was asked for. The schema is as strict as CTS's OpenAPI validation: unknown fields
(`working_dir`, `variable_files` included), wrong types and nulls are 400s. Values then go
through the same `validate_task` as task files, so both report the same messages.
"""

from __future__ import annotations

from typing import Any

from reconciler._core.errors import ConfigError
from reconciler.api.errors import ApiError, bad_request
from reconciler.taskfiles import hcl
from reconciler.taskfiles.conditions import (
    CONDITION_API_KINDS,
    INPUT_API_KINDS,
    KINDS,
    Condition,
    ModuleInput,
)
from reconciler.taskfiles.conditions.base import Field
from reconciler.taskfiles.durations import parse_duration
from reconciler.taskfiles.model import BufferPeriodConfig, TaskSpec
from reconciler.taskfiles.validate import valid_identifier

_HINTS = {
    "working_dir": "the working directory cannot be set through the API",
    "variable_files": "variable files cannot be set through the API; send `variables`",
    "source": 'the deprecated "source" is not accepted by the API; send "module"',
    "services": 'the deprecated "services" list is not accepted by the API; send '
    "condition.services or module_input.services",
    # A kind's name as task files spell it.
    **{k.name: f'the API spells it "{k.api_name}"' for k in KINDS if k.name != k.api_name},
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Object:
    """One JSON object of the request, read field by field; `finish` rejects the rest."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise _schema(path, f"must be an object, not {_type_name(value)}")
        self.value: dict[str, Any] = value
        self.path = path
        self._used: set[str] = set()

    def _get(self, key: str) -> Any:
        self._used.add(key)
        return self.value.get(key)

    def _where(self, key: str) -> str:
        return f"{self.path}.{key}"

    def string(self, key: str) -> str | None:
        if key not in self.value:
            self._used.add(key)
            return None
        value = self._get(key)
        if not isinstance(value, str):
            raise _schema(self._where(key), f"must be a string, not {_type_name(value)}")
        return value

    def boolean(self, key: str) -> bool | None:
        if key not in self.value:
            self._used.add(key)
            return None
        value = self._get(key)
        if not isinstance(value, bool):
            raise _schema(self._where(key), f"must be a boolean, not {_type_name(value)}")
        return value

    def strings(self, key: str) -> tuple[str, ...] | None:
        if key not in self.value:
            self._used.add(key)
            return None
        value = self._get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _schema(self._where(key), "must be an array of strings")
        return tuple(value)

    def string_map(self, key: str) -> dict[str, str] | None:
        if key not in self.value:
            self._used.add(key)
            return None
        value = self._get(key)
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise _schema(self._where(key), "must be an object of strings")
        return dict(value)

    def child(self, key: str) -> _Object | None:
        if key not in self.value:
            self._used.add(key)
            return None
        return _Object(self._get(key), self._where(key))

    def take(self, keys: tuple[str, ...]) -> list[str]:
        """The given keys present in the object, in request order, marked as known."""
        found = [k for k in self.value if k in keys]
        self._used.update(found)
        return found

    def finish(self) -> None:
        unknown = [k for k in self.value if k not in self._used]
        if unknown:
            key = unknown[0]
            hint = f" ({_HINTS[key]})" if key in _HINTS else ""
            raise _schema(self._where(key), f"is not a known field{hint}")


def _schema(where: str, problem: str) -> ApiError:
    return bad_request(f'request body has an error: "{where}" {problem}')


# --- conditions and module inputs ----------------------------------------------------------


def _fields(o: _Object, fields: tuple[Field, ...]) -> dict[str, Any]:
    """A condition's or module_input's fields, read by their kind's field list."""
    # Every field is passed on as sent. With both names and regexp, CTS's API silently
    # keeps names; here validation rejects it as it does in a file, instead of writing a
    # file that differs from the request.
    read = {"str": o.string, "bool": o.boolean, "list": o.strings, "map": o.string_map}
    return {f.name: read[f.type](f.name) for f in fields}


def _condition(o: _Object) -> Condition:
    kinds = o.take(tuple(CONDITION_API_KINDS))
    o.finish()
    if len(kinds) != 1:
        raise _schema(
            o.path,
            f"must hold exactly one of {', '.join(CONDITION_API_KINDS)} (found {len(kinds)})",
        )
    kind = CONDITION_API_KINDS[kinds[0]]
    c = _Object(o.value[kinds[0]], f"{o.path}.{kinds[0]}")
    cond: Condition = kind.condition(**_fields(c, kind.condition_fields))
    c.finish()
    return cond


def _module_inputs(o: _Object) -> tuple[ModuleInput, ...]:
    inputs: list[ModuleInput] = []
    for key in list(o.value):
        kind = INPUT_API_KINDS.get(key)
        if kind is None or kind.module_input is None:
            continue  # reported by finish()
        i = o.child(key)
        assert i is not None
        inputs.append(kind.module_input(**_fields(i, kind.input_fields)))
        i.finish()
    o.finish()
    return tuple(inputs)


def _buffer_period(o: _Object) -> BufferPeriodConfig:
    # Kept as sent: CTS's API turns a missing max into max = min, but the file written for
    # the task must mean the same as the request, and in a file a missing max is 4 x min.
    def duration(key: str) -> int | None:
        text = o.string(key)
        if text is None:
            return None
        try:
            return parse_duration(text)
        except ValueError as exc:
            raise _schema(f"{o.path}.{key}", f"is not a duration: {exc}") from None

    bp = BufferPeriodConfig(enabled=o.boolean("enabled"), min=duration("min"), max=duration("max"))
    o.finish()
    return bp


# --- variables -----------------------------------------------------------------------------


def parse_variable(task: str, name: str, source: str) -> Any:
    """One `variables` value: HCL literal source (cts-spec 3.6) -> the literal value."""
    prefix = f'{task}: variable "{name}"'
    if not valid_identifier(name):
        raise bad_request(
            f"{prefix}: not a valid variable name: start with a letter or "
            '"_", then use letters, digits, "_" or "-"'
        )
    try:
        body = hcl.parse(f"v = {source}\n".encode(), "variables")
    except ConfigError as exc:
        detail = exc.problems[0].message if exc.problems else str(exc)
        raise bad_request(
            f"{prefix}: the value must be one HCL literal value such as "
            f'"\\"text\\"", "10", "true" or "[\\"a\\"]": {detail}'
        ) from None
    if len(body.attributes) != 1 or body.blocks:
        raise bad_request(
            f"{prefix}: the value must be exactly one HCL literal value, "
            "not several lines of configuration"
        )
    return body.attributes[0].value


def _variables(task: str, o: _Object) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in o.value:
        text = o.string(name)
        assert text is not None
        out[name] = parse_variable(task, name, text)
    return out


# --- the task ------------------------------------------------------------------------------


def task_label(name: str | None) -> str:
    return f'task "{name}"' if name else "task"


def decode_task_request(data: Any) -> TaskSpec:
    """Decode `{"task": {...}}`; raise ApiError(400) for anything the schema rejects."""
    request = _Object(data, "body")
    t = request.child("task")
    request.finish()
    if t is None:
        raise _schema("body.task", "is required")
    t.path = "task"
    name = t.string("name")
    condition = t.child("condition")
    module_input = t.child("module_input")
    buffer = t.child("buffer_period")
    variables = t.child("variables")
    tcw = t.child("terraform_cloud_workspace")
    tcw_fields: dict[str, Any] | None = None
    if tcw is not None:
        tcw_fields = {
            k: v
            for k in ("execution_mode", "agent_pool_id", "agent_pool_name", "terraform_version")
            if (v := tcw.string(k)) is not None
        }
        tcw.finish()
    spec = TaskSpec(
        name=name or "",
        module=t.string("module"),
        description=t.string("description"),
        enabled=t.boolean("enabled"),
        version=t.string("version"),
        providers=t.strings("providers"),
        variables=_variables(task_label(name), variables) if variables is not None else None,
        condition=_condition(condition) if condition is not None else None,
        module_inputs=_module_inputs(module_input) if module_input is not None else (),
        buffer_period=_buffer_period(buffer) if buffer is not None else None,
        # Enterprise-only; empty values mean nothing and are not written to a file.
        terraform_version=t.string("terraform_version") or None,
        terraform_cloud_workspace=tcw_fields or None,
    )
    t.finish()
    return spec


# The fields a PATCH may change, as the task object names them, and the TaskSpec field
# each one sets. `name` is not among them: a task is renamed by creating another.
UPDATE_FIELDS = {
    "description": "description",
    "enabled": "enabled",
    "module": "module",
    "version": "version",
    "providers": "providers",
    "variables": "variables",
    "condition": "condition",
    "module_input": "module_inputs",
    "buffer_period": "buffer_period",
}


def decode_task_changes(data: dict[str, Any], name: str, enabled: bool | None) -> dict[str, Any]:
    """A PATCH body's task fields -> {TaskSpec field: new value}, decoded as a create's are;
    null unsets an optional field. `enabled` was decoded already (weakly typed, as CTS)."""
    o = _Object(data, "body")
    label = task_label(name)
    changes: dict[str, Any] = {}
    for key in o.take(tuple(UPDATE_FIELDS)):
        field = UPDATE_FIELDS[key]
        if key == "enabled":
            changes[field] = enabled
        elif data[key] is None:
            changes[field] = () if field == "module_inputs" else None
        elif key in ("description", "module", "version"):
            changes[field] = o.string(key)
        elif key == "providers":
            changes[field] = o.strings(key)
        else:
            child = o.child(key)
            assert child is not None
            if key == "variables":
                changes[field] = _variables(label, child)
            elif key == "condition":
                changes[field] = _condition(child)
            elif key == "module_input":
                changes[field] = _module_inputs(child)
            else:
                changes[field] = _buffer_period(child)
    o.finish()
    return changes
