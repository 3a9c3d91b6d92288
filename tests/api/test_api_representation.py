"""The task object: defaults, effective buffer periods, variables as HCL literal source."""

from __future__ import annotations

from typing import Any

import pytest
from apikit import SECOND, Core
from helpers import async_wait_for, task_hcl, write_atomic
from hypothesis import given, settings
from hypothesis import strategies as st

import reconciler.api.tasks as tasks_module
from reconciler.api.decoding import parse_variable
from reconciler.api.representation import (
    EffectiveBuffer,
    effective_buffer,
    hcl_literal,
    task_object,
)
from reconciler.taskfiles.model import (
    BufferPeriodConfig,
    CatalogServicesCondition,
    ConsulKVCondition,
    GlobalDefaults,
    ScheduleCondition,
    ServicesInput,
    TaskSpec,
)

S = SECOND
ON = GlobalDefaults(True, 5 * S, 20 * S)
OFF = GlobalDefaults(False, 5 * S, 20 * S)


def bp(enabled: bool | None = None, lo: int | None = None, hi: int | None = None) -> TaskSpec:
    return TaskSpec(name="t", module="m", buffer_period=BufferPeriodConfig(enabled, lo, hi))


@pytest.mark.parametrize(
    "spec, defaults, expected",
    [
        (TaskSpec(name="t"), ON, EffectiveBuffer(True, 5 * S, 20 * S)),
        (
            TaskSpec(name="t"),
            GlobalDefaults(True, 7 * S, 9 * S),
            EffectiveBuffer(True, 7 * S, 9 * S),
        ),
        (TaskSpec(name="t"), OFF, EffectiveBuffer(False, 0, 0)),
        (bp(), ON, EffectiveBuffer(True, 5 * S, 20 * S)),
        (bp(enabled=False, lo=3 * S), ON, EffectiveBuffer(False, 0, 0)),
        (bp(enabled=True), OFF, EffectiveBuffer(True, 5 * S, 20 * S)),
        (
            bp(enabled=True),
            GlobalDefaults(True, 2 * S, 30 * S),
            EffectiveBuffer(True, 2 * S, 8 * S),
        ),
        (bp(lo=10 * S), ON, EffectiveBuffer(True, 10 * S, 40 * S)),
        (bp(hi=60 * S), GlobalDefaults(True, 2 * S, 30 * S), EffectiveBuffer(True, 2 * S, 60 * S)),
        (bp(hi=60 * S), OFF, EffectiveBuffer(True, 5 * S, 60 * S)),
        (bp(lo=30 * S, hi=10 * S), ON, EffectiveBuffer(True, 30 * S, 30 * S)),
        (bp(hi=1 * S), ON, EffectiveBuffer(True, 5 * S, 5 * S)),
        (
            TaskSpec(
                name="t",
                condition=ScheduleCondition(cron="* * * * *"),
                buffer_period=BufferPeriodConfig(True, S, S),
            ),
            ON,
            EffectiveBuffer(False, 0, 0),
        ),
    ],
)
def test_effective_buffer(
    spec: TaskSpec, defaults: GlobalDefaults, expected: EffectiveBuffer
) -> None:
    assert effective_buffer(spec, defaults) == expected


def test_condition_types_and_legacy_services() -> None:
    catalog = task_object(
        TaskSpec(
            name="t",
            module="m",
            condition=CatalogServicesCondition(regexp="^a", node_meta={"k": "v"}),
        ),
        ON,
    )
    assert catalog["condition"] == {
        "catalog_services": {
            "datacenter": "",
            "namespace": "",
            "node_meta": {"k": "v"},
            "regexp": "^a",
            "use_as_module_input": True,
        }
    }
    kv = task_object(
        TaskSpec(
            name="t",
            module="m",
            condition=ConsulKVCondition(path="p", recurse=True, use_as_module_input=False),
        ),
        ON,
    )
    assert kv["condition"]["consul_kv"]["use_as_module_input"] is False
    sched = task_object(
        TaskSpec(name="t", module="m", condition=ScheduleCondition(cron="@daily")), ON
    )
    assert sched["condition"] == {"schedule": {"cron": "@daily"}}
    assert sched["buffer_period"] == {"enabled": False, "max": "0s", "min": "0s"}
    # The deprecated services list is the condition when there is none...
    legacy = task_object(TaskSpec(name="t", module="m", services=("b", "a")), ON)
    assert legacy["condition"]["services"]["names"] == ["a", "b"]
    assert legacy["module_input"] == {}
    # ... and a services module input when there is one.
    with_cond = task_object(
        TaskSpec(name="t", module="m", services=("b", "a"), condition=ConsulKVCondition(path="p")),
        ON,
    )
    assert with_cond["module_input"]["services"]["names"] == ["a", "b"]
    regexp_input = task_object(
        TaskSpec(
            name="t",
            module="m",
            condition=ConsulKVCondition(path="p"),
            module_inputs=(ServicesInput(regexp="^x"),),
        ),
        ON,
    )
    assert regexp_input["module_input"]["services"] == {
        "cts_user_defined_meta": {},
        "datacenter": "",
        "filter": "",
        "namespace": "",
        "regexp": "^x",
    }


@pytest.mark.parametrize(
    "value, source",
    [
        ("a", '"a"'),
        (10, "10"),
        (-2, "-2"),
        (1.5, "1.5"),
        (True, "true"),
        (None, "null"),
        (["a", "b"], '["a", "b"]'),
        ({"a": 1}, "{ a = 1 }"),
        ({}, "{}"),
        ([], "[]"),
        ({"a b": [1, {"c": False}]}, '{ "a b" = [1, { c = false }] }'),
        ('say "${hi}"\n', '"say \\"$${hi}\\"\\n"'),
    ],
)
def test_hcl_literal(value: Any, source: str) -> None:
    rendered = hcl_literal(value)
    assert parse_variable("task", "v", rendered) == value
    if "${" not in source:
        assert rendered == source


_TEXT = st.characters(exclude_categories=["Cs"])  # no lone surrogates: not valid UTF-8
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(_TEXT)
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(_TEXT, max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_hcl_literal_round_trips(value: Any) -> None:
    parsed = parse_variable("task", "v", hcl_literal(value))
    assert parsed == value and repr(parsed) == repr(value)


@pytest.mark.anyio
async def test_list_body_is_cached_by_registry_version(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = task_object

    def counting(spec: TaskSpec, defaults: GlobalDefaults) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return real(spec, defaults)

    monkeypatch.setattr(tasks_module, "task_object", counting)
    write_atomic(core.root / "a.hcl", task_hcl("a"))
    await async_wait_for(lambda: "a" in core.registry, what="task a")
    first = (await core.client.get("/v1/tasks")).json()
    assert calls == 1
    second = (await core.client.get("/v1/tasks")).json()
    assert calls == 1 and second["tasks"] == first["tasks"]
    assert second["request_id"] != first["request_id"]
    write_atomic(core.root / "b.hcl", task_hcl("b"))
    await async_wait_for(lambda: "b" in core.registry, what="task b")
    third = (await core.client.get("/v1/tasks")).json()
    assert [t["name"] for t in third["tasks"]] == ["a", "b"] and calls == 3
