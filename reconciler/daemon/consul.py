"""Consul, assembled for the daemon: a leader wait, the shared watchers, the catalog that
module inputs are read from, and the trigger source.

`ConsulTrigger` takes any `ConsulAPI`: an agent over HTTP (`from_settings`), or anything
else that answers Consul's HTTP API, so every backend goes through the same watchers,
conversions and trigger rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reconciler.consul.catalog import ConsulCatalog
from reconciler.consul.client import ConsulAPI, ConsulClient
from reconciler.consul.connection import client_config
from reconciler.consul.embedded import DirectoryCatalog
from reconciler.consul.leader import LeaderState, LeaderStatus, LeaderWait
from reconciler.consul.registration import SelfRegistration
from reconciler.consul.watchers import ConsulWatchers
from reconciler.settings.model import ConsulSettings, ServiceSettings, Settings
from reconciler.triggers.consul import ConsulSource


class ConsulTrigger:
    def __init__(
        self,
        api: ConsulAPI,
        *,
        watch: bool = True,
        client: ConsulClient | None = None,
        directory: DirectoryCatalog | None = None,
        registration: SelfRegistration | None = None,
        max_connections: int | None = None,
        on_demand: bool = False,
        service_blocks: Sequence[ServiceSettings] = (),
    ) -> None:
        """`watch`: build the trigger source (off for the one-shot modes, which read the
        catalog but react to nothing). `client` / `directory`: the backend behind `api`,
        opened and closed with the rest. `max_connections`: the
        client's connection cap, which the watchers keep their long polls under.
        `on_demand`: nothing is asked of Consul until a task's query needs it (CTS's
        default address, with no consul block): until then it is no health problem and
        the daemon does not register itself."""
        self.api = api
        self.on_demand = on_demand
        self._serving = False
        self._client = client
        self.directory = directory
        self.registration = registration
        self.leader = LeaderWait(api)
        self.watchers = ConsulWatchers(
            api, gate=self._leader_ready, max_connections=max_connections
        )
        self.catalog = ConsulCatalog(self.watchers)
        self.source: ConsulSource | None = (
            ConsulSource(self.watchers, service_blocks) if watch else None
        )
        self._started = False

    @classmethod
    def from_settings(
        cls,
        consul: ConsulSettings,
        *,
        watch: bool = True,
        register: Settings | None = None,
        on_demand: bool = False,
        service_blocks: Sequence[ServiceSettings] = (),
    ) -> ConsulTrigger:
        """Raises ConsulConfigError for a block that cannot make a client. `register`:
        the daemon's settings, to register it as a service (when its
        service_registration is enabled)."""
        config = client_config(consul)
        client = ConsulClient(config)
        registration = None
        if register is not None and consul.service_registration.enabled:
            registration = SelfRegistration(client, register)
        return cls(
            client,
            watch=watch,
            client=client,
            registration=registration,
            max_connections=config.max_connections,
            on_demand=on_demand,
            service_blocks=service_blocks,
        )

    @classmethod
    def from_directory(
        cls, path: Path, *, watch: bool = True, service_blocks: Sequence[ServiceSettings] = ()
    ) -> ConsulTrigger:
        catalog = DirectoryCatalog(path)
        return cls(catalog, watch=watch, directory=catalog, service_blocks=service_blocks)

    async def open(self) -> None:
        """Read the embedded catalog (if that is the backend) before any task is tracked:
        the tasks' first runs see its data."""
        if self.directory is not None:
            await self.directory.start()

    @property
    def description(self) -> str:
        if self.directory is not None:
            return f'catalog "directory" at {self.directory.root}'
        if self._client is not None:
            where = self._client.config.base_url
            return f"consul at {where}" + (" (when a task needs it)" if self.on_demand else "")
        return "consul"

    async def _leader_ready(self) -> None:
        self.start()
        await self.leader.wait_ready()

    def start(self) -> None:
        """Ask for a leader in the background; the watchers wait for one."""
        if not self._started:
            self._started = True
            self.leader.start()
            if self._serving:
                self._register()

    def start_unless_on_demand(self) -> None:
        if not self.on_demand:
            self.start()

    def serving(self) -> None:
        """The API serves: register the daemon in Consul (in the background), once
        Consul is in use."""
        self._serving = True
        if self._started or not self.on_demand:
            self._register()

    def _register(self) -> None:
        if self.registration is not None:
            self.registration.start()

    def health(self) -> str | None:
        """Why Consul is not usable yet (None when it is, or when nothing needs it)."""
        if not self._started:
            return None
        state: LeaderState = self.leader.state()
        if state.status is LeaderStatus.READY:
            return None
        detail = f": {state.error}" if state.error else ""
        return f"consul: waiting for a leader{detail}"

    async def aclose(self) -> None:
        if self.registration is not None:
            await self.registration.close()  # deregister while the client is open
        if self.source is not None:
            await self.source.close()
        await self.watchers.aclose()
        await self.leader.stop()
        if self._client is not None:
            await self._client.aclose()
        if self.directory is not None:
            await self.directory.aclose()
