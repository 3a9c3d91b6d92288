"""API changes as file changes ("one way in").

Each change is written to the task's file first (atomically, durably), then the same
reconcile path that applies hand edits applies it. Nothing here touches the registry.
Changes to one source are made in batches (reconciler.reconcile.batch): one hold of the
source's lock and one reconcile pass for all the changes that arrived meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from reconciler._core.errors import (
    ConflictError,
    DuplicateTaskError,
    InvalidTaskError,
    NotFoundError,
    ReadOnlySourceError,
    ReconcilerError,
)
from reconciler.reconcile.batch import Batcher
from reconciler.reconcile.configtasks import CONFIG_SOURCE, ConfigTasks
from reconciler.reconcile.engine import FileEntry, Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.reconcile.overrides import Override
from reconciler.registry.store import LiveTask
from reconciler.sources.base import FileChange, LocalFiles
from reconciler.taskfiles import edit
from reconciler.taskfiles.model import TaskSpec
from reconciler.taskfiles.validate import name_problem
from reconciler.taskfiles.write import checked_render

log = logging.getLogger(__name__)
T = TypeVar("T")


__all__ = ["DuplicateTaskError", "ReadOnlySourceError", "WriteBack"]


def _edited(display: str, make: Callable[[], T]) -> T:
    """Run a file edit; the file changed under us (broken or edited since the last
    reconcile) is a conflict, not a crash."""
    try:
        return make()
    except KeyError:
        raise ConflictError(f"{display} no longer defines the task; try again") from None
    except ValueError as exc:
        raise ConflictError(f"{display} cannot be edited: {exc}") from None


class WriteBack:
    def __init__(
        self,
        reconciler: Reconciler,
        loops: dict[str, SourceLoop],
        default: str | None,
        *,
        term: Callable[[], int] = lambda: 0,
    ):
        """`term`: the leader's term, recorded in each commit (high availability)."""
        self.term = term
        self.reconciler = reconciler
        self.registry = reconciler.registry
        self.loops = loops
        self.default = default
        # The configuration's tasks: their API changes become overrides.
        self.config: tuple[SourceLoop, ConfigTasks] | None = None
        self._batchers: dict[int, Batcher] = {}

    def batcher(self, loop: SourceLoop) -> Batcher:
        """The write queue of a source loop (a reload's new loops get new ones)."""
        found = self._batchers.get(id(loop))
        if found is None or found.loop is not loop:
            found = self._batchers[id(loop)] = Batcher(loop)
        return found

    def attach_config(self, loop: SourceLoop, tasks: ConfigTasks) -> None:
        self.config = (loop, tasks)

    def override(self, name: str) -> Override | None:
        """The API change in force on a configuration task, if any."""
        return self.config[1].override(name) if self.config is not None else None

    def retarget(self, loops: dict[str, SourceLoop], default: str | None) -> None:
        """The sources changed (a reload): writes go to these from now on."""
        self.loops, self.default = loops, default
        live = {id(loop) for loop in loops.values()}
        self._batchers = {k: b for k, b in self._batchers.items() if k in live}

    def _commit(self, loop: SourceLoop, change: FileChange, term: int) -> None:
        """Write (and commit) the change, stamped with the leader's term; in the batch's
        worker thread."""
        loop.source.commit(replace(change, term=term))

    def _default_loop(self) -> SourceLoop:
        if self.default is None or self.default not in self.loops:
            raise ReadOnlySourceError(
                'no writable task source is configured: add a source "directory" block'
            )
        return self.loops[self.default]

    def new_task_path(self, name: str) -> Path | None:
        """The absolute path `create` would write the task to (None when the source is not
        on the local disk): relative paths in a task sent through the API resolve against
        its directory, exactly as they will once the file exists."""
        source = self._default_loop().source
        return source.absolute_path(f"{name}.hcl") if isinstance(source, LocalFiles) else None

    async def create(self, spec: TaskSpec, *, request_id: str = "") -> LiveTask:
        problem = name_problem(spec.name)
        if problem:  # checked before any path is built from the name
            raise InvalidTaskError(f'task "{spec.name}": {problem}')
        loop = self._default_loop()
        rel = f"{spec.name}.hcl"
        try:
            data = checked_render(spec)
        except ValueError as exc:  # it would not read back from its file as sent
            raise InvalidTaskError(
                f'task "{spec.name}" cannot be written as a task file: {exc}'
            ) from None

        term = self.term()
        display = loop.source.display_path(rel)

        def check() -> None:
            # Checked again in the batch: a hand edit may have taken the name since.
            if spec.name in self.registry or self.reconciler.defines(spec.name):
                raise DuplicateTaskError(f"task with name {spec.name} already exists")

        def make() -> str:
            if loop.source.read(rel) is not None:
                raise DuplicateTaskError(f"file {display} already exists; it is never overwritten")
            change = FileChange(
                rel, data, create=True, action="create", task=spec.name, request_id=request_id
            )
            try:
                self._commit(loop, change, term)
            except FileExistsError:
                raise DuplicateTaskError(f"file {display} already exists") from None
            return rel

        await self.batcher(loop).submit(check, make)
        live = self.registry.get(spec.name)
        if live is None:
            problems = self.reconciler.problems().get(loop.source.display_path(rel), [])
            raise ReconcilerError(
                f"task {spec.name} was written to {loop.source.display_path(rel)} but did not "
                f"load: {'; '.join(problems) or 'unknown reason'}"
            )
        log.info("created task %s in %s", spec.name, live.provenance.file)
        return live

    async def _override(self, name: str, rel: str, change: Callable[[ConfigTasks], None]) -> None:
        """An API change of a configuration task: recorded as an override (the file is
        never written), then applied by a pass of the configuration's loop."""
        assert self.config is not None
        loop, tasks = self.config
        async with loop.lock:
            try:
                await asyncio.to_thread(change, tasks)
            except KeyError:
                raise ConflictError(f"task {name} is no longer in {rel}; try again") from None
            await loop.sync_paths([rel], deliberate=[name])

    def _configured(self, name: str) -> str | None:
        """The configuration file of `name` when it is a configuration task."""
        found = self.reconciler.file_of(name)
        if found is None or self.config is None:
            return None
        (source_name, rel), _ = found
        return rel if source_name == CONFIG_SOURCE else None

    def _located_at(self, name: str, loop: SourceLoop, rel: str) -> FileEntry:
        """The task's file entry, checked to be still where the request found it."""
        loop2, rel2, entry = self._locate(name)
        if (loop2, rel2) != (loop, rel):
            raise ConflictError(f"task {name} moved to {entry.display} during the request")
        return entry

    def _locate(self, name: str) -> tuple[SourceLoop, str, FileEntry]:
        found = self.reconciler.file_of(name)
        if found is None:
            raise NotFoundError(
                f"a task with the name '{name}' does not exist or has not been initialized yet"
            )
        (source_name, rel), entry = found
        loop = self.loops.get(source_name)
        if loop is None:
            raise ReadOnlySourceError(
                f"task {name} is defined in {entry.display}, which cannot be changed through "
                "the API; edit the file instead"
            )
        if entry.problems:
            raise ConflictError(
                f"task {name} cannot be changed: its file {entry.display} currently fails "
                f"to load: {'; '.join(entry.problems)}"
            )
        return loop, rel, entry

    async def _edit(
        self,
        name: str,
        change: Callable[[bytes, str], bytes | None],
        *,
        action: str,
        request_id: str,
        deliberate: tuple[str, ...] = (),
    ) -> str:
        """Edit the file that defines `name` in the source's next batch: `change(data,
        display)` gives its new bytes (None: remove the file). Returns the file as shown."""
        loop, rel, entry = self._locate(name)
        term = self.term()
        display = entry.display

        def check() -> None:
            self._located_at(name, loop, rel)  # it may have moved while queued

        def make() -> str:
            data = loop.source.read(rel)
            if data is None:
                raise ConflictError(f"file {display} disappeared during the request")
            new = _edited(display, lambda: change(data, display))
            if new != data:
                self._commit(
                    loop,
                    FileChange(rel, new, action=action, task=name, request_id=request_id),
                    term,
                )
            return rel

        await self.batcher(loop).submit(check, make, deliberate=deliberate)
        return display

    def _still_live(self, name: str) -> LiveTask:
        live = self.registry.get(name)
        if live is None:
            raise ConflictError(f"task {name} disappeared during the request")
        return live

    async def set_enabled(self, name: str, enabled: bool, *, request_id: str = "") -> LiveTask:
        configured = self._configured(name)
        if configured is not None:
            await self._override(
                name, configured, lambda tasks: tasks.set_enabled(name, enabled, request_id)
            )
            live = self._still_live(name)
            log.info(
                "task %s %s through the API (%s is unchanged)",
                name,
                "enabled" if enabled else "disabled",
                configured,
            )
            return live
        await self._edit(
            name,
            lambda data, display: edit.set_enabled(data, display, name, enabled),
            action="update",
            request_id=request_id,
        )
        return self._still_live(name)

    async def update(self, name: str, new: TaskSpec, *, request_id: str = "") -> LiveTask:
        """Make the task's definition `new` in its file, changing only the bytes of what
        changed (taskfiles.edit.update_task)."""
        configured = self._configured(name)
        if configured is not None:
            raise ReadOnlySourceError(
                f"task {name} is defined in the configuration file {configured}: only "
                "enabled can be changed through the API there; edit the file instead"
            )
        display = await self._edit(
            name,
            lambda data, display: edit.update_task(data, display, name, new),
            action="update",
            request_id=request_id,
        )
        log.info("updated task %s in %s", name, display)
        return self._still_live(name)

    async def delete(self, name: str, *, request_id: str = "") -> None:
        configured = self._configured(name)
        if configured is not None:
            await self._override(name, configured, lambda tasks: tasks.delete(name, request_id))
            log.info("deleted task %s through the API (%s is unchanged)", name, configured)
            return
        display = await self._edit(
            name,
            lambda data, display: edit.remove_task(data, display, name),
            action="delete",
            request_id=request_id,
            deliberate=(name,),
        )
        log.info("deleted task %s from %s", name, display)
