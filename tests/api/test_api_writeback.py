"""API changes are file changes: what each call writes, and what it never touches."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

import pytest
from apikit import Core, assert_error, running_core
from helpers import async_wait_for, write_atomic

from reconciler.api.representation import task_object
from reconciler.taskfiles.load import load_task_file
from reconciler.taskfiles.model import (
    BufferPeriodConfig,
    ConsulKVInput,
    GlobalDefaults,
    ServicesCondition,
    TaskSpec,
)

pytestmark = pytest.mark.anyio

MINIMAL = {"name": "web", "module": "./mod", "condition": {"services": {"names": ["web"]}}}

HAND_WRITTEN = """\
# Tasks of the payments team.
task {
  name   = "a"
  module = "./mod" # the shared module
  condition "services" {
    names = ["a"]
  }
}

# b feeds the load balancer.
task {
  name    = "b"
  enabled = true  # keep on
  module  = "./mod"
  condition "services" {
    names = ["b"]
  }
}

task {
  name   = "c"
  module = "./mod"
  condition "services" { names = ["c"] }
}
"""


def diff(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def only_spec(path: Path) -> TaskSpec:
    loaded = load_task_file(path.read_bytes(), path.name)
    assert not loaded.problems, loaded.problems
    assert len(loaded.tasks) == 1
    return loaded.tasks[0].spec


async def test_post_writes_exactly_the_sent_fields(core: Core) -> None:
    response = await core.post_task(MINIMAL)
    assert response.status_code == 201, response.text
    path = core.root / "web.hcl"
    text = path.read_text()
    assert only_spec(path) == TaskSpec(
        name="web", module="./mod", condition=ServicesCondition(names=("web",))
    )
    for absent in ("enabled", "description", "buffer_period", "providers", "variables"):
        assert absent not in text
    live = core.registry.get("web")
    assert live is not None and live.provenance.file == "tasks/web.hcl"
    assert response.json()["task"] == task_object(live.spec, GlobalDefaults())
    core.assert_files_agree()


async def test_post_with_every_field(core: Core) -> None:
    task = {
        "name": "full",
        "description": "all of it",
        "enabled": False,
        "module": "org/mod/aws",
        "version": "1.2.0",
        "providers": ["aws", "local.alias"],
        "variables": {
            "count": "3",
            "label": '"blue"',
            "tags": '["a", "b"]',
            "obj": "{ a = 1, b = { c = true } }",
            "nothing": "null",
        },
        "buffer_period": {"min": "10s"},
        "condition": {
            "services": {
                "regexp": "^web",
                "datacenter": "dc1",
                "namespace": "ns",
                "filter": 'Service.Tags contains "x"',
                "cts_user_defined_meta": {"team": "pay"},
                "use_as_module_input": False,
            }
        },
        "module_input": {"consul_kv": {"path": "cfg/", "recurse": True}},
    }
    response = await core.post_task(task)
    assert response.status_code == 201, response.text
    spec = only_spec(core.root / "full.hcl")
    assert spec.variables == {
        "count": 3,
        "label": "blue",
        "tags": ["a", "b"],
        "obj": {"a": 1, "b": {"c": True}},
        "nothing": None,
    }
    assert spec.buffer_period == BufferPeriodConfig(min=10_000_000_000)
    assert spec.module_inputs == (ConsulKVInput(path="cfg/", recurse=True),)
    shown = response.json()["task"]
    assert shown["variables"] == {
        "count": "3",
        "label": '"blue"',
        "tags": '["a", "b"]',
        "obj": "{ a = 1, b = { c = true } }",
        "nothing": "null",
    }
    assert shown["buffer_period"] == {"enabled": True, "min": "10s", "max": "40s"}
    assert shown["condition"]["services"]["regexp"] == "^web"
    assert "names" not in shown["condition"]["services"]
    assert shown["module_input"] == {
        "consul_kv": {"datacenter": "", "namespace": "", "path": "cfg/", "recurse": True}
    }
    core.assert_files_agree()


async def test_existing_file_is_never_overwritten(core: Core) -> None:
    # The file web.hcl exists but defines another task: creating "web" must not replace it.
    other = (
        'task {\n  name = "other"\n  module = "./m"\n  condition "services" { names = ["o"] }\n}\n'
    )
    write_atomic(core.root / "web.hcl", other)
    await async_wait_for(lambda: "other" in core.registry, what="hand-written task")
    assert_error(await core.post_task(MINIMAL), 400, "already exists")
    assert (core.root / "web.hcl").read_text() == other
    assert "web" not in core.registry
    # A name already live elsewhere is a duplicate too.
    assert_error(await core.post_task({**MINIMAL, "name": "other"}), 400, "already exists")
    core.assert_files_agree()


async def test_patch_changes_only_the_enabled_line(core: Core) -> None:
    path = core.root / "team.hcl"
    write_atomic(path, HAND_WRITTEN)
    await async_wait_for(lambda: len(core.registry) == 3, what="hand-written tasks")

    response = await core.client.patch("/v1/tasks/b", json={"enabled": False})
    assert response.status_code == 200 and response.json() == {}
    after = path.read_text()
    removed, added = diff(HAND_WRITTEN, after)
    assert removed == "-  enabled = true  # keep on"
    assert re.fullmatch(r"\+  enabled = false +# keep on", added), added
    assert core.registry.get("b").spec.enabled is False  # type: ignore[union-attr]

    # A task without an enabled line gets exactly one new line.
    before = after
    response = await core.client.patch("/v1/tasks/a", json={"enabled": False})
    assert response.status_code == 200
    changes = diff(before, path.read_text())
    assert len(changes) == 1 and changes[0].startswith("+") and "enabled" in changes[0]
    assert core.registry.get("a").spec.enabled is False  # type: ignore[union-attr]
    core.assert_files_agree()


async def test_patch_weak_typing_and_idempotence(core: Core) -> None:
    assert (await core.post_task(MINIMAL)).status_code == 201
    for value, expected in (("false", False), (1, True), ("0", False), ("t", True)):
        response = await core.client.patch("/v1/tasks/web", json={"enabled": value})
        assert response.status_code == 200, response.text
        assert core.registry.get("web").spec.enabled is expected  # type: ignore[union-attr]
    before = (core.root / "web.hcl").read_bytes()
    assert (await core.client.patch("/v1/tasks/web", json={"enabled": True})).status_code == 200
    assert (core.root / "web.hcl").read_bytes() == before


async def test_delete_removes_the_block_or_the_file(core: Core) -> None:
    path = core.root / "team.hcl"
    write_atomic(path, HAND_WRITTEN)
    await async_wait_for(lambda: len(core.registry) == 3, what="hand-written tasks")

    assert (await core.client.delete("/v1/tasks/b")).status_code == 202
    text = path.read_text()
    assert 'name    = "b"' not in text and "load balancer" not in text
    assert "# Tasks of the payments team." in text and 'name   = "c"' in text
    assert sorted(core.registry.names()) == ["a", "c"]

    assert (await core.post_task(MINIMAL)).status_code == 201
    assert (await core.client.delete("/v1/tasks/web")).status_code == 202
    assert not (core.root / "web.hcl").exists()
    core.assert_files_agree()


async def test_broken_file_is_a_conflict(core: Core) -> None:
    path = core.root / "team.hcl"
    write_atomic(path, HAND_WRITTEN)
    await async_wait_for(lambda: len(core.registry) == 3, what="hand-written tasks")
    write_atomic(path, HAND_WRITTEN.replace('names = ["c"] }', 'names = ["c"'))
    await async_wait_for(
        lambda: "tasks/team.hcl" in core.reconciler.problems(), what="the file's problem"
    )
    broken = path.read_bytes()

    message = assert_error(
        await core.client.patch("/v1/tasks/b", json={"enabled": False}),
        409,
        "tasks/team.hcl",
        "syntax error",
    )
    assert "b" in message
    assert_error(await core.client.delete("/v1/tasks/a"), 409, "tasks/team.hcl")
    assert path.read_bytes() == broken
    # The tasks keep running their last good definition.
    assert sorted(core.registry.names()) == ["a", "b", "c"]


async def test_file_broken_after_the_last_reconcile_is_a_conflict(task_dir: Path) -> None:
    """A hand edit not reconciled yet (no watcher here) is found by the editor itself."""
    path = task_dir / "team.hcl"
    path.write_text(HAND_WRITTEN)
    async with running_core(task_dir, watch=False) as core:
        assert len(core.registry) == 3
        path.write_text(HAND_WRITTEN + "garbage {")
        assert_error(
            await core.client.patch("/v1/tasks/a", json={"enabled": False}), 409, "team.hcl"
        )
        assert_error(await core.client.delete("/v1/tasks/a"), 409, "team.hcl")
        assert path.read_text() == HAND_WRITTEN + "garbage {"


@pytest.mark.parametrize(
    "name",
    [
        "x" * 300,
        "../x",
        "a/b",
        "..",
        ".hidden",
        "",
        "with space",
        "a\x00b",
        "-dash",
        "9lives",
    ],
)
async def test_bad_names_write_nothing(core: Core, name: str) -> None:
    response = await core.post_task({**MINIMAL, "name": name})
    assert_error(response, 400, "name")
    assert list(core.root.parent.rglob("*.hcl")) == []
    assert len(core.registry) == 0


async def test_unicode_names_and_values(core: Core) -> None:
    task = {**MINIMAL, "name": "tâche_ü", "description": "  snow ☃, emoji 🎉, nul \x00, ${x}\t"}
    response = await core.post_task(task)
    assert response.status_code == 201, response.text
    assert response.json()["task"]["description"] == task["description"]
    assert only_spec(core.root / "tâche_ü.hcl").description == task["description"]
    core.assert_files_agree()


async def test_patch_of_any_field_changes_only_its_bytes(core: Core) -> None:
    path = core.root / "team.hcl"
    write_atomic(path, HAND_WRITTEN)
    await async_wait_for(lambda: len(core.registry) == 3, what="hand-written tasks")
    response = await core.client.patch(
        "/v1/tasks/b",
        json={
            "description": "feeds the LB",
            "condition": {"services": {"names": ["b", "b2"]}},
            "buffer_period": {"enabled": True, "min": "5s", "max": "20s"},
        },
    )
    assert response.status_code == 200, response.text
    after = path.read_text()
    changed = diff(HAND_WRITTEN, after)
    assert [line for line in changed if line.startswith("-")] == ['-    names = ["b"]']
    assert sorted(line for line in changed if line.startswith("+")) == sorted(
        [
            '+  description = "feeds the LB"',
            '+    names = ["b", "b2"]',
            "+",
            "+  buffer_period {",
            "+    enabled = true",
            '+    min     = "5s"',
            '+    max     = "20s"',
            "+  }",
        ]
    )
    live = core.registry.get("b")
    assert live is not None and live.spec.description == "feeds the LB"
    assert live.spec.condition == ServicesCondition(names=("b", "b2"))
    # null removes an optional field, with its line.
    response = await core.client.patch("/v1/tasks/b", json={"description": None})
    assert response.status_code == 200, response.text
    assert '"feeds the LB"' not in path.read_text()
    assert "# b feeds the load balancer." in path.read_text()
    core.assert_files_agree()


async def test_patch_that_does_not_validate_or_renames_changes_nothing(core: Core) -> None:
    assert (await core.post_task(MINIMAL)).status_code == 201
    path = core.root / "web.hcl"
    before = path.read_bytes()
    for body, fragment in (
        ({"name": "other"}, "unsupported keys: name"),
        ({"module": 3}, "must be a string"),
        ({"condition": {"services": {"names": ["a"], "regexp": "b"}}}, "names"),
        ({"enabled": "maybe", "description": "x"}, "cannot parse"),
        ({"variables": {"x": "not hcl {"}}, "HCL literal"),
        ({"module_input": {"nope": {}}}, "nope"),
    ):
        assert_error(await core.client.patch("/v1/tasks/web", json=body), 400, fragment)
    assert path.read_bytes() == before


async def test_patch_of_a_json_task_file_beyond_enabled_is_refused(core: Core) -> None:
    path = core.root / "j.hcl.json"
    path.write_text(
        '{"task": [{"name": "j", "module": "./mod", "condition": {"services": {"names": ["a"]}}}]}'
    )
    await async_wait_for(lambda: "j" in core.registry, what="the JSON task")
    before = path.read_bytes()
    assert_error(
        await core.client.patch("/v1/tasks/j", json={"description": "x"}), 409, "JSON task file"
    )
    assert path.read_bytes() == before
    assert (await core.client.patch("/v1/tasks/j", json={"enabled": False})).status_code == 200
