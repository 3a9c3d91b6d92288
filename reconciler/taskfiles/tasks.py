"""`task` blocks: HCL body -> TaskSpec, with a line for every field so that each validation
problem names file:line, the task and the field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler._core.errors import Location, Problem
from reconciler.taskfiles.conditions import (
    CONDITION_KINDS,
    INPUT_KINDS,
    Condition,
    Kind,
    ModuleInput,
)
from reconciler.taskfiles.decode import BodyReader
from reconciler.taskfiles.hcl import Block
from reconciler.taskfiles.model import BufferPeriodConfig, TaskSpec
from reconciler.taskfiles.validate import validate_task

_TASK_HINTS = {
    "provider": 'did you mean the task\'s "providers" list?',
}


@dataclass
class DecodedTask:
    spec: TaskSpec
    line: int
    # Field path -> line, for pointing validation problems at the right line.
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)


@dataclass
class DecodedFile:
    tasks: list[DecodedTask] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


def task_where(name: str | None) -> str:
    return f'task "{name}"' if name else "task"


def decode_task(
    block: Block, file: str, warnings: list[Problem]
) -> tuple[DecodedTask, list[Problem]]:
    problems: list[Problem] = []
    name_attr = next((a for a in block.body.attributes if a.name == "name"), None)
    name = name_attr.value if name_attr is not None and isinstance(name_attr.value, str) else None
    if name is None and block.labels:
        name = block.labels[0]
    where = (task_where(name),)
    r = BodyReader(block.body, file=file, where=where, problems=problems, line=block.line)
    lines: dict[tuple[str | int, ...], int] = {(): block.line}
    for attr in block.body.attributes:
        lines[(attr.name,)] = attr.line

    def warn(message: str, line: int) -> None:
        warnings.append(Problem(message, where, Location(file, line)))

    r.string("name")
    module = r.string("module")
    source = r.string("source")
    if source is not None:
        warn('"source" is deprecated: rename it to "module"', r.line_of("source"))
        if module is None:
            module = source
            lines[("module",)] = r.line_of("source")
    services = r.strings("services")
    if services is not None:
        names = ", ".join(f'"{n}"' for n in services)
        warn(
            "the 'services' field in the task block is deprecated in v0.5.0 and will be "
            "removed in a future major version after v0.8.0 (it still works: it watches "
            f'these services). Replace it with condition "services" {{ names = [{names}] }} '
            'if the task has no other condition block, else with module_input "services" '
            "{ ... }; see https://consul.io/docs/nia/release-notes/0-5-0"
            "#deprecate-services-field",
            r.line_of("services"),
        )

    condition: Condition | None = None
    cond_blocks = r.blocks("condition", labels=1)
    for extra in cond_blocks[1:]:
        r.error(f"expected only one condition block, found {len(cond_blocks)}", extra.line)
    if cond_blocks:
        cb = cond_blocks[0]
        lines[("condition",)] = cb.line
        condition = _decode_typed(r, cb, "condition", CONDITION_KINDS, lines, ("condition",), warn)

    inputs: list[ModuleInput] = []
    input_blocks = r.blocks("module_input", labels=1)
    legacy_inputs = r.blocks("source_input", labels=1)
    if legacy_inputs:
        warn('"source_input" is deprecated: rename it to "module_input"', legacy_inputs[0].line)
    for ib in [*input_blocks, *legacy_inputs]:
        path: tuple[str | int, ...] = ("module_input", len(inputs))
        lines[path] = ib.line
        mi = _decode_typed(r, ib, ib.type, INPUT_KINDS, lines, path, warn)
        if mi is not None:
            inputs.append(mi)

    buffer: BufferPeriodConfig | None = None
    bp_block = r.single_block("buffer_period")
    if bp_block is not None:
        lines[("buffer_period",)] = bp_block.line
        br = r.child(bp_block, "buffer_period")
        for attr in bp_block.body.attributes:
            lines[("buffer_period", attr.name)] = attr.line
        buffer = BufferPeriodConfig(
            enabled=br.boolean("enabled"), min=br.duration("min"), max=br.duration("max")
        )
        br.finish()

    tcw: dict[str, Any] | None = None
    tcw_block = r.single_block("terraform_cloud_workspace")
    if tcw_block is not None:
        lines[("terraform_cloud_workspace",)] = tcw_block.line
        tcw = {a.name: a.value for a in tcw_block.body.attributes} or {"_": True}

    spec = TaskSpec(
        name=name or "",
        module=module,
        description=r.string("description"),
        enabled=r.boolean("enabled"),
        version=r.string("version"),
        providers=r.strings("providers"),
        variables=r.mapping("variables"),
        variable_files=r.strings("variable_files"),
        condition=condition,
        module_inputs=tuple(inputs),
        buffer_period=buffer,
        working_dir=r.string("working_dir"),
        services=services,
        terraform_version=r.string("terraform_version"),
        terraform_cloud_workspace=tcw,
    )
    r.finish(_TASK_HINTS)
    if block.labels:
        r.error(
            f'task blocks take no label: write name = "{block.labels[0]}" inside the block',
            block.line,
        )
    return DecodedTask(spec, block.line, lines), problems


def _decode_typed(
    r: BodyReader,
    block: Block,
    word: str,
    kinds: dict[str, Kind],
    lines: dict[tuple[str | int, ...], int],
    path: tuple[str | int, ...],
    warn: Any,
) -> Any:
    """A `condition` or `module_input` block (`word`) of one of `kinds`, by its fields."""
    label = block.labels[0]
    kind = kinds.get(label)
    if kind is None:
        hint = ""
        if label.replace("_", "-") in kinds:
            hint = f' (task files use hyphens: "{label.replace("_", "-")}")'
        r.error(
            f'unsupported {word} type "{label}"{hint}; expected one of: '
            + ", ".join(f'"{t}"' for t in kinds),
            block.line,
        )
        return None
    is_input = word != "condition"
    cr = r.child(block, f'{word} "{label}"')
    for attr in block.body.attributes:
        lines[(*path, attr.name)] = attr.line
    read = {"str": cr.string, "bool": cr.boolean, "list": cr.strings, "map": cr.string_map}
    fields = kind.input_fields if is_input else kind.condition_fields
    values: dict[str, Any] = {f.name: read[f.type](f.name) for f in fields}
    if "use_as_module_input" in values:
        legacy = cr.boolean("source_includes_var")
        if legacy is not None:
            warn(
                '"source_includes_var" is deprecated: rename it to "use_as_module_input"',
                cr.line_of("source_includes_var"),
            )
            if values["use_as_module_input"] is None:
                values["use_as_module_input"] = legacy
    cr.finish()
    cls = kind.module_input if is_input else kind.condition
    assert cls is not None
    return cls(**values)


def decode_tasks(blocks: list[Block], file: str) -> DecodedFile:
    """Decode and validate every task block of one file."""
    out = DecodedFile()
    names: dict[str, int] = {}
    for block in blocks:
        decoded, problems = decode_task(block, file, out.warnings)
        if problems:
            out.problems.extend(problems)
            continue
        invalid = validate_task(decoded.spec)
        if invalid:
            where = task_where(decoded.spec.name)
            for inv in invalid:
                out.problems.append(
                    Problem(
                        inv.message,
                        (where, *inv.where),
                        Location(file, line_for(decoded.lines, inv.path)),
                    )
                )
            continue
        first = names.get(decoded.spec.name)
        if first is not None:
            out.problems.append(
                Problem(
                    f"duplicate task name (first defined on line {first})",
                    (task_where(decoded.spec.name),),
                    Location(file, block.line),
                )
            )
            continue
        names[decoded.spec.name] = block.line
        out.tasks.append(decoded)
    return out


def line_for(lines: dict[tuple[str | int, ...], int], path: tuple[str | int, ...]) -> int:
    """The line of the deepest known prefix of `path`."""
    for cut in range(len(path), -1, -1):
        line = lines.get(path[:cut])
        if line:
            return line
    return 0
