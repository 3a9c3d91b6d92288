"""Our tree-sitter reader against python-hcl2, the reference parser, on every fixture HCL file
and on generated task files: both must read the same values."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hypothesis import given, settings
from taskspecs import task_specs

from reconciler.taskfiles.hcl import Block, Body, parse
from reconciler.taskfiles.model import TaskSpec
from reconciler.taskfiles.write import render_task

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = sorted(
    p for base in (ROOT / "examples", ROOT / "tests" / "fixtures") for p in base.rglob("*.hcl")
)


def ours(body: Body) -> dict[str, Any]:
    out: dict[str, Any] = {a.name: a.value for a in body.attributes}
    for block in body.blocks:
        out.setdefault(block.type, []).append(_block(block))
    return out


def _block(block: Block) -> Any:
    inner: Any = ours(block.body)
    for label in reversed(block.labels):
        inner = {label: inner}
    return inner


def _string(src: str) -> str:
    if src.startswith('"<<') and "\n" in src:  # a quoted string has no raw newline
        lines = src[1:-1].split("\n")
        strip_indent = lines[0].startswith("<<-")
        body = lines[1:-1]
        if strip_indent:
            cut = min((len(ln) - len(ln.lstrip(" \t")) for ln in body if ln.strip()), default=0)
            body = [ln[cut:] for ln in body]
        text = "".join(ln + "\n" for ln in body)
        return text.replace("$${", "${").replace("%%{", "%{")
    inner = src[1:-1].replace("$${", "${").replace("%%{", "%{")
    return str(json.loads('"' + inner + '"'))


_EXPONENT = re.compile(r"\$\{(-?[0-9.]+[eE][-+]?[0-9]+)\}")


def reference(value: Any) -> Any:
    """python-hcl2's output (strings in source form, blocks as lists) in our shape."""
    if isinstance(value, str) and value.startswith('"') and value.endswith('"'):
        return _string(value)
    if isinstance(value, str) and (m := _EXPONENT.fullmatch(value)):
        return float(m.group(1))  # python-hcl2 keeps 1.0e+16 as the expression "${1.0e+16}"
    if isinstance(value, list):
        return [reference(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("__is_block__", "__comments__"):
                continue
            out[_string(k) if k.startswith('"') else k] = reference(v)
        return out
    return value


@pytest.mark.parametrize("path", FIXTURES, ids=[str(p.relative_to(ROOT)) for p in FIXTURES])
def test_fixture_reads_like_python_hcl2(path: Path) -> None:
    text = path.read_text()
    assert ours(parse(text.encode(), str(path))) == reference(hcl2.loads(text))


@settings(max_examples=200, deadline=None)
@given(task_specs())
def test_generated_task_reads_like_python_hcl2(spec: TaskSpec) -> None:
    text = render_task(spec)
    assert ours(parse(text.encode(), "gen.hcl")) == reference(hcl2.loads(text))


def test_reference_comparison_can_fail() -> None:
    text = 'task {\n  name = "a"\n}\n'
    assert ours(parse(text.encode(), "x.hcl")) != reference(hcl2.loads(text.replace("a", "b")))
