"""render_task / render_file / checked_render: golden text, exact round trip, and what the
reference parsers (python-hcl2, and Terraform itself when it is installed) make of it."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from taskspecs import (
    TRICKY_PIECES,
    task_specs,
    tricky_text,
)

from reconciler.taskfiles.load import load_task_file
from reconciler.taskfiles.model import (
    BufferPeriodConfig,
    ConsulKVCondition,
    ConsulKVInput,
    ScheduleCondition,
    ServicesCondition,
    TaskSpec,
)
from reconciler.taskfiles.write import (
    check_reads_back,
    checked_render,
    render_file,
    render_key,
    render_string,
    render_task,
    render_value,
)


def live_templates(text: str) -> list[int]:
    """Offsets of `${` / `%{` that HCL's scanner would take as a template, following its
    rule: `$${` and `%%{` are escapes, a sign not followed by `{` is literal."""
    found = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
        elif ch in "$%" and text.startswith(ch + ch + "{", i):
            i += 3
        elif ch in "$%" and text.startswith(ch + "{", i):
            found.append(i)
            i += 2
        else:
            i += 1
    return found


def assert_reads_back(text: str, expected: list[TaskSpec]) -> None:
    decoded = load_task_file(text.encode("utf-8"), "rendered.hcl")
    assert decoded.problems == []
    got = [task.spec for task in decoded.tasks]
    assert got == expected
    assert repr(got) == repr(expected)  # == alone lets True equal 1 and 1 equal 1.0


# --- property ------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(task_specs())
def test_render_task_reads_back_identically(spec: TaskSpec) -> None:
    text = render_task(spec)
    assert_reads_back(text, [spec])
    assert checked_render(spec) == text.encode("utf-8")
    assert live_templates(text) == []
    parsed = hcl2.loads(text)
    assert len(parsed["task"]) == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(task_specs(), min_size=1, max_size=3, unique_by=lambda s: s.name))
def test_render_file_reads_back_every_task(specs: list[TaskSpec]) -> None:
    data = render_file(specs)
    assert data.endswith(b"}\n")
    assert b"}\n\ntask {" in data or len(specs) == 1
    assert_reads_back(data.decode("utf-8"), specs)


@pytest.mark.parametrize("value", [" ", " padded ", "a\u3000", "\u2028", " \\n "])
def test_edge_whitespace_reads_back(value: str) -> None:
    spec = TaskSpec(name="x", module="./m", services=("a",), description=value)
    assert_reads_back(render_task(spec), [spec])


@given(tricky_text)
def test_render_string_has_no_live_template(value: str) -> None:
    quoted = render_string(value)
    assert live_templates(quoted) == []
    decoded = load_task_file(f"x = {quoted}\n".encode(), "x.hcl")
    # A top-level attribute is an invalid key, but its value was read first.
    assert all("invalid key" in p.message for p in decoded.problems)


# --- golden --------------------------------------------------------------------------------

GOLDEN_SPEC = TaskSpec(
    name="web",
    module="./modules/web",
    description='say "hi" to ${name}',
    enabled=False,
    version="1.2.0",
    providers=("local", "aws.east"),
    variables={
        "count": 3,
        "ratio": 0.25,
        "huge": 1e16,
        "tags": ["a", "b"],
        "nested": {"is-on": True, "for": None, "a b": [{"c": -1}]},
        "empty": {},
    },
    variable_files=("web.tfvars",),
    working_dir="/var/lib/cts/web",
    condition=ServicesCondition(
        names=("web", "api"),
        cts_user_defined_meta={"owner": "team-a"},
        use_as_module_input=False,
    ),
    module_inputs=(ConsulKVInput(path="config/web", recurse=True),),
    buffer_period=BufferPeriodConfig(enabled=True, min=5_000_000_000, max=90_000_000_000),
)

GOLDEN_TEXT = r"""task {
  name        = "web"
  description = "say \"hi\" to \u0024{name}"
  enabled     = false
  module      = "./modules/web"
  version     = "1.2.0"
  providers   = ["local", "aws.east"]
  variables = {
    count = 3
    ratio = 0.25
    huge  = 1.0e+16
    tags  = ["a", "b"]
    nested = {
      is-on = true
      "for" = null
      "a b" = [
        {
          c = -1
        },
      ]
    }
    empty = {}
  }
  variable_files = ["web.tfvars"]
  working_dir    = "/var/lib/cts/web"

  condition "services" {
    names = ["web", "api"]
    cts_user_defined_meta = {
      owner = "team-a"
    }
    use_as_module_input = false
  }

  module_input "consul-kv" {
    path    = "config/web"
    recurse = true
  }

  buffer_period {
    enabled = true
    min     = "5s"
    max     = "1m30s"
  }
}
"""


def test_golden_render() -> None:
    assert render_task(GOLDEN_SPEC) == GOLDEN_TEXT
    assert checked_render(GOLDEN_SPEC) == GOLDEN_TEXT.encode()


def test_minimal_task_writes_only_what_is_set() -> None:
    spec = TaskSpec(name="kv", module="./m", condition=ConsulKVCondition(path="a/b"))
    assert render_task(spec) == (
        'task {\n  name   = "kv"\n  module = "./m"\n\n'
        '  condition "consul-kv" {\n    path = "a/b"\n  }\n}\n'
    )


def test_empty_blocks_and_schedule() -> None:
    spec = TaskSpec(
        name="s",
        module="./m",
        condition=ScheduleCondition(cron="@hourly"),
        buffer_period=BufferPeriodConfig(),
    )
    assert render_task(spec) == (
        'task {\n  name   = "s"\n  module = "./m"\n\n'
        '  condition "schedule" {\n    cron = "@hourly"\n  }\n\n'
        "  buffer_period {}\n}\n"
    )
    assert_reads_back(render_task(spec), [spec])


def test_render_file_separates_blocks_with_one_blank_line() -> None:
    a = TaskSpec(name="a", module="./m", services=("x",))
    b = TaskSpec(name="b", module="./m", services=("y",))
    assert render_file([a, b]) == (
        b'task {\n  name     = "a"\n  module   = "./m"\n  services = ["x"]\n}\n\n'
        b'task {\n  name     = "b"\n  module   = "./m"\n  services = ["y"]\n}\n'
    )


# --- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (0, "0"),
        (-7, "-7"),
        (10**30, "1000000000000000000000000000000"),
        (1.5, "1.5"),
        (-0.0, "-0.0"),
        (1e-7, "1.0e-07"),
        (5e-324, "5.0e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        ([], "[]"),
        ({}, "{}"),
        ([1, [2, "x"]], '[1, [2, "x"]]'),
        ("${a}", r'"\u0024{a}"'),
        ("$${a}", r'"$\u0024{a}"'),
        ("%%{", r'"%\u0025{"'),
        ("a\\", r'"a\\"'),
    ],
)
def test_render_value(value: Any, text: str) -> None:
    assert render_value(value) == text


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("a", "a"),
        ("a-b", "a-b"),
        ("_1", "_1"),
        ("true", '"true"'),
        ("null", '"null"'),
        ("for", '"for"'),
        ("1a", '"1a"'),
        ("é", '"é"'),
        ("", '""'),
        ("a b", '"a b"'),
    ],
)
def test_render_key(key: str, text: str) -> None:
    assert render_key(key) == text


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object(), {1: "x"}])
def test_unwritable_values_raise(value: Any) -> None:
    with pytest.raises(ValueError):
        render_value(value)


# --- the safety check ----------------------------------------------------------------------


def test_checked_render_refuses_an_invalid_task() -> None:
    with pytest.raises(ValueError, match="does not load"):
        checked_render(TaskSpec(name="x", module="./m"))  # no condition


def test_checked_render_refuses_enterprise_fields() -> None:
    spec = TaskSpec(name="x", module="./m", services=("a",), terraform_version="1.0")
    assert 'terraform_version = "1.0"' in render_task(spec)
    with pytest.raises(ValueError, match="Enterprise"):
        checked_render(spec)


def test_checked_render_refuses_what_reads_back_differently() -> None:
    # A tuple inside variables is written as a list and read back as one.
    spec = TaskSpec(name="x", module="./m", services=("a",), variables={"t": (1, 2)})
    with pytest.raises(ValueError, match="reads back differently"):
        checked_render(spec)


def test_check_reads_back_is_type_strict() -> None:
    spec = TaskSpec(name="x", module="./m", services=("a",), variables={"v": 1})
    data = render_task(spec).encode()
    check_reads_back(data, "x.hcl", [spec])
    with pytest.raises(ValueError):
        check_reads_back(data, "x.hcl", [TaskSpec(**{**spec.__dict__, "variables": {"v": True}})])


# --- Terraform itself (skipped where it is not installed) ----------------------------------

needs_terraform = pytest.mark.skipif(
    shutil.which("terraform") is None, reason="terraform is not installed"
)


@needs_terraform
def test_terraform_reads_strings_as_written(tmp_path: Path) -> None:
    values = [p for p in TRICKY_PIECES if p != "\x00"] + ["".join(TRICKY_PIECES[1:12])]
    # base64 keeps the console's own display quoting out of the way.
    expr = "base64encode(jsonencode([" + ", ".join(render_string(v) for v in values) + "]))"
    out = subprocess.run(
        ["terraform", "console"],
        input=expr,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(base64.b64decode(out.strip().strip('"'))) == values


@needs_terraform
def test_terraform_fmt_leaves_golden_text_alone(tmp_path: Path) -> None:
    path = tmp_path / "task.tf"
    path.write_text(GOLDEN_TEXT)
    subprocess.run(
        ["terraform", "fmt", "-check", str(path)],
        cwd=tmp_path,
        timeout=60,
        check=True,
        capture_output=True,
    )
