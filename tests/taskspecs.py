"""Hypothesis strategies for task specs: every field, tricky text (HCL template signs,
escapes, control characters, non-ASCII) and every condition and module_input kind."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from reconciler.taskfiles.model import (
    BufferPeriodConfig,
    CatalogServicesCondition,
    Condition,
    ConsulKVCondition,
    ConsulKVInput,
    ModuleInput,
    ScheduleCondition,
    ServicesCondition,
    ServicesInput,
    TaskSpec,
)

TRICKY_PIECES = [
    '"', "\\", "\n", "\r", "\t", "\r\n", "${", "%{", "$${", "%%{", "$$${", "%%%{", "$", "%",
    "{", "}", "${var.x}", "%{ if x }", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028",
    "\ufeff", "é", "日本語", "🚀", "\\u0024", "\\n", "'", "#", "//", "/*", "<<EOT",
]  # fmt: skip

tricky_text = st.lists(
    st.one_of(st.sampled_from(TRICKY_PIECES), st.text(max_size=8)), max_size=6
).map("".join)
nonempty_text = tricky_text.filter(bool)

_first_letter = st.one_of(st.just("_"), st.characters(categories=["Lu", "Ll", "Lo"]))
_name_rest = st.text(
    alphabet=st.one_of(st.sampled_from("_-"), st.characters(categories=["L", "N"])),
    max_size=15,
)
identifiers = st.builds(lambda a, b: a + b, _first_letter, _name_rest)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    tricky_text,
)
object_keys = st.one_of(tricky_text, identifiers, st.sampled_from(["true", "null", "for", "a-b"]))
hcl_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(object_keys, inner, max_size=4)
    ),
    max_leaves=16,
)
string_maps = st.dictionaries(object_keys, tricky_text, max_size=3)
optional_text = st.none() | tricky_text
optional_bool = st.none() | st.booleans()
regexps = tricky_text.map(
    lambda s: "^" + "".join("\\" + c if c in ".^$*+?{}[]\\|()" else c for c in s)
)
crons = st.sampled_from(["*/5 * * * *", "@hourly", "0 0 * * 1", "0 30 2 * * * *"])
name_list = st.lists(nonempty_text, min_size=1, max_size=3).map(tuple)
durations = st.integers(min_value=0, max_value=10**16)


@st.composite
def services_fields(draw: st.DrawFn) -> dict[str, Any]:
    by_names = draw(st.booleans())
    return {
        "names": draw(name_list) if by_names else None,
        "regexp": None if by_names else draw(regexps),
        "datacenter": draw(optional_text),
        "namespace": draw(optional_text),
        "filter": draw(optional_text),
        "cts_user_defined_meta": draw(st.none() | string_maps),
    }


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    kind = draw(st.sampled_from(["services", "catalog-services", "consul-kv", "schedule"]))
    if kind == "services":
        return ServicesCondition(**draw(services_fields()), use_as_module_input=draw(optional_bool))
    if kind == "catalog-services":
        return CatalogServicesCondition(
            regexp=draw(regexps),
            datacenter=draw(optional_text),
            namespace=draw(optional_text),
            node_meta=draw(st.none() | string_maps),
            use_as_module_input=draw(optional_bool),
        )
    if kind == "consul-kv":
        return ConsulKVCondition(
            path=draw(nonempty_text),
            recurse=draw(optional_bool),
            datacenter=draw(optional_text),
            namespace=draw(optional_text),
            use_as_module_input=draw(optional_bool),
        )
    return ScheduleCondition(cron=draw(crons))


@st.composite
def module_inputs(draw: st.DrawFn, taken: frozenset[str]) -> tuple[ModuleInput, ...]:
    out: list[ModuleInput] = []
    if "services" not in taken and draw(st.booleans()):
        out.append(ServicesInput(**draw(services_fields())))
    if "consul-kv" not in taken and draw(st.booleans()):
        out.append(
            ConsulKVInput(
                path=draw(nonempty_text),
                recurse=draw(optional_bool),
                datacenter=draw(optional_text),
                namespace=draw(optional_text),
            )
        )
    return tuple(draw(st.permutations(out)))


@st.composite
def task_specs(draw: st.DrawFn) -> TaskSpec:
    condition = draw(st.none() | conditions())
    services = None
    if not isinstance(condition, ServicesCondition):
        services = draw(name_list) if condition is None else draw(st.none() | name_list)
    taken = {condition.type} if condition is not None else set()
    if services:
        taken.add("services")
    buffer = draw(
        st.none()
        | st.builds(
            BufferPeriodConfig,
            enabled=optional_bool,
            min=st.none() | durations,
            max=st.none() | durations,
        )
    )
    providers = draw(
        st.none()
        | st.lists(tricky_text, max_size=3, unique_by=lambda p: p.split(".", 1)[0]).map(tuple)
    )
    return TaskSpec(
        name=draw(identifiers),
        module=draw(nonempty_text),
        description=draw(optional_text),
        enabled=draw(optional_bool),
        version=draw(optional_text),
        providers=providers,
        variables=draw(st.none() | st.dictionaries(identifiers, hcl_values, max_size=4)),
        variable_files=draw(st.none() | st.lists(tricky_text, max_size=3).map(tuple)),
        condition=condition,
        module_inputs=draw(module_inputs(frozenset(taken))),
        buffer_period=buffer,
        working_dir=draw(optional_text),
        services=services,
    )
