"""Generated task files: one realistic CTS task per file, in nested directories.

Every task is built once as a plain dict in the CTS JSON syntax and rendered twice: as
HCL (with comments, aligned `=`, ~30 lines) for the reconciler, and as JSON for the floor
measurement (reading + `json.loads` of the same documents).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TEAMS = 20
ENVS = ("prod", "staging", "dev", "qa", "perf")
PROVIDERS = ("local", "consul", "aws", "panos", "f5", "fortios")
CONDITION_KINDS = (
    # (kind, weight)
    ("services-names", 50),
    ("services-regexp", 10),
    ("catalog-services", 15),
    ("consul-kv", 15),
    ("schedule", 10),
)

Task = dict[str, Any]


@dataclass(frozen=True)
class Corpus:
    """Where a generated corpus lives, and what is in it."""

    hcl_root: Path
    json_root: Path
    paths: list[str]  # '/'-separated, relative to hcl_root (same stem under json_root)
    tasks: list[Task]

    def __len__(self) -> int:
        return len(self.paths)


def rel_path(i: int, kind: str) -> str:
    team = f"team-{i % TEAMS:02d}"
    env = ENVS[(i // TEAMS) % len(ENVS)]
    return f"{team}/{env}/{kind}-{i:05d}.hcl"


def make_task(i: int, rng: random.Random) -> tuple[str, Task]:
    """(condition kind, task in CTS JSON shape) for task number i."""
    kinds = [k for k, _ in CONDITION_KINDS]
    weights = [w for _, w in CONDITION_KINDS]
    kind = rng.choices(kinds, weights)[0]
    env = ENVS[(i // TEAMS) % len(ENVS)]
    services = [f"svc-{rng.randrange(500):03d}" for _ in range(rng.randint(1, 4))]
    task: Task = {
        "name": f"task-{i:05d}",
        "description": f"Keep {kind} of team {i % TEAMS} in sync ({env}, #{i})",
        "module": f"registry.example.com/team-{i % TEAMS:02d}/sync-{kind}/consul",
        "version": f"{rng.randint(0, 3)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        "providers": rng.sample(PROVIDERS, rng.randint(1, 3)),
        "variables": {
            "environment": env,
            "replicas": rng.randint(1, 9),
            "enable_tls": rng.random() < 0.5,
            "tags": [f"tag-{rng.randrange(50)}" for _ in range(rng.randint(1, 3))],
        },
    }
    condition: dict[str, Any]
    module_input: dict[str, Any] | None = None
    if kind == "services-names":
        condition = {"services": {"names": services, "datacenter": "dc1"}}
        module_input = {"consul-kv": {"path": f"config/{env}/task-{i:05d}", "recurse": True}}
    elif kind == "services-regexp":
        condition = {"services": {"regexp": f"^{services[0]}(-canary)?$", "namespace": "default"}}
    elif kind == "catalog-services":
        condition = {
            "catalog-services": {
                "regexp": f"^team-{i % TEAMS:02d}-.*",
                "node_meta": {"rack": f"r{rng.randrange(8)}"},
                "use_as_module_input": False,
            }
        }
        module_input = {"services": {"names": services}}
    elif kind == "consul-kv":
        condition = {"consul-kv": {"path": f"features/{env}/task-{i:05d}", "recurse": False}}
        module_input = {"services": {"names": services, "datacenter": "dc1"}}
    else:
        condition = {"schedule": {"cron": f"{rng.randrange(60)} {rng.randrange(24)} * * *"}}
        module_input = {"services": {"regexp": f"^{services[0]}$"}}
    task["condition"] = condition
    if module_input is not None:
        task["module_input"] = module_input
    if kind != "schedule":
        task["buffer_period"] = {"enabled": True, "min": f"{rng.randint(1, 9)}s", "max": "30s"}
    return kind, task


# --- HCL rendering ------------------------------------------------------------------------


def _hcl_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # the generated strings need no HCL-specific escaping
    if isinstance(value, list):
        return "[" + ", ".join(_hcl_value(v) for v in value) + "]"
    raise TypeError(f"unsupported value {value!r}")


def _attributes(items: dict[str, Any], indent: str) -> list[str]:
    width = max(len(k) for k in items)
    lines = []
    for key, value in items.items():
        if isinstance(value, dict):
            lines.append(f"{indent}{key.ljust(width)} = {{")
            lines += _attributes(value, indent + "  ")
            lines.append(f"{indent}}}")
        else:
            lines.append(f"{indent}{key.ljust(width)} = {_hcl_value(value)}")
    return lines


def _block(header: str, body: dict[str, Any]) -> list[str]:
    return [f"  {header} {{", *_attributes(body, "    "), "  }"]


def render_hcl(task: Task) -> str:
    """One `task` block with comments, the way people write them (about 30 lines)."""
    simple = {
        k: v
        for k, v in task.items()
        if k not in ("variables", "condition", "module_input", "buffer_period")
    }
    lines = [
        f"# {task['name']}: generated for the reconciler benchmarks.",
        "task {",
        *_attributes(simple, "  "),
        "",
        "  # Passed to the module as Terraform variables.",
        *_attributes({"variables": task["variables"]}, "  "),
        "",
    ]
    for ctype, body in task["condition"].items():
        lines += _block(f'condition "{ctype}"', body)
    for itype, body in task.get("module_input", {}).items():
        lines += ["", "  # Extra input the module reads besides the condition."]
        lines += _block(f'module_input "{itype}"', body)
    if "buffer_period" in task:
        lines += ["", *_block("buffer_period", task["buffer_period"])]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_json(task: Task) -> str:
    return json.dumps({"task": [task]}, indent=2) + "\n"


# --- writing a corpus ---------------------------------------------------------------------


def generate(root: Path, count: int, seed: int = 1) -> Corpus:
    """Write `count` HCL task files under root/hcl and their JSON twins under root/json."""
    rng = random.Random(seed)
    hcl_root, json_root = root / "hcl", root / "json"
    paths: list[str] = []
    tasks: list[Task] = []
    for i in range(count):
        kind, task = make_task(i, rng)
        rel = rel_path(i, kind)
        for base, text in (
            (hcl_root / rel, render_hcl(task)),
            ((json_root / rel).with_suffix(".json"), render_json(task)),
        ):
            base.parent.mkdir(parents=True, exist_ok=True)
            base.write_text(text)
        paths.append(rel)
        tasks.append(task)
    return Corpus(hcl_root, json_root, paths, tasks)
