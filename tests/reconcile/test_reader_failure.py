"""A failure of the task-file reader itself (a bug, not bad content) stays that file's
problem: its source keeps loading and following the other files."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from apikit import running_core
from helpers import async_wait_for, task_hcl

from reconciler.taskfiles import load
from reconciler.taskfiles.hcl import Block
from reconciler.taskfiles.tasks import DecodedFile

pytestmark = pytest.mark.anyio


async def test_a_reader_failure_is_the_files_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = load.decode_tasks

    def failing(blocks: list[Block], filename: str) -> DecodedFile:
        if "boom" in filename:
            raise RecursionError("maximum recursion depth exceeded")
        return real(blocks, filename)

    monkeypatch.setattr(load, "decode_tasks", failing)
    root = tmp_path / "tasks"
    root.mkdir()
    (root / "boom.hcl").write_text(task_hcl("bad"))
    (root / "good.hcl").write_text(task_hcl("good"))
    with caplog.at_level(logging.ERROR, logger="reconciler.taskfiles.load"):
        async with running_core(root) as core:
            assert set(core.specs()) == {"good"}
            [problem] = core.reconciler.problems()["tasks/boom.hcl"]
            assert problem == (
                "tasks/boom.hcl:1: cannot read this file: internal error (RecursionError: "
                "maximum recursion depth exceeded); the daemon's log has the details"
            )
            # The loop is alive: a file written now is picked up.
            (root / "later.hcl").write_text(task_hcl("later"))
            await async_wait_for(lambda: "later" in core.specs(), what="the later file")
    assert any("reading tasks/boom.hcl failed" in r.getMessage() for r in caplog.records)
    assert any(r.exc_info for r in caplog.records)  # the traceback is in the log
