"""The instances of every service whose name matches a regexp, kept current.

CTS (tmplfunc/services_regex.go) long-polls only the catalog and, on each catalog change,
sleeps 10 s and reads the health of every matching service once: a change of health
alone (an instance turning critical) is not seen until the catalog changes for another
reason. Here the catalog watcher only says which names match; each matching name has its
own shared health watcher, so health changes are seen as they happen, and no sleep is
needed for new instances that start critical: they show up once they pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reconciler.consul.queries import CatalogServicesQuery, HealthServiceQuery, Query
from reconciler.consul.watchers import (
    ConsulWatchers,
    ErrorCallback,
    Subscription,
    Update,
)
from reconciler.runner.inputs import ServiceInstance
from reconciler.taskfiles.goregexp import compile_regexp

Instances = tuple[ServiceInstance, ...]


class RegexpServicesWatch:
    def __init__(
        self,
        watchers: ConsulWatchers,
        regexp: str,
        callback: Callable[[Instances], None],
        *,
        datacenter: str = "",
        namespace: str = "",
        filter: str = "",
        on_error: ErrorCallback | None = None,
    ) -> None:
        self._watchers = watchers
        self._pattern = compile_regexp(regexp)
        self._callback = callback
        self._on_error = on_error
        self._dc, self._ns, self._filter = datacenter, namespace, filter
        self._catalog: Subscription | None = None
        self._names: tuple[str, ...] | None = None
        self._health: dict[str, Subscription] = {}
        self._last: Instances | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._catalog = self._watchers.subscribe(
            CatalogServicesQuery(datacenter=self._dc, namespace=self._ns),
            self._catalog_changed,
            project=self._matching,
            on_error=self._on_error,
        )

    def queries(self) -> list[Query]:
        """The catalog query and the health query of every matching service."""
        out: list[Query] = [self._catalog.query] if self._catalog is not None else []
        return out + [sub.query for sub in self._health.values()]

    def _matching(self, data: object) -> tuple[str, ...]:
        assert isinstance(data, tuple)
        return tuple(name for name, _tags in data if self._pattern.search(name))

    def _catalog_changed(self, update: Update) -> None:
        names = update.data
        assert isinstance(names, tuple)
        self._names = names
        for name in set(self._health) - set(names):
            task = asyncio.get_running_loop().create_task(self._health.pop(name).close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        for name in names:
            if name not in self._health:
                query = HealthServiceQuery(
                    name=name, datacenter=self._dc, namespace=self._ns, filter=self._filter
                )
                self._health[name] = self._watchers.subscribe(
                    query, self._health_changed, on_error=self._on_error
                )
        self._emit()

    def _health_changed(self, update: Update) -> None:
        self._emit()

    def snapshot(self) -> Instances | None:
        """Every matching instance, or None until each matching service has answered."""
        if self._names is None:
            return None
        instances: list[ServiceInstance] = []
        for name in self._names:
            data = self._health[name].snapshot()
            if data is None:
                return None
            assert isinstance(data, tuple)
            instances.extend(data)
        instances.sort(key=lambda i: (i.node, i.id))
        return tuple(instances)

    def _emit(self) -> None:
        # A new name's first answer has not come yet: wait for it rather than report
        # a set that is missing a service.
        current = self.snapshot()
        if current is None or current == self._last:
            return
        self._last = current
        self._callback(current)

    async def close(self) -> None:
        subs = [s for s in (self._catalog, *self._health.values()) if s is not None]
        self._catalog = None
        self._health.clear()
        for sub in subs:
            await sub.close()
        if self._closing:
            await asyncio.gather(*self._closing)
