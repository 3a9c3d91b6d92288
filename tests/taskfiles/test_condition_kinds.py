"""The table of condition kinds (reconciler.taskfiles.conditions) is the one place a kind is
described: every kind in it goes through task files, the API, the API's representation and
the OpenAPI document by its entry alone, and a kind added to the table works everywhere
without another module knowing it."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from reconciler.api.decoding import decode_task_request
from reconciler.api.encoding import task_request
from reconciler.api.openapi import CREATE_EXAMPLES
from reconciler.api.representation import task_object
from reconciler.api.schemas import SCHEMAS, ref
from reconciler.taskfiles import hcl
from reconciler.taskfiles.conditions import (
    CONDITION_API_KINDS,
    CONDITION_KINDS,
    INPUT_KINDS,
    KINDS,
    Kind,
)
from reconciler.taskfiles.conditions.base import Field
from reconciler.taskfiles.model import GlobalDefaults, TaskSpec
from reconciler.taskfiles.tasks import decode_task
from reconciler.taskfiles.validate import validate_task
from reconciler.taskfiles.write import checked_render, render_task

ROOT = Path(__file__).resolve().parents[2]
_SAMPLE = {"str": "x", "bool": True, "list": ("b", "a"), "map": {"k": "v"}}


def _every_field(cls: type[Any], fields: tuple[Field, ...]) -> Any:
    return cls(**{f.name: _SAMPLE[f.type] for f in fields})


def _items(kind: Kind) -> list[Any]:
    """A condition, and a module_input where the kind has one, with every field set."""
    out = [_every_field(kind.condition, kind.condition_fields)]
    if kind.module_input is not None:
        out.append(_every_field(kind.module_input, kind.input_fields))
    return out


def _spec(kind: Kind) -> TaskSpec:
    items = _items(kind)
    return TaskSpec(name="t", module="./m", condition=items[0], module_inputs=tuple(items[1:]))


def _decoded(text: str) -> TaskSpec:
    [block] = hcl.parse(text.encode(), "t.hcl").blocks
    decoded, problems = decode_task(block, "t.hcl", [])
    assert problems == []
    return decoded.spec


ids = [k.name for k in KINDS]


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_the_fields_are_the_dataclasses_fields(kind: Kind) -> None:
    # The writer, the parse cache and the encoder go by the dataclass; decoders by the
    # fields: both must list the same fields in the same order.
    pairs = [(kind.condition, kind.condition_fields)]
    if kind.module_input is not None:
        pairs.append((kind.module_input, kind.input_fields))
    for cls, fields in pairs:
        names = [f.name for f in dataclasses.fields(cls)]
        assert names == ["type", *(f.name for f in fields)]
        assert cls().type == kind.name
    assert kind.api_name == kind.name.replace("-", "_")
    assert CONDITION_KINDS[kind.name] is kind and CONDITION_API_KINDS[kind.api_name] is kind
    assert (kind.name in INPUT_KINDS) == (kind.module_input is not None)


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_every_field_round_trips_through_a_task_file_and_the_api(kind: Kind) -> None:
    spec = _spec(kind)
    text = render_task(spec)
    assert f'condition "{kind.name}" {{' in text
    assert _decoded(text) == spec
    body = json.loads(json.dumps(task_request(spec)))
    assert kind.api_name in body["task"]["condition"]
    assert decode_task_request(body) == spec


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_the_representation_shows_every_field_with_its_default(kind: Kind) -> None:
    unset = TaskSpec(name="t", module="./m", condition=kind.condition())
    shown = task_object(unset, GlobalDefaults())["condition"]
    assert list(shown) == [kind.api_name]
    fields = {f.name: f for f in kind.condition_fields}
    assert set(shown[kind.api_name]) <= set(fields)
    for name, value in shown[kind.api_name].items():
        assert value == fields[name].show(None)
    full = task_object(_spec(kind), GlobalDefaults())
    assert list(full["condition"]) == [kind.api_name]
    if kind.module_input is not None:
        assert list(full["module_input"]) == [kind.api_name]


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_the_openapi_schema_describes_the_kind(kind: Kind) -> None:
    assert SCHEMAS["Condition"]["properties"][kind.api_name] == ref(kind.condition_schema)
    schema = SCHEMAS[kind.condition_schema]
    assert list(schema["properties"]) == [f.name for f in kind.condition_fields]
    assert schema.get("required", []) == [f.name for f in kind.condition_fields if f.required]
    if kind.module_input is not None:
        assert SCHEMAS["ModuleInput"]["properties"][kind.api_name] == ref(kind.input_schema)
        assert list(SCHEMAS[kind.input_schema]["properties"]) == [f.name for f in kind.input_fields]
    else:
        assert kind.api_name not in SCHEMAS["ModuleInput"]["properties"]


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_the_kinds_example_is_a_valid_task(kind: Kind) -> None:
    example = CREATE_EXAMPLES[kind.api_name]
    spec = decode_task_request(example)
    assert spec.condition is not None and spec.condition.type == kind.name
    assert validate_task(spec) == []
    assert _decoded(checked_render(spec).decode()) == spec


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_what_the_kind_reads_matches_its_variable(kind: Kind) -> None:
    for item in _items(kind):
        reads = {
            "services": kind.services(item),
            "catalog_services": kind.catalog_services(item),
            "consul_kv": kind.consul_kv(item),
        }
        assert [v for v, read in reads.items() if read is not None] == (
            [kind.variable] if kind.variable else []
        )
    assert (kind.trigger == "schedule") == (kind.cron(_items(kind)[0]) is not None)


_KIND_CLASSES = {
    cls.__name__ for kind in KINDS for cls in (kind.condition, kind.module_input) if cls is not None
}


def test_no_module_outside_the_kinds_dispatches_on_a_kind_class() -> None:
    """`isinstance(x, ServicesCondition)` outside the kind modules would be a second place
    that knows the kinds."""
    found = []
    for path in sorted((ROOT / "reconciler").rglob("*.py")):
        if "conditions" in path.relative_to(ROOT / "reconciler").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "isinstance"
                and len(node.args) == 2
            ):
                names = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
                if names & _KIND_CLASSES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


# A kind that exists only here: a module of its own and an entry in the table, then every
# layer uses it. It runs in a fresh interpreter, since the table is read at import.
_NEW_KIND = """
from dataclasses import dataclass
from typing import Any, Literal, Never

from reconciler.taskfiles import conditions
from reconciler.taskfiles.conditions.base import (
    DATACENTER, ConditionKind, Field, Invalid, KVSelection,
)
from reconciler.taskfiles.conditions.consul_kv import ConsulKVInput


@dataclass(frozen=True)
class KVFlagCondition:
    type: Literal["kv-flag"] = "kv-flag"
    key: str | None = None
    datacenter: str | None = None


class KVFlagKind(ConditionKind[KVFlagCondition, Never]):
    name = "kv-flag"
    api_name = "kv_flag"
    condition = KVFlagCondition
    condition_fields = (Field("key", "str", required=True, description="The flag."), DATACENTER)
    condition_schema = "KVFlagCondition"
    variable = "consul_kv"
    trigger = "consul"
    example = {"name": "flag", "module": "./m", "condition": {"kv_flag": {"key": "f"}}}

    def validate(self, item, path, where):
        return [] if item.key else [Invalid(path, where, '"key" is required')]

    def summary(self, shown):
        return shown["key"]

    def consul_kv(self, item) -> KVSelection:
        return ConsulKVInput(path=f"flags/{item.key}", datacenter=item.datacenter)


# The table's entry.
KV_FLAG = KVFlagKind()
conditions.KINDS += (KV_FLAG,)
conditions.CONDITION_KINDS[KV_FLAG.name] = KV_FLAG
conditions.CONDITION_API_KINDS[KV_FLAG.api_name] = KV_FLAG

import asyncio
import json

from reconciler.api.decoding import decode_task_request
from reconciler.api.encoding import task_request
from reconciler.api.openapi import CREATE_EXAMPLES
from reconciler.api.representation import task_object
from reconciler.api.schemas import SCHEMAS
from reconciler.cli.task import condition_summary
from reconciler.registry.store import LiveTask
from reconciler.runner.inputs import kv_query
from reconciler.taskfiles.load import load_task_file
from reconciler.taskfiles.model import GlobalDefaults, Provenance
from reconciler.taskfiles.write import checked_render
from reconciler.triggers.consul import ConsulSource

text = (
    b'task {\\n  name   = "flag"\\n  module = "./m"\\n\\n'
    b'  condition "kv-flag" {\\n    key = "f"\\n  }\\n}\\n'
)
loaded = load_task_file(text, "flag.hcl")
assert not loaded.problems, loaded.problems
spec = loaded.tasks[0].spec
assert spec.condition == KVFlagCondition(key="f")
assert checked_render(spec) == text
bad = load_task_file(text.replace(b'key = "f"', b'key = ""'), "flag.hcl")
assert [str(p) for p in bad.problems] == [
    'flag.hcl:5: task "flag": condition "kv-flag": "key" is required'
], bad.problems
unknown = load_task_file(text.replace(b'key = "f"', b"nope = 1"), "flag.hcl")
assert 'invalid key "nope"' in str(unknown.problems[0])

body = task_request(spec)
assert body == {"task": {"name": "flag", "module": "./m", "condition": {"kv_flag": {"key": "f"}}}}
assert decode_task_request(body) == spec
shown = task_object(spec, GlobalDefaults())
assert shown["condition"] == {"kv_flag": {"datacenter": "", "key": "f"}}
assert condition_summary(shown["condition"]) == "kv-flag: f"

assert SCHEMAS["Condition"]["description"] == "What triggers the task: exactly one of the five."
assert SCHEMAS["KVFlagCondition"]["required"] == ["key"]
assert decode_task_request(CREATE_EXAMPLES["kv_flag"]).condition == KVFlagCondition(key="f")

assert kv_query(spec) == ConsulKVInput(path="flags/f")


class Watchers:
    subscribed = []

    def subscribe(self, query, callback, *, project=None, on_error=None):
        self.subscribed.append(query.id)


async def trigger():
    source = ConsulSource(Watchers())
    assert source.owns_start(spec)
    source.track(LiveTask(spec, Provenance("flag.hcl", 1, "r"), "directory"))
    assert Watchers.subscribed == ["kv(flags/f)"], Watchers.subscribed


asyncio.run(trigger())
print("ok")
"""


def test_a_kind_added_to_the_table_works_in_every_layer(tmp_path: Path) -> None:
    script = tmp_path / "new_kind.py"
    script.write_text(textwrap.dedent(_NEW_KIND))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"
