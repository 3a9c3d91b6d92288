"""The live task registry: what the daemon currently runs, with provenance.

Only the reconciler writes to it (one way in: every change comes from the files). Readers
(the API) get a monotonically increasing `version` so they can cache serialised views.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from reconciler.taskfiles.model import Provenance, TaskSpec


@dataclass(frozen=True)
class LiveTask:
    spec: TaskSpec
    provenance: Provenance
    source: str  # name of the source that defines it


@dataclass(frozen=True)
class RegistryChange:
    created: tuple[LiveTask, ...] = ()
    updated: tuple[tuple[LiveTask, LiveTask], ...] = ()  # (old, new)
    deleted: tuple[LiveTask, ...] = ()
    moved: tuple[LiveTask, ...] = ()  # same spec, new provenance

    def __bool__(self) -> bool:
        return bool(self.created or self.updated or self.deleted or self.moved)


Listener = Callable[[RegistryChange], None]


@dataclass
class Registry:
    _tasks: dict[str, LiveTask] = field(default_factory=dict)
    version: int = 0
    _listeners: list[Listener] = field(default_factory=list)

    def get(self, name: str) -> LiveTask | None:
        return self._tasks.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[LiveTask]:
        return iter(self._tasks.values())

    def names(self) -> list[str]:
        return list(self._tasks)

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def apply(self, change: RegistryChange) -> None:
        if not change:
            return
        for task in change.deleted:
            self._tasks.pop(task.spec.name, None)
        for task in change.created:
            self._tasks[task.spec.name] = task
        for _, new in change.updated:
            self._tasks[new.spec.name] = new
        for task in change.moved:
            self._tasks[task.spec.name] = task
        self.version += 1
        for listener in self._listeners:
            listener(change)
