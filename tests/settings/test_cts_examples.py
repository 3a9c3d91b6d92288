"""The example configurations of CTS's repository (tests/fixtures/settings/cts/examples,
see SOURCES.md there) load as they are, and every warning they draw is one this test
expects: nothing unexplained."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler._core.errors import ConfigError
from reconciler.settings import load_settings

EXAMPLES = Path(__file__).parent.parent / "fixtures" / "settings" / "cts" / "examples"

DEPRECATED_SERVICE_BLOCK = "the 'service' block is deprecated (CTS 0.5.0)"
DEPRECATED_SERVICES_FIELD = "the 'services' field in the task block is deprecated in v0.5.0"
SYSLOG = "syslog is not supported and has no effect"


def warnings_of(path: Path) -> list[tuple[int, str]]:
    s = load_settings([path], environ={}, hostname="testhost")
    return sorted((w.location.line if w.location else 0, w.message) for w in s.warnings)


@pytest.mark.parametrize(
    "example", ["reference-example/example-config.hcl", "runnable-example/config.hcl"]
)
def test_the_examples_load_without_a_warning(example: str, tmp_path: Path) -> None:
    # The reference example names /path/to/example.module.tfvars, which is nowhere; the
    # daemon reads variable files when it writes the task's workspace, not at load.
    directory = tmp_path / "example"
    shutil.copytree(EXAMPLES / Path(example).parent, directory)
    assert warnings_of(directory / Path(example).name) == []


def test_ctss_every_setting_file_loads_with_each_difference_named(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path / "examples")
    long = tmp_path / "examples" / "testdata" / "long.hcl"
    (tmp_path / "examples" / "testdata" / "long.hcl.txt").rename(long)
    # One construct of HCL1 that HCL2 has no place for: quoted names in a block body. The
    # error says where and how to write it.
    with pytest.raises(ConfigError) as info:
        load_settings([long], environ={}, hostname="testhost")
    [problem] = info.value.problems
    assert problem.location is not None and problem.location.line == 106
    assert "quoted name inside a block is HCL1 syntax" in problem.message
    assert "write `node_meta = {`" in problem.message
    long.write_text(long.read_text().replace("node_meta {", "node_meta = {"))
    found = warnings_of(long)
    assert [line for line, _ in found] == [9, 81, 86, 97]
    assert found[0][1].startswith(SYSLOG)
    assert found[1][1].startswith(DEPRECATED_SERVICE_BLOCK)
    assert found[2][1].startswith(DEPRECATED_SERVICE_BLOCK)
    assert DEPRECATED_SERVICES_FIELD in found[3][1]
