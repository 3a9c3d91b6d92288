"""Fuzzing the task-file loader and the daemon-configuration loader with Hypothesis.

Inputs: random bytes, and the fixtures (tests/fixtures: task files and a complete CTS
configuration, HCL and JSON) mutated by byte flips, truncations, insertions, deletions,
duplicated blocks and deep nesting. Whatever the input, a loader returns tasks or
problems (ConfigError for the configuration); never another exception, every problem
names `file:line`, and no file takes long: each example runs under a generous guard
(GUARD_S, so that a loaded CI machine cannot flake it) and the slowest file is printed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler._core.errors import ConfigError, Problem
from reconciler.settings import load_settings
from reconciler.taskfiles.load import MAX_TASK_FILE_BYTES, load_task_file
from reconciler.taskfiles.tasks import DecodedFile

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
GUARD_S = 10
# Per fuzz run; about 20 s for the whole module on a quiet 2-core machine. A longer hunt:
# FUZZ_EXAMPLES=20000 pytest tests/faults/test_fuzz_loaders.py
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or 500)

TASK_HCL = (FIXTURES / "tasks" / "assorted.hcl").read_bytes()
CONFIG_HCL = (FIXTURES / "settings" / "cts" / "cts.hcl").read_bytes()
CONFIG_JSON = (FIXTURES / "settings" / "cts" / "cts.json").read_bytes()
# A JSON task file: the task blocks of the JSON configuration fixture.
TASK_JSON = json.dumps({"task": json.loads(CONFIG_JSON)["task"]}, indent=2).encode()

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # the guard below bounds each example; timing noise must not flake
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Slowest:
    """The slowest example of a fuzz run, reported at its end."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.size = 0

    @contextmanager
    def guard(self, data: bytes) -> Iterator[None]:
        def expired(signum: int, frame: FrameType | None) -> None:
            raise AssertionError(f"a {len(data)} byte file took more than {GUARD_S} s")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.alarm(GUARD_S)
        started = time.perf_counter()
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
            elapsed = time.perf_counter() - started
            if elapsed > self.seconds:
                self.seconds, self.size = elapsed, len(data)

    def report(self, what: str) -> None:
        print(f"fuzz {what}: slowest file {self.seconds * 1000:.1f} ms ({self.size} bytes)")


# --- mutations ---------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(
            st.sampled_from(["flip", "truncate", "insert", "delete", "duplicate", "nest", "token"])
        )
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and data:
            i = min(at, len(data) - 1)
            data[i] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif kind == "duplicate":
            # A slice (often a whole block or attribute) repeated somewhere else.
            start = draw(st.integers(0, len(data)))
            piece = data[start : start + draw(st.integers(1, 400))]
            data[at:at] = piece
        elif kind == "nest":
            opener, closer = draw(st.sampled_from([("[", "]"), ("{", "}"), ("(", ")")]))
            depth = draw(st.sampled_from([10, 200, 1000, 5000]))
            balanced = draw(st.booleans())
            data[at:at] = (opener * depth + (closer * depth if balanced else "")).encode()
        elif kind == "token":
            data[at:at] = draw(
                st.sampled_from(
                    [
                        b"${",
                        b"%{",
                        b"<<EOT\n",
                        b"\nEOT\n",
                        b'"',
                        b"\\",
                        b"/*",
                        b"#",
                        b"\x00",
                        b"\xff\xfe",
                        b"task {",
                        b"}",
                        b"= ",
                        b",",
                        b"\r",
                        b"\xe2\x80\xae",
                        b"1e999",
                        b"null",
                        b'"task": ',
                        b"[]",
                        b"{}",
                    ]
                )
            )
    return bytes(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def restructured(draw: st.DrawFn, seed: bytes) -> bytes:
    """A JSON document with a few of its values (or keys) replaced by other JSON: a
    string where an object belongs, a list of lists, a duplicated key's sibling..."""
    doc = json.loads(seed)
    for _ in range(draw(st.integers(1, 4))):
        node, path = doc, []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(
                st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node)))
            )
            path.append((node, key))
            node = node[key]
        if not path:
            continue
        parent, key = path[-1]
        if isinstance(parent, dict) and draw(st.booleans()):
            parent[draw(st.sampled_from([*sorted(parent), "task", "name", "condition"]))] = draw(
                JSON_VALUES
            )
        else:
            parent[key] = draw(JSON_VALUES)
    return json.dumps(doc).encode()


def located(problems: list[Problem], filename: str) -> None:
    """Every problem names the file and a line in it."""
    assert problems
    for problem in problems:
        text = str(problem)
        assert problem.location is not None, f"no location: {text!r}"
        assert re.match(rf"{re.escape(filename)}:\d+(:\d+)?: ", text), f"no file:line: {text!r}"
        assert problem.location.line >= 1, text


# --- the task-file loader ------------------------------------------------------------------


def check_task_file(data: bytes, filename: str, slowest: Slowest) -> DecodedFile:
    with slowest.guard(data):
        loaded = load_task_file(data, filename)
    if loaded.problems:
        located(loaded.problems, filename)
    return loaded


def fuzz_task_files(
    strategy: st.SearchStrategy[bytes], filename: str, regressions: tuple[bytes, ...] = ()
) -> Slowest:
    slowest = Slowest()

    def run(data: bytes) -> None:
        check_task_file(data, filename, slowest)

    for data in regressions:
        run = example(data)(run)
    run = FUZZ(given(strategy)(run))

    run()
    return slowest


def test_task_files_hcl_mutated() -> None:
    fuzz_task_files(mutated(TASK_HCL), "tasks/fuzz.hcl").report("task files (HCL)")


def test_task_files_json_mutated() -> None:
    fuzz_task_files(mutated(TASK_JSON), "tasks/fuzz.json").report("task files (JSON)")


def test_task_files_json_restructured() -> None:
    fuzz_task_files(restructured(TASK_JSON), "tasks/fuzz.json").report(
        "task files (JSON, values replaced)"
    )


def test_task_files_random_bytes() -> None:
    slowest = fuzz_task_files(st.binary(max_size=4096), "tasks/fuzz.hcl")
    slowest.report("task files (random bytes, HCL)")
    fuzz_task_files(st.binary(max_size=4096), "tasks/fuzz.json").report(
        "task files (random bytes, JSON)"
    )


def _at_limit(pattern: bytes, prefix: bytes = b"") -> bytes:
    body = pattern * ((MAX_TASK_FILE_BYTES - len(prefix)) // len(pattern) + 1)
    return (prefix + body)[:MAX_TASK_FILE_BYTES]


# The costliest shapes found for the parsers, at the size limit: tree-sitter's error
# recovery on unclosed openers, lark (the syntax-error locator) on nested blocks, a file
# whose only error is at its end, and a file with hundreds of problems.
LARGEST = {
    "unclosed-braces": _at_limit(b"{", b"task "),
    "unclosed-brackets": _at_limit(b"[", b"x = "),
    "nested-blocks": _at_limit(b"a {\n"),
    "error-at-the-end": _at_limit(b"a = 1\n", b"task {\n")[:-2] + b"=\n",
    "hundreds-of-problems": _at_limit(TASK_HCL),
    "json-unclosed": _at_limit(b"[", b'{"task": '),
}


@pytest.mark.parametrize("shape", sorted(LARGEST))
def test_largest_adversarial_task_files(shape: str) -> None:
    data = LARGEST[shape]
    filename = "tasks/big.json" if shape.startswith("json") else "tasks/big.hcl"
    slowest = Slowest()
    assert check_task_file(data, filename, slowest).problems
    slowest.report(f"largest task file, {shape}")


def test_files_over_the_limit_are_refused_before_parsing() -> None:
    data = b"#" * (MAX_TASK_FILE_BYTES + 1)
    [problem] = load_task_file(data, "tasks/huge.hcl").problems
    assert str(problem) == (
        f"tasks/huge.hcl:1: file is {len(data)} bytes; task files are limited to "
        f"{MAX_TASK_FILE_BYTES} bytes"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.hcl"
        path.write_bytes(data)
        with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:1: file is larger"):
            load_settings([path], environ={}, hostname="fuzz")


# --- the daemon configuration --------------------------------------------------------------


def check_config_file(data: bytes, name: str, slowest: Slowest) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        with slowest.guard(data):
            try:
                load_settings([path], environ={}, hostname="fuzz")
            except ConfigError as exc:
                if not data:  # CTS skips an empty file (a warning): there is nothing left
                    assert str(exc) == "no configuration files found"
                    return
                located(exc.problems, str(path))


def fuzz_config_files(
    strategy: st.SearchStrategy[bytes], name: str, regressions: tuple[bytes, ...] = ()
) -> Slowest:
    slowest = Slowest()

    def run(data: bytes) -> None:
        check_config_file(data, name, slowest)

    for data in regressions:
        run = example(data)(run)
    run = FUZZ(given(strategy)(run))

    run()
    return slowest


# Found by the fuzzer: urlsplit raised ValueError ("Invalid IPv6 URL") out of the loader.
BAD_CHECK_ADDRESS = (
    b"consul {\n  service_registration {\n    default_check {\n"
    b'      address = "https://[[172.22.0.2:8558"\n    }\n  }\n}\n'
)


def test_config_files_hcl_mutated() -> None:
    fuzz_config_files(mutated(CONFIG_HCL), "config.hcl", (BAD_CHECK_ADDRESS,)).report(
        "configuration (HCL)"
    )


def test_regression_unparsable_default_check_address() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.hcl"
        path.write_bytes(BAD_CHECK_ADDRESS)
        try:
            load_settings([path], environ={}, hostname="fuzz")
        except ConfigError as exc:
            assert str(exc) == (
                f"{path}:4: consul: service_registration: default_check: error with address "
                'for default check: Invalid IPv6 URL: "https://[[172.22.0.2:8558"'
            )
        else:
            raise AssertionError("an unparsable address was accepted")


def test_config_files_json_mutated() -> None:
    fuzz_config_files(mutated(CONFIG_JSON), "config.json").report("configuration (JSON)")


def test_config_files_json_restructured() -> None:
    fuzz_config_files(restructured(CONFIG_JSON), "config.json").report(
        "configuration (JSON, values replaced)"
    )


def test_config_files_random_bytes() -> None:
    fuzz_config_files(st.binary(min_size=1, max_size=4096), "config.hcl").report(
        "configuration (random bytes, HCL)"
    )
    fuzz_config_files(st.binary(min_size=1, max_size=4096), "config.json").report(
        "configuration (random bytes, JSON)"
    )


# --- hostile regular expressions and names -------------------------------------------------

_REGEX_ALPHABET = "ab-z09()[]{}*+?|^$\\.,:=!<>PLdswbz"


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet=_REGEX_ALPHABET, max_size=40),
    st.text(alphabet="ab-!09", max_size=60),
)
def test_any_regexp_compiles_or_is_refused_and_matches_any_name(pattern: str, name: str) -> None:
    """A pattern is RE2's to judge: either refused with a reason, or matched against any
    service name (the hostile ones among them) without an exception."""
    from reconciler.taskfiles.goregexp import RegexpError, compile_regexp

    try:
        compiled = compile_regexp(pattern)
    except RegexpError as exc:
        assert str(exc)
        return
    assert compiled.search(name) in (True, False)
