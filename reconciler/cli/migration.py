"""`reconciler validate`'s report of what the first start will do with each task: where
its Terraform state will live and whether state is already there (so whether the first
run builds anything again), the provider templates it renders, the deprecated forms it
uses. Pointed at an existing CTS configuration, it is the migration check: it fails when
CTS left state for a task that this daemon would not use.

It looks harder than the daemon does: besides the daemon's own choice it asks CTS's
default Consul (the consul block's address, CONSUL_HTTP_ADDR or localhost:8500) whether it
holds state for a task whose state would be local.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.runner.state import (
    KVReader,
    NoConsulError,
    StateError,
    StatePolicy,
    consul_key,
    consul_resources,
    describe,
    inspect_local,
    place,
)
from reconciler.runner.templates import has_templates
from reconciler.runner.workspace import Workspaces
from reconciler.settings.model import Settings
from reconciler.settings.resolve import default_backend
from reconciler.settings.templates import Env, Key, Node, WithSecret, parse, strings_in
from reconciler.taskfiles.model import TaskSpec


@dataclass(frozen=True)
class PlannedTask:
    spec: TaskSpec
    where: str  # file:line
    base_dir: Path | None


@dataclass
class TaskReport:
    name: str
    where: str
    lines: list[str] = field(default_factory=list)
    abandons_state: bool = False  # CTS left state this daemon would not use


def _template_uses(nodes: Sequence[Node]) -> list[str]:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Env):
            out.append(f'env "{node.name}"')
        elif isinstance(node, Key):
            out.append(f'key "{node.path}" (Consul KV)')
        elif isinstance(node, WithSecret):
            out.append(f'secret "{node.path}" (Vault)')
            out.extend(_template_uses(node.body))
    return out


def _templates(settings: Settings, spec: TaskSpec) -> list[str]:
    providers = {p.id: p for p in settings.terraform_providers}
    lines = []
    for pid in spec.providers or ():
        provider = providers.get(pid)
        if provider is None or not has_templates(provider):
            continue
        uses = [u for s in strings_in(provider.body) if "{{" in s for u in _template_uses(parse(s))]
        lines.append(
            f"provider {pid} ({provider.location}): templates rendered at init, kept out of "
            f"files: {', '.join(dict.fromkeys(uses))}"
        )
    return lines


def _deprecated(spec: TaskSpec) -> list[str]:
    out = []
    if spec.services:
        what = "as its condition" if spec.condition is None else "as a services module input"
        out.append(
            f"deprecated services list [{', '.join(spec.services)}]: watched {what}, as CTS does"
        )
    return out


async def report_task(
    settings: Settings, workspaces: Workspaces, task: PlannedTask, kv: KVReader | None
) -> TaskReport:
    spec = task.spec
    out = TaskReport(spec.name, task.where)
    directory = workspaces.directory_for(spec, task.base_dir or Path.cwd())
    policy = workspaces.policy
    try:
        placement = await place(policy, directory, spec.name, kv)
    except StateError as exc:
        out.lines.append(f"state: REFUSED at start: {exc.message}")
        out.abandons_state = True
        return _finish(settings, spec, out)
    out.lines.append(f"state: {describe(placement)}")
    if placement.warning:
        out.lines.append(f"warning: {placement.warning}")
    held = inspect_local(directory, spec.name).holding if placement.kind == "local" else None
    if placement.kind == "consul" and kv is not None:
        found = await _consul_state(kv, consul_key(placement.backend["consul"], spec.name))
        out.lines.append(_first_run(found))
    elif placement.kind == "local":
        count = None if held is None else (held.resources if held.resources is not None else 1)
        out.lines.append(_first_run(count if held is not None else None))
        if policy.configured is None and kv is not None:
            # CTS kept state in its default Consul; would this daemon leave it behind?
            cts = dict(default_backend(settings.consul)["consul"])
            left = await _consul_state(kv, consul_key(cts, spec.name))
            if isinstance(left, int) and left > 0:
                out.lines.append(
                    f"ERROR: CTS's default Consul ({cts['address']}) holds state for this task "
                    f"({left} resources) that this daemon would not use: its first run would "
                    "build them again. Configure the consul block (or CONSUL_HTTP_ADDR) for "
                    "that Consul, without a catalog block."
                )
                out.abandons_state = True
    else:
        out.lines.append("first run: plans against whatever the configured backend holds")
    return _finish(settings, spec, out)


def _finish(settings: Settings, spec: TaskSpec, out: TaskReport) -> TaskReport:
    out.lines.extend(_templates(settings, spec))
    out.lines.extend(_deprecated(spec))
    return out


async def _consul_state(kv: KVReader, key: str) -> int | str | None:
    try:
        return await consul_resources(kv, key)
    except NoConsulError:
        return "no Consul answers there"
    except StateError as exc:
        return exc.message


def _first_run(found: int | str | None) -> str:
    if isinstance(found, str):
        return f"first run: unknown ({found})"
    if found is None:
        return "first run: no state yet: it creates everything the module declares"
    return (
        f"first run: state found ({found} resources): it plans against it, so nothing "
        "already built is created again"
    )


def state_policy(settings: Settings) -> StatePolicy:
    return StatePolicy.from_settings(settings)
