"""Which `terraform` runs: the bundled one by default, or the binary `path` names."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reconciler.runner.driver import RunError
from reconciler.runner.terraform import terraform_command
from reconciler.settings.model import TerraformDriverSettings


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_the_default_is_the_bundled_terraform_even_with_one_on_path() -> None:
    assert terraform_command(TerraformDriverSettings()) == (
        sys.executable,
        "-m",
        "reconciler.runner.tfshim",
    )


def test_a_binary_or_a_directory_holding_one(tmp_path: Path) -> None:
    tofu = executable(tmp_path / "tofu")
    assert terraform_command(TerraformDriverSettings(path=tofu)) == (str(tofu),)
    assert terraform_command(TerraformDriverSettings(path=tmp_path)) == (str(tofu),)
    terraform = executable(tmp_path / "terraform")
    assert terraform_command(TerraformDriverSettings(path=tmp_path)) == (str(terraform),)


def test_a_path_that_runs_nothing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no terraform or tofu executable"):
        terraform_command(TerraformDriverSettings(path=tmp_path))
    with pytest.raises(RunError, match="is not an executable file"):
        terraform_command(TerraformDriverSettings(path=tmp_path / "missing"))
    (tmp_path / "plain").write_text("")
    with pytest.raises(RunError, match="is not an executable file"):
        terraform_command(TerraformDriverSettings(path=tmp_path / "plain"))
