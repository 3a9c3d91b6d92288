"""set_enabled / remove_task: every byte the edit does not need stays as it was."""

from __future__ import annotations

import dataclasses
import difflib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.taskfiles.edit import remove_task, set_enabled, update_task
from reconciler.taskfiles.load import load_task_file
from reconciler.taskfiles.model import BufferPeriodConfig, ServicesCondition, TaskSpec
from reconciler.taskfiles.write import render_file

SAMPLE = """\
# Tasks for the web tier.
# Owner: platform team

# The web frontend.
task {
  name        = "web"   # primary
  description = "front end"
\tmodule = "./modules/web"    # tab-indented

  condition "services" {
    names = ["web"]
  }
}

/* api: the
   backend */
task {
    name="api"
    enabled   =   true  // keep me
    module = "./modules/api"
    condition "catalog-services" {
        regexp = "^api"
    }
}

task {
\tname = "db"
\tmodule = "./modules/db"
\tcondition "consul-kv" { path = "db/config" }
} # end of db
"""

WEB_BLOCK = [
    "# The web frontend.",
    "task {",
    '  name        = "web"   # primary',
    '  description = "front end"',
    '\tmodule = "./modules/web"    # tab-indented',
    "",
    '  condition "services" {',
    '    names = ["web"]',
    "  }",
    "}",
]
API_BLOCK = [
    "/* api: the",
    "   backend */",
    "task {",
    '    name="api"',
    "    enabled   =   true  // keep me",
    '    module = "./modules/api"',
    '    condition "catalog-services" {',
    '        regexp = "^api"',
    "    }",
    "}",
]
DB_BLOCK = [
    "task {",
    '\tname = "db"',
    '\tmodule = "./modules/db"',
    '\tcondition "consul-kv" { path = "db/config" }',
    "} # end of db",
]

NEWLINES = pytest.mark.parametrize("nl", ["\n", "\r\n"], ids=["lf", "crlf"])


def sample(nl: str) -> bytes:
    return SAMPLE.replace("\n", nl).encode()


def changes(before: bytes, after: bytes) -> list[str]:
    """The removed (-) and added (+) lines, line endings included."""
    old = before.decode().splitlines(keepends=True)
    new = after.decode().splitlines(keepends=True)
    return [line for line in difflib.ndiff(old, new) if line.startswith(("- ", "+ "))]


def removed(lines: list[str], nl: str) -> list[str]:
    return [f"- {line}{nl}" for line in lines]


def text(lines: list[str], nl: str) -> bytes:
    return "".join(line + nl for line in lines).encode()


def names(data: bytes, filename: str = "tasks.hcl") -> list[str]:
    decoded = load_task_file(data, filename)
    assert decoded.problems == []
    return [task.spec.name for task in decoded.tasks]


def test_sample_loads() -> None:
    assert names(sample("\n")) == ["web", "api", "db"]
    assert names(sample("\r\n")) == ["web", "api", "db"]


# --- set_enabled ---------------------------------------------------------------------------


@NEWLINES
def test_set_enabled_replaces_only_the_existing_value(nl: str) -> None:
    before = sample(nl)
    after = set_enabled(before, "tasks.hcl", "api", False)
    assert changes(before, after) == [
        f"-     enabled   =   true  // keep me{nl}",
        f"+     enabled   =   false  // keep me{nl}",
    ]


@NEWLINES
def test_set_enabled_to_the_current_value_changes_nothing(nl: str) -> None:
    before = sample(nl)
    assert set_enabled(before, "tasks.hcl", "api", True) == before


@NEWLINES
def test_set_enabled_inserts_after_the_name_aligned_with_it(nl: str) -> None:
    before = sample(nl)
    after = set_enabled(before, "tasks.hcl", "web", False)
    assert changes(before, after) == [f"+   enabled     = false{nl}"]
    lines = after.decode().split(nl)
    assert lines[5:7] == ['  name        = "web"   # primary', "  enabled     = false"]


@NEWLINES
def test_set_enabled_inserts_with_the_name_lines_tab(nl: str) -> None:
    before = sample(nl)
    after = set_enabled(before, "tasks.hcl", "db", True)
    assert changes(before, after) == [f"+ \tenabled = true{nl}"]
    assert after.decode().split(nl)[26:28] == ['\tname = "db"', "\tenabled = true"]


def test_set_enabled_replaces_null() -> None:
    before = b'task {\n  name = "n"\n  enabled = null\n  module = "m"\n  services = ["a"]\n}\n'
    after = set_enabled(before, "n.hcl", "n", False)
    assert changes(before, after) == ["-   enabled = null\n", "+   enabled = false\n"]


def test_set_enabled_reads_back() -> None:
    after = set_enabled(sample("\n"), "tasks.hcl", "web", False)
    specs = {t.spec.name: t.spec for t in load_task_file(after, "tasks.hcl").tasks}
    assert (specs["web"].enabled, specs["api"].enabled, specs["db"].enabled) == (False, True, None)


# --- remove_task ---------------------------------------------------------------------------


@NEWLINES
def test_remove_first_task_takes_its_comment_and_one_blank_line(nl: str) -> None:
    before = sample(nl)
    after = remove_task(before, "tasks.hcl", "web")
    assert after is not None
    # ndiff attributes the blank line to either side; the bytes say which one went.
    assert changes(before, after) == [f"- {nl}", *removed(WEB_BLOCK, nl)]
    assert after == before.replace(text(WEB_BLOCK, nl) + nl.encode(), b"", 1)
    assert names(after) == ["api", "db"]
    assert after.startswith(
        f"# Tasks for the web tier.{nl}# Owner: platform team{nl}{nl}/* api: the{nl}".encode()
    )


@NEWLINES
def test_remove_middle_task_takes_its_block_comment(nl: str) -> None:
    before = sample(nl)
    after = remove_task(before, "tasks.hcl", "api")
    assert after is not None
    assert changes(before, after) == [*removed(API_BLOCK, nl), f"- {nl}"]
    assert after == before.replace(text(API_BLOCK, nl) + nl.encode(), b"", 1)
    assert f'}}{nl}{nl}task {{{nl}\tname = "db"'.encode() in after


@NEWLINES
def test_remove_last_task_takes_its_trailing_comment_and_the_blank_line_above(nl: str) -> None:
    before = sample(nl)
    after = remove_task(before, "tasks.hcl", "db")
    assert after is not None
    assert changes(before, after) == [f"- {nl}", *removed(DB_BLOCK, nl)]
    assert after == before.replace(nl.encode() + text(DB_BLOCK, nl), b"", 1)
    assert after.endswith(f"    }}{nl}}}{nl}".encode())


def test_remove_the_only_task_returns_none() -> None:
    only = b'# just one\ntask {\n  name = "solo"\n  module = "m"\n  services = ["a"]\n}\n'
    assert remove_task(only, "solo.hcl", "solo") is None


def test_remove_first_task_at_the_start_of_the_file() -> None:
    before = (
        b'task {\n  name = "a"\n  module = "m"\n  services = ["a"]\n}\n\n'
        b'task {\n  name = "b"\n  module = "m"\n  services = ["b"]\n}\n'
    )
    assert remove_task(before, "ab.hcl", "a") == (
        b'task {\n  name = "b"\n  module = "m"\n  services = ["b"]\n}\n'
    )


def test_remove_last_task_without_final_newline() -> None:
    before = (
        b'task {\n  name = "a"\n  module = "m"\n  services = ["a"]\n}\n\n'
        b'task {\n  name = "b"\n  module = "m"\n  services = ["b"]\n}'
    )
    assert remove_task(before, "ab.hcl", "b") == (
        b'task {\n  name = "a"\n  module = "m"\n  services = ["a"]\n}\n'
    )


def test_remove_keeps_a_comment_separated_by_a_blank_line_and_a_trailing_one() -> None:
    before = (
        b'task {\n  name = "a"\n  module = "m"\n  services = ["a"]\n} # about a\n'
        b"# about nothing\n\n"
        b"# about b\n"
        b'task {\n  name = "b"\n  module = "m"\n  services = ["b"]\n}\n'
    )
    after = remove_task(before, "ab.hcl", "b")
    assert after == (
        b'task {\n  name = "a"\n  module = "m"\n  services = ["a"]\n} # about a\n# about nothing\n'
    )


def test_set_enabled_ignores_enabled_of_a_nested_block() -> None:
    before = (
        b'task {\n  name = "n"\n  module = "m"\n  services = ["a"]\n\n'
        b"  buffer_period {\n    enabled = true\n  }\n}\n"
    )
    after = set_enabled(before, "n.hcl", "n", False)
    assert changes(before, after) == ["+   enabled = false\n"]


# --- edits of rendered files ---------------------------------------------------------------

simple_specs = st.builds(
    TaskSpec,
    name=st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True),
    module=st.sampled_from(["./m", "registry/x/y"]),
    description=st.none() | st.text(max_size=5).map(lambda s: s.strip() or "d"),
    enabled=st.none() | st.booleans(),
    variables=st.none() | st.dictionaries(st.sampled_from("abc"), st.integers(), max_size=2),
    condition=st.builds(ServicesCondition, names=st.just(("svc",))),
    buffer_period=st.none() | st.just(BufferPeriodConfig(enabled=True)),
)
files = st.lists(simple_specs, min_size=1, max_size=4, unique_by=lambda s: s.name)


@settings(max_examples=60, deadline=None)
@given(files, st.data(), st.sampled_from(["\n", "\r\n"]))
def test_remove_from_a_rendered_file_leaves_the_others_as_rendered(
    specs: list[TaskSpec], data: st.DataObject, nl: str
) -> None:
    victim = data.draw(st.sampled_from(specs))
    remaining = [s for s in specs if s is not victim]
    after = remove_task(render_file(specs).replace(b"\n", nl.encode()), "f.hcl", victim.name)
    if not remaining:
        assert after is None
    else:
        assert after == render_file(remaining).replace(b"\n", nl.encode())


@settings(max_examples=60, deadline=None)
@given(files, st.data(), st.booleans())
def test_set_enabled_on_a_rendered_file_touches_one_line(
    specs: list[TaskSpec], data: st.DataObject, enabled: bool
) -> None:
    target = data.draw(st.sampled_from(specs))
    before = render_file(specs)
    after = set_enabled(before, "f.hcl", target.name, enabled)
    diff = changes(before, after)
    literal = "true" if enabled else "false"
    if target.enabled is None:
        assert len(diff) == 1
        assert diff[0].startswith("+   enabled ") and diff[0].endswith(f"= {literal}\n")
    elif target.enabled == enabled:
        assert after == before
    else:
        old_literal = "true" if target.enabled else "false"
        assert len(diff) == 2 and diff[0].startswith("-   enabled ")
        assert diff[1] == "+" + diff[0][1:].replace(f"= {old_literal}\n", f"= {literal}\n")


# --- JSON files (re-serialised, not byte-preserved) ----------------------------------------

JSON_SAMPLE = json.dumps(
    {
        "task": [
            {"name": "a", "module": "m", "condition": {"services": {"names": ["a"]}}},
            {"name": "b", "module": "m", "enabled": True, "services": ["x"]},
        ]
    }
).encode()


def test_json_set_enabled() -> None:
    after = set_enabled(JSON_SAMPLE, "t.json", "a", False)
    data = json.loads(after)
    assert data["task"][0]["enabled"] is False
    assert data["task"][1]["enabled"] is True
    assert after.endswith(b"}\n")


def test_json_remove_task() -> None:
    after = remove_task(JSON_SAMPLE, "t.json", "a")
    assert after is not None
    assert [t["name"] for t in json.loads(after)["task"]] == ["b"]
    assert remove_task(after, "t.json", "b") is None


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename"), [(SAMPLE.encode(), "t.hcl"), (JSON_SAMPLE, "t.json")]
)
def test_unknown_task_is_a_key_error(data: bytes, filename: str) -> None:
    with pytest.raises(KeyError):
        set_enabled(data, filename, "nope", True)
    with pytest.raises(KeyError):
        remove_task(data, filename, "nope")


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b'task {\n  name = "web"\n', "t.hcl"),  # missing }
        (b'task {\n  name = "web"\n  module = "m"\n}\n', "t.hcl"),  # no condition: invalid
        (b"\xff\xfe", "t.hcl"),
        (b'{"task": [', "t.json"),
    ],
)
def test_a_file_that_does_not_load_is_a_value_error(data: bytes, filename: str) -> None:
    with pytest.raises(ValueError):
        set_enabled(data, filename, "web", True)
    with pytest.raises(ValueError):
        remove_task(data, filename, "web")


def test_an_insert_that_would_not_read_back_is_refused() -> None:
    # The line after the name is inside a comment: the inserted line would be commented out.
    source = (
        b'task {\n  name = "web" /* a comment that\n  goes on */\n  module = "m"\n'
        b'  services = ["a"]\n}\n'
    )
    with pytest.raises(ValueError, match="reads back differently"):
        set_enabled(source, "t.hcl", "web", False)


def test_name_not_on_its_own_line_is_refused() -> None:
    source = b'task { name = "web"\n  module = "m"\n  services = ["a"]\n}\n'
    assert names(source) == ["web"]
    with pytest.raises(ValueError, match="own line"):
        set_enabled(source, "t.hcl", "web", False)


def test_task_written_as_an_attribute_is_refused() -> None:
    source = b'task = { name = "web", module = "m", services = ["a"] }\n'
    assert names(source) == ["web"]
    with pytest.raises(ValueError, match="not written as a task block"):
        set_enabled(source, "t.hcl", "web", False)


# --- update_task ---------------------------------------------------------------------------


def spec_of(data: bytes, name: str) -> TaskSpec:
    decoded = load_task_file(data, "tasks.hcl")
    assert decoded.problems == []
    return next(t.spec for t in decoded.tasks if t.spec.name == name)


@NEWLINES
def test_update_replaces_only_a_changed_value_and_keeps_its_comment(nl: str) -> None:
    before = sample(nl)
    new = dataclasses.replace(spec_of(before, "web"), description="the front end")
    after = update_task(before, "tasks.hcl", "web", new)
    assert changes(before, after) == [
        f'-   description = "front end"{nl}',
        f'+   description = "the front end"{nl}',
    ]


@NEWLINES
def test_update_adds_and_removes_attributes_and_blocks(nl: str) -> None:
    before = sample(nl)
    old = spec_of(before, "api")
    new = dataclasses.replace(
        old,
        enabled=None,
        version="1.0.0",
        condition=ServicesCondition(names=("api",)),
        buffer_period=BufferPeriodConfig(enabled=False),
    )
    after = update_task(before, "tasks.hcl", "api", new)
    assert spec_of(after, "api") == new
    assert spec_of(after, "web") == spec_of(before, "web")
    lost = [line for line in changes(before, after) if line.startswith("- ")]
    assert lost == [
        f"-     enabled   =   true  // keep me{nl}",
        f'-     condition "catalog-services" {{{nl}',
        f'-         regexp = "^api"{nl}',
        f"-     }}{nl}",
    ]
    assert "/* api: the" in after.decode()  # the comment above the block stays


def test_update_rewrites_a_block_it_cannot_edit_in_place() -> None:
    before = sample("\n")
    old = spec_of(before, "db")
    new = dataclasses.replace(old, description="the database")
    after = update_task(before, "tasks.hcl", "db", new)
    assert spec_of(after, "db") == new
    # The other tasks, and the comment after the block, are untouched.
    assert after.decode().startswith(SAMPLE.split("task {\n\tname")[0])
    assert after.decode().endswith("} # end of db\n")


def test_update_of_an_unchanged_task_changes_nothing_and_json_is_refused() -> None:
    before = sample("\n")
    assert update_task(before, "tasks.hcl", "web", spec_of(before, "web")) == before
    data = json.dumps(
        {"task": {"name": "j", "module": "./m", "condition": {"services": {"names": ["a"]}}}}
    ).encode()
    spec = load_task_file(data, "t.hcl.json").tasks[0].spec
    with pytest.raises(ValueError, match="JSON"):
        update_task(data, "t.hcl.json", "j", dataclasses.replace(spec, description="x"))
    with pytest.raises(ValueError, match="renamed"):
        update_task(
            before, "tasks.hcl", "web", dataclasses.replace(spec_of(before, "web"), name="w")
        )
