"""One configuration file -> its partial settings and its repeatable blocks."""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler._core.errors import Location, Problem
from reconciler.settings.files import ConfigFile
from reconciler.settings.model import (
    ConfiguredTask,
    ServiceSettings,
    SourceSettings,
    TerraformProviderSettings,
)
from reconciler.settings.partial import Partial, body_to_dict, decode_block
from reconciler.settings.resolve import backend_type_problems
from reconciler.settings.schema import SERVICE, TOP
from reconciler.settings.sources import decode_source
from reconciler.settings.templates import TemplateSyntaxError, has_template, strings_in
from reconciler.settings.templates import parse as parse_template
from reconciler.taskfiles.decode import BodyReader
from reconciler.taskfiles.hcl import Block, Body
from reconciler.taskfiles.tasks import decode_tasks

SERVICE_DEPRECATED = (
    "the 'service' block is deprecated (CTS 0.5.0): list the services in the task's "
    'condition "services" or module_input "services" block and move these settings there'
)
DRIVER_WORKING_DIR_DEPRECATED = (
    'driver "terraform" working_dir is deprecated (CTS 0.3.0): use the top-level working_dir'
)


@dataclass
class DecodedFile:
    file: str
    top: Partial
    providers: list[TerraformProviderSettings] = field(default_factory=list)
    services: list[ServiceSettings] = field(default_factory=list)
    sources: list[SourceSettings] = field(default_factory=list)
    tasks: list[ConfiguredTask] = field(default_factory=list)


def decode_file(
    body: Body, file: ConfigFile, problems: list[Problem], warnings: list[Problem]
) -> DecodedFile:
    r = BodyReader(body, file=file.name, where=(), problems=problems, line=1)
    # Repeatable blocks are asked for before the generic decoder reports unknown keys.
    providers = [_provider(r, b, warnings) for b in r.blocks("terraform_provider", labels=1)]
    services = [_service(r, b, file, warnings) for b in r.blocks("service")]
    sources = [decode_source(r, b, file.directory) for b in r.blocks("source", labels=1)]
    task_blocks = r.blocks("task")
    top = decode_block(r, TOP, file.directory)

    driver = top.block("driver")
    for problem in backend_type_problems(driver.get("backend") or {}):
        problems.append(Problem(problem, ('driver "terraform"',), driver.loc("backend")))
    if driver.has("working_dir"):
        warnings.append(
            Problem(
                DRIVER_WORKING_DIR_DEPRECATED, ('driver "terraform"',), driver.loc("working_dir")
            )
        )

    decoded = decode_tasks(task_blocks, file.name)
    problems.extend(decoded.problems)
    warnings.extend(decoded.warnings)
    return DecodedFile(
        file=file.name,
        top=top,
        providers=[p for p in providers if p is not None],
        services=[s for s in services if s is not None],
        sources=[s for s in sources if s is not None],
        tasks=[ConfiguredTask(t.spec, file.name, t.line) for t in decoded.tasks],
    )


def _provider(
    r: BodyReader, block: Block, warnings: list[Problem]
) -> TerraformProviderSettings | None:
    name = block.labels[0]
    before = len(r.problems)
    cr = r.child(block, f'terraform_provider "{name}"')
    body = body_to_dict(cr)
    if "alias" in body and (not isinstance(body["alias"], str) or not body["alias"]):
        cr.error('"alias" must be a non-empty string', cr.line_of("alias"))
    env = body.get("task_env")
    if "task_env" in body and not (
        isinstance(env, dict) and all(isinstance(v, str) for v in env.values())
    ):
        cr.error('"task_env" must be a map of strings', cr.line_of("task_env"))
    if "auto_commit" in body and not isinstance(body["auto_commit"], bool):
        cr.error('"auto_commit" must be a bool (true or false)', cr.line_of("auto_commit"))
    elif body.get("auto_commit") is True:
        warnings.append(
            Problem(
                '"auto_commit" is not supported and has no effect: no PAN-OS commit is '
                "made after an apply; commit with the provider's own resource or by hand",
                (f'terraform_provider "{name}"',),
                Location(r.file, cr.line_of("auto_commit")),
            )
        )
    for key, value in body.items():
        for text in strings_in(value):
            if not has_template(text):
                continue
            try:
                parse_template(text)
            except TemplateSyntaxError as exc:
                cr.error(f'"{key}": {exc.message}', cr.line_of(key))
    if len(r.problems) != before:
        return None
    lines = {key: cr.line_of(key) for key in body}
    return TerraformProviderSettings(name, body, Location(r.file, block.line), lines)


def _service(
    r: BodyReader, block: Block, file: ConfigFile, warnings: list[Problem]
) -> ServiceSettings | None:
    before = len(r.problems)
    cr = r.child(block, "service")
    p = decode_block(cr, SERVICE, file.directory)
    at = Location(r.file, block.line)
    warnings.append(Problem(SERVICE_DEPRECATED, ("service",), at))
    name = p.get("name")
    if not name:
        cr.error("logical name for the Consul service is required", block.line)
    if len(r.problems) != before:
        return None
    return ServiceSettings(
        name=name,
        id=p.get("id") or name,
        description=p.get("description", ""),
        datacenter=p.get("datacenter", ""),
        namespace=p.get("namespace", ""),
        filter=p.get("filter", ""),
        cts_user_defined_meta=p.get("cts_user_defined_meta", {}),
        location=at,
    )
