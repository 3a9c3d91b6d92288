"""Task validation rules (cts-spec 1.4/1.5), shared by task files and the API.

Each finding carries a field path, used by the file loader to find the line, and the
human "where" (`condition "services"`) that prefixes the message.
"""

from __future__ import annotations

import unicodedata

from reconciler.taskfiles.conditions import Condition, kind_of
from reconciler.taskfiles.conditions.base import Invalid
from reconciler.taskfiles.model import TaskSpec

__all__ = ["MAX_NAME_BYTES", "Invalid", "name_problem", "valid_identifier", "validate_task"]

# Task names become file names (<name>.hcl) and directory names: keep them well below
# Linux's 255-byte NAME_MAX, leaving room for suffixes.
MAX_NAME_BYTES = 200


def valid_identifier(name: str) -> bool:
    """hclsyntax.ValidIdentifier: a letter or _, then letters, digits, _ or -."""
    if not name:
        return False
    first = name[0]
    if not (first == "_" or unicodedata.category(first).startswith("L")):
        return False
    return all(
        ch in "_-" or unicodedata.category(ch)[0] in ("L", "N") or unicodedata.category(ch) == "Mn"
        for ch in name[1:]
    )


def name_problem(name: str | None) -> str | None:
    if not name:
        return '"name" is required'
    if not valid_identifier(name):
        return (
            f'name "{name}" is not a valid identifier: start with a letter or "_", then use '
            'letters, digits, "_" or "-"'
        )
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"name is longer than {MAX_NAME_BYTES} bytes"
    return None


def validate_task(spec: TaskSpec) -> list[Invalid]:
    out: list[Invalid] = []

    def bad(path: tuple[str | int, ...], where: tuple[str, ...], message: str) -> None:
        out.append(Invalid(path, where, message))

    problem = name_problem(spec.name)
    if problem:
        bad(("name",), (), problem)
    cond = spec.condition
    if cond is None and not spec.services:
        bad((), (), 'a condition block is required, e.g. condition "services" { names = [...] }')
    if spec.services and cond is not None and kind_of(cond).variable == "services":
        bad(
            ("services",),
            (),
            f'the deprecated "services" list and condition "{cond.type}" both '
            "monitor the services variable; remove the services list",
        )
    if not spec.module:
        bad(("module",), (), '"module" is required')
    if spec.terraform_version:
        bad(
            ("terraform_version",),
            (),
            '"terraform_version" is an Enterprise feature: '
            "unsupported configuration (available with Consul-Terraform-Sync Enterprise)",
        )
    if spec.terraform_cloud_workspace:
        bad(
            ("terraform_cloud_workspace",),
            (),
            '"terraform_cloud_workspace" is an Enterprise '
            "feature: unsupported configuration (available with Consul-Terraform-Sync Enterprise)",
        )
    seen: dict[str, str] = {}
    for provider in spec.providers or ():
        base = provider.split(".", 1)[0]
        if base in seen:
            bad(
                ("providers",),
                (),
                f'only one provider instance per task: "{seen[base]}" and '
                f'"{provider}" are both instances of provider "{base}"',
            )
        seen.setdefault(base, provider)
    for var in spec.variables or {}:
        if not valid_identifier(var):
            # They become Terraform input variables of the task's module.
            bad(
                ("variables",),
                (),
                f'"{var}" is not a valid variable name: start with a '
                'letter or "_", then use letters, digits, "_" or "-"',
            )
    if cond is not None:
        out.extend(_validate_condition(cond))
    out.extend(_validate_inputs(spec))
    bp = spec.buffer_period
    if bp is not None:
        for key, value in (("min", bp.min), ("max", bp.max)):
            if value is not None and value < 0:
                bad(("buffer_period", key), ("buffer_period",), f'"{key}" cannot be negative')
    return out


def _validate_condition(cond: Condition) -> list[Invalid]:
    return kind_of(cond).validate(cond, ("condition",), (f'condition "{cond.type}"',))


def _validate_inputs(spec: TaskSpec) -> list[Invalid]:
    out: list[Invalid] = []
    cond_var = kind_of(spec.condition).variable if spec.condition else ""
    seen: set[str] = set()
    for i, mi in enumerate(spec.module_inputs):
        path: tuple[str | int, ...] = ("module_input", i)
        where = (f'module_input "{mi.type}"',)
        kind = kind_of(mi)
        var = kind.variable
        if var in seen:
            out.append(
                Invalid(
                    path,
                    where,
                    f'more than one module_input block for the "{var}" variable; keep one',
                )
            )
        seen.add(var)
        if var == cond_var:
            out.append(
                Invalid(
                    path,
                    where,
                    f"the condition block and this module_input both "
                    f'monitor the "{var}" variable; remove one',
                )
            )
        if var == "services" and spec.services:
            out.append(
                Invalid(
                    path,
                    where,
                    'the deprecated "services" list and module_input '
                    f'"{mi.type}" both monitor the services variable',
                )
            )
        out.extend(kind.validate(mi, path, where))
    return out
