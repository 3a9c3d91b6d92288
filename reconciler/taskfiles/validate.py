"""Task validation rules (cts-spec 1.4/1.5), shared by task files and the API.

Each finding carries a field path, used by the file loader to find the line, and the
human "where" (`condition "services"`) that prefixes the message.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from reconciler.taskfiles import cron
from reconciler.taskfiles.goregexp import RegexpError, compile_regexp
from reconciler.taskfiles.model import (
    VARIABLE_TYPES,
    CatalogServicesCondition,
    ConsulKVCondition,
    ConsulKVInput,
    ScheduleCondition,
    ServicesCondition,
    ServicesInput,
    TaskSpec,
)

# Task names become file names (<name>.hcl) and directory names: keep them well below
# Linux's 255-byte NAME_MAX, leaving room for suffixes.
MAX_NAME_BYTES = 200


@dataclass(frozen=True)
class Invalid:
    path: tuple[str | int, ...]  # field path, for line lookup: ("condition", "regexp")
    where: tuple[str, ...]  # shown before the message: ('condition "services"',)
    message: str


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
    if spec.services and isinstance(cond, ServicesCondition):
        bad(
            ("services",),
            (),
            'the deprecated "services" list and condition "services" both '
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


def kv_path_problem(path: str) -> str | None:
    """A Consul KV path is sent as /v1/kv/<path>: a "." or ".." segment would be resolved
    on the way and read another endpoint (/v1/acl/tokens) with the daemon's token."""
    if any(part in (".", "..") for part in path.split("/")):
        return f'"path" must not contain "." or ".." segments: "{path}"'
    return None


def _check_regexp(pattern: str) -> str | None:
    """RE2's verdict, as Go's regexp.Compile gives it to CTS."""
    try:
        compile_regexp(pattern)
    except RegexpError as exc:
        return f'"regexp" is not a valid regular expression (RE2 syntax, as in Go): {exc}'
    return None


def _validate_services(
    c: ServicesCondition | ServicesInput, path: tuple[str | int, ...], where: tuple[str, ...]
) -> list[Invalid]:
    out = []
    if c.names is not None and c.regexp is not None:
        out.append(Invalid(path, where, 'set either "names" or "regexp", not both'))
    elif c.names is None and c.regexp is None:
        out.append(Invalid(path, where, 'either "names" or "regexp" must be set'))
    if c.names is not None:
        if not c.names:
            out.append(Invalid((*path, "names"), where, '"names" must list at least one service'))
        if any(not n for n in c.names):
            out.append(Invalid((*path, "names"), where, '"names" must not contain empty strings'))
    if c.regexp is not None:
        problem = _check_regexp(c.regexp)
        if problem:
            out.append(Invalid((*path, "regexp"), where, problem))
    return out


def _validate_condition(cond: object) -> list[Invalid]:
    path: tuple[str | int, ...] = ("condition",)
    if isinstance(cond, ServicesCondition):
        return _validate_services(cond, path, ('condition "services"',))
    if isinstance(cond, CatalogServicesCondition):
        where = ('condition "catalog-services"',)
        if cond.regexp is None:
            return [Invalid(path, where, '"regexp" must be set')]
        problem = _check_regexp(cond.regexp)
        return [Invalid((*path, "regexp"), where, problem)] if problem else []
    if isinstance(cond, ConsulKVCondition):
        if not cond.path:
            return [Invalid(path, ('condition "consul-kv"',), '"path" is required')]
        problem = kv_path_problem(cond.path)
        return [Invalid((*path, "path"), ('condition "consul-kv"',), problem)] if problem else []
    if isinstance(cond, ScheduleCondition):
        where = ('condition "schedule"',)
        if not cond.cron:
            return [Invalid(path, where, '"cron" is required')]
        problem = cron.check(cond.cron)
        return [Invalid((*path, "cron"), where, problem)] if problem else []
    return []


def _validate_inputs(spec: TaskSpec) -> list[Invalid]:
    out: list[Invalid] = []
    cond_var = VARIABLE_TYPES.get(spec.condition.type, "") if spec.condition else ""
    seen: set[str] = set()
    for i, mi in enumerate(spec.module_inputs):
        path: tuple[str | int, ...] = ("module_input", i)
        where = (f'module_input "{mi.type}"',)
        var = VARIABLE_TYPES[mi.type]
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
                    '"services" both monitor the services variable',
                )
            )
        if isinstance(mi, ServicesInput):
            out.extend(_validate_services(mi, path, where))
        elif isinstance(mi, ConsulKVInput):
            if not mi.path:
                out.append(Invalid(path, where, '"path" is required'))
            elif problem := kv_path_problem(mi.path):
                out.append(Invalid((*path, "path"), where, problem))
    return out
