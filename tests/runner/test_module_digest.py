"""The local module digest: an edit of any file changes it; special files and links are
never opened, large files are not read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from runfakes import spec

from reconciler.runner import workspace as workspace_module
from reconciler.runner.workspace import Workspace, Workspaces
from reconciler.settings.model import TerraformDriverSettings

pytestmark = pytest.mark.anyio


async def workspace(tmp_path: Path) -> Workspace:
    workspaces = Workspaces(tmp_path / "work", TerraformDriverSettings(), [])
    return await workspaces.prepare(spec("t"), tmp_path)


async def test_edits_count_and_hostile_files_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = tmp_path / "mod"
    mod.mkdir()
    (mod / "main.tf").write_text("# one\n")
    (mod / "script.sh").write_text("echo a\n")
    ws = await workspace(tmp_path)
    first = ws.module_digest()
    assert first
    (mod / "script.sh").write_text("echo b\n")  # any file of the module, not only .tf
    second = ws.module_digest()
    assert second != first
    os.mkfifo(mod / "pipe")  # opening it to read would block until a writer comes
    (mod / "zero").symlink_to("/dev/zero")  # reading it would never end
    (mod / "loop").symlink_to(mod)  # a directory link is not entered
    third = ws.module_digest()
    assert third != second
    (mod / "zero").unlink()
    (mod / "zero").symlink_to("/dev/null")  # a link counts by its target's name
    assert ws.module_digest() != third
    monkeypatch.setattr(workspace_module, "MODULE_FILE_CAP", 4)
    big = ws.module_digest()
    (mod / "main.tf").write_text("# two\n")  # same size; the mtime tells
    os.utime(mod / "main.tf", ns=(1, 1))
    assert ws.module_digest() != big
