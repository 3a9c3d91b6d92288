"""Writing task specs as HCL `task` blocks, in the style `terraform fmt` would leave them.

Only the fields the author set (not None) are written, so a task written back reads back
as the same spec. Every writer of a file should go through `checked_render` (or
`check_reads_back`): a text that does not read back identically is never written.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

from reconciler.taskfiles import hcl
from reconciler.taskfiles.durations import format_duration
from reconciler.taskfiles.load import load_task_file
from reconciler.taskfiles.model import (
    BufferPeriodConfig,
    Condition,
    ModuleInput,
    TaskSpec,
    hcl_type,
)

INDENT = "  "

# Top-level attributes in the order they are written (blocks follow).
TASK_ATTRIBUTES = (
    "name",
    "description",
    "enabled",
    "module",
    "version",
    "providers",
    "variables",
    "variable_files",
    "working_dir",
    "services",
    # Enterprise-only: written so that nothing is dropped silently; the loader rejects it.
    "terraform_version",
)

_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
# Bare keys that tree-sitter-hcl rejects (true/false/null) or that start an expression in
# Terraform (`{ for = 1 }` is a for-expression); "in" and "if" are quoted to be safe.
_KEYWORDS = frozenset({"true", "false", "null", "for", "in", "if"})

_Body = tuple[list[tuple[str, str]], list[list[str]]]  # (attributes, nested blocks' lines)


# --- values --------------------------------------------------------------------------------


def render_string(value: str) -> str:
    """An HCL quoted string that reads back as `value`, with no live `${` or `%{`."""
    return hcl.quote(value)


def render_value(value: Any, depth: int = 0) -> str:
    """An HCL literal for a plain value; lines after the first are indented for `depth`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return render_string(value)
    if isinstance(value, (list, tuple)):
        return _list(value, depth)
    if isinstance(value, dict):
        return _object(value, depth)
    raise ValueError(f"cannot write a {type(value).__name__} value as HCL")


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"HCL has no literal for the number {value!r}")
    text = repr(value)  # the shortest text that reads back as exactly this float
    mantissa, exp_mark, exponent = text.partition("e")
    if exp_mark and "." not in mantissa:
        # tree-sitter-hcl rejects an exponent without a fraction ("1e+16"); HCL allows it.
        text = f"{mantissa}.0e{exponent}"
    return text


def _list(items: Sequence[Any], depth: int) -> str:
    rendered = [render_value(item, depth + 1) for item in items]
    if not any("\n" in text for text in rendered):
        return "[" + ", ".join(rendered) + "]"
    inner = INDENT * (depth + 1)
    lines = [f"{inner}{text}," for text in rendered]
    return "[\n" + "\n".join(lines) + "\n" + INDENT * depth + "]"


def _object(obj: dict[Any, Any], depth: int) -> str:
    if not obj:
        return "{}"
    for key in obj:
        if not isinstance(key, str):
            raise ValueError(f"object keys must be strings, not {type(key).__name__}")
    pairs = [(render_key(key), render_value(value, depth + 1)) for key, value in obj.items()]
    lines = aligned_attributes(pairs, depth + 1)
    return "{\n" + "\n".join(lines) + "\n" + INDENT * depth + "}"


def render_key(key: str) -> str:
    """An object key: bare when it is a plain ASCII identifier, quoted otherwise."""
    if _BARE_KEY.match(key) and key not in _KEYWORDS:
        return key
    return render_string(key)


def render_argument_name(name: str) -> str:
    """The name of an argument in a body (`name = value` at the top of a .tfvars file or
    in a block): always bare, keywords included, since HCL refuses a quoted argument name
    ("Argument names must not be quoted") while `null = {...}` is a valid argument. A
    name that is not an identifier cannot be written at all."""
    if not _BARE_KEY.match(name):
        raise ValueError(f'"{name}" is not a valid argument name')
    return name


def aligned_attributes(pairs: Sequence[tuple[str, str]], depth: int) -> list[str]:
    """`key = value` lines, with `=` aligned across each run of one-line attributes.

    As in `terraform fmt`, an attribute whose value spans lines is not aligned and ends
    the run.
    """
    indent = INDENT * depth
    lines: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(key) for key, _ in run), default=0)
        lines.extend(f"{indent}{key.ljust(width)} = {value}" for key, value in run)
        run.clear()

    for key, value in pairs:
        if "\n" in value:
            flush()
            lines.append(f"{indent}{key} = {value}")
        else:
            run.append((key, value))
    flush()
    return lines


# --- blocks --------------------------------------------------------------------------------


def _block(header: str, body: _Body, depth: int) -> list[str]:
    indent = INDENT * depth
    attributes, blocks = body
    if not attributes and not blocks:
        return [f"{indent}{header} {{}}"]
    lines = [f"{indent}{header} {{", *aligned_attributes(attributes, depth + 1)]
    for block_lines in blocks:
        if len(lines) > 1:
            lines.append("")
        lines.extend(block_lines)
    lines.append(f"{indent}}}")
    return lines


def _set_fields(obj: Any, skip: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
    """The (name, value) pairs of a dataclass's fields that are set, in declaration order."""
    return [
        (f.name, getattr(obj, f.name))
        for f in dataclasses.fields(obj)
        if f.name not in skip and getattr(obj, f.name) is not None
    ]


def _pairs(fields: list[tuple[str, Any]], depth: int) -> list[tuple[str, str]]:
    return [(render_key(name), render_value(value, depth)) for name, value in fields]


def _typed_block(kind: str, item: Condition | ModuleInput, depth: int) -> list[str]:
    header = f"{kind} {render_string(hcl_type(item.type))}"
    attributes = _pairs(_set_fields(item, skip=("type",)), depth + 1)
    return _block(header, (attributes, []), depth)


def _buffer_block(bp: BufferPeriodConfig, depth: int) -> list[str]:
    fields: list[tuple[str, Any]] = []
    if bp.enabled is not None:
        fields.append(("enabled", bp.enabled))
    for name, ns in (("min", bp.min), ("max", bp.max)):
        if ns is not None:
            fields.append((name, format_duration(ns)))
    return _block("buffer_period", (_pairs(fields, depth + 1), []), depth)


# The nested blocks of a task in the order they are written, with the spec field each
# comes from.
TASK_BLOCKS = (
    ("condition", "condition"),
    ("module_input", "module_inputs"),
    ("buffer_period", "buffer_period"),
    ("terraform_cloud_workspace", "terraform_cloud_workspace"),
)


def task_blocks(spec: TaskSpec, kind: str) -> list[list[str]]:
    """The lines of the task's nested blocks of one kind, as written inside a task."""
    if kind == "condition":
        return [_typed_block("condition", spec.condition, 1)] if spec.condition else []
    if kind == "module_input":
        return [_typed_block("module_input", mi, 1) for mi in spec.module_inputs]
    if kind == "buffer_period":
        return [_buffer_block(spec.buffer_period, 1)] if spec.buffer_period else []
    if kind == "terraform_cloud_workspace" and spec.terraform_cloud_workspace is not None:
        tcw = list(spec.terraform_cloud_workspace.items())
        return [_block("terraform_cloud_workspace", (_pairs(tcw, 2), []), 1)]
    return []


def task_attribute(name: str, value: Any) -> str:
    """One attribute line of a task (without indentation)."""
    return f"{render_key(name)} = {render_value(value, 1)}"


def _task_body(spec: TaskSpec) -> _Body:
    fields = [(name, getattr(spec, name)) for name in TASK_ATTRIBUTES]
    attributes = _pairs([(name, value) for name, value in fields if value is not None], 1)
    blocks = [lines for kind, _ in TASK_BLOCKS for lines in task_blocks(spec, kind)]
    return attributes, blocks


def render_task(spec: TaskSpec) -> str:
    """One `task { ... }` block holding the fields of `spec` that are set, newline-terminated."""
    return "\n".join(_block("task", _task_body(spec), 0)) + "\n"


def render_file(specs: Sequence[TaskSpec]) -> bytes:
    """A task file holding `specs`, blocks separated by a blank line."""
    return "\n".join(render_task(spec) for spec in specs).encode("utf-8")


# --- read-back check -----------------------------------------------------------------------


def check_reads_back(data: bytes, filename: str, expected: Sequence[TaskSpec]) -> None:
    """Raise ValueError unless `data` loads cleanly as exactly the tasks `expected`.

    Specs are also compared by repr, because == lets True equal 1 and 1 equal 1.0.
    """
    decoded = load_task_file(data, filename)
    if decoded.problems:
        details = "; ".join(str(p) for p in decoded.problems)
        raise ValueError(f"{filename}: the written text does not load: {details}")
    got = [task.spec for task in decoded.tasks]
    wanted = list(expected)
    if got != wanted or repr(got) != repr(wanted):
        raise ValueError(
            f"{filename}: the written text reads back differently: expected {wanted!r}, "
            f"read {got!r}"
        )


def checked_render(spec: TaskSpec) -> bytes:
    """`render_task` as bytes, after checking that it reads back as exactly `spec`."""
    data = render_task(spec).encode("utf-8")
    check_reads_back(data, f"{spec.name or 'task'}.hcl", [spec])
    return data
