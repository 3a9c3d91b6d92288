"""Tasks written in the daemon's configuration files: a read-only source on a SourceLoop
of its own (its lock, the reconciler's rules), changed only when the configuration is
re-read. tests/scenarios/test_daemon_process.py covers SIGHUP end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import async_wait_for
from runfakes import spec

from reconciler.daemon.core import Core, SourcePlan
from reconciler.reconcile.overrides import OverrideStore
from reconciler.settings.model import ConfiguredTask
from reconciler.sources.directory import DirectorySource

pytestmark = pytest.mark.anyio


def configured(name: str, file: str = "cts.hcl", line: int = 3, **fields: object) -> ConfiguredTask:
    return ConfiguredTask(spec(name, **fields), file, line)


async def test_configuration_tasks_enter_through_their_own_loop(tmp_path: Path) -> None:
    core = Core([SourcePlan(DirectorySource(tmp_path / "tasks"))])
    (tmp_path / "tasks").mkdir()
    await core.load([configured("a"), configured("b", line=9)])
    assert core.config_loop is not None and core.config_loop.reconciles == 1
    a = core.registry.get("a")
    assert a is not None and a.source == "config"
    assert (a.provenance.file, a.provenance.line) == ("cts.hcl", 3)
    assert a.provenance.path == str(Path("cts.hcl").absolute())

    # A re-read waits for the loop's lock, as every pass of every source does.
    assert core.config_tasks is not None
    before = core.config_tasks.read("cts.hcl")
    async with core.config_loop.lock:
        reread = asyncio.ensure_future(
            core.set_config_tasks([configured("a", description="changed")])
        )
        # The re-read has taken the new tasks and, in the same step, asked for the lock.
        await async_wait_for(lambda: core.config_tasks.read("cts.hcl") != before)
        assert not reread.done() and core.config_loop.reconciles == 1
    await reread
    changed = core.registry.get("a")
    assert changed is not None and changed.spec.description == "changed"
    assert "b" not in core.registry  # gone from the configuration: gone (allow_empty)
    revision = changed.provenance.revision

    # Unchanged configuration: nothing changes, not even the revision.
    await core.set_config_tasks([configured("a", description="changed")])
    assert core.registry.get("a") is changed and revision

    await core.set_config_tasks([])
    assert len(core.registry) == 0
    await core.close()


async def test_configuration_task_changes_are_overrides_that_the_file_ends(
    tmp_path: Path,
) -> None:
    """PATCH and DELETE of a configuration task: recorded as overrides (the file is never
    written) that survive a new core on the same store, until the task's definition in
    the file changes."""
    (tmp_path / "tasks").mkdir()
    store = tmp_path / "overrides.json"
    core = Core([SourcePlan(DirectorySource(tmp_path / "tasks"))], overrides=OverrideStore(store))
    await core.load([configured("a"), configured("b", line=9)])
    await core.commands.set_enabled("a", False, request_id="r-1")
    live = core.registry.get("a")
    assert live is not None and not live.spec.is_enabled and live.source == "config"
    override = core.commands.override("a")
    assert override is not None and override["enabled"] is False
    assert override["request_id"] == "r-1" and override["file"] == "cts.hcl:3"
    await core.commands.delete("b")
    assert "b" not in core.registry
    await core.close()

    again = Core([SourcePlan(DirectorySource(tmp_path / "tasks"))], overrides=OverrideStore(store))
    await again.load([configured("a"), configured("b", line=9)])
    a = again.registry.get("a")
    assert a is not None and not a.spec.is_enabled and "b" not in again.registry
    # The file's definition of a changes: the file wins; b's override stays.
    await again.set_config_tasks([configured("a", description="edited"), configured("b", line=9)])
    a = again.registry.get("a")
    assert a is not None and a.spec.is_enabled and again.commands.override("a") is None
    assert "b" not in again.registry
    assert set(OverrideStore(store).all()) == {"b"}
    await again.close()


async def test_no_configuration_tasks_no_config_source(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    core = Core([SourcePlan(DirectorySource(tmp_path / "tasks"))])
    await core.load([])
    assert core.config_loop is None and "config" not in core.reconciler.sources
    await core.set_config_tasks([configured("late")])  # added by a later re-read
    assert "late" in core.registry and "config" in core.reconciler.sources
    await core.close()
