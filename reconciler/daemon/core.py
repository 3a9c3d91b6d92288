"""Building the core once: registry, reconciler, source loops, write-back, run scheduler
and task commands, wired the same way for the daemon, the tests and the benchmarks.

`Core` takes what differs between them (the sources, whether and how Terraform runs, an
optional gate) and wires the rest. The gate (high-availability leadership on etcd,
reconciler.coordination) is the one seam both the task commands and the run queue
consult: None lets everything through, a string is the reason this instance must not
change or run anything now.

`core_from_settings` is the daemon's recipe: the sources of its configuration, Terraform
as configured, the parse cache and events under `<working_dir>/.reconciler/`, and the
tasks written in the configuration files as a read-only source on a loop of its own.

Build it inside the running event loop: the loops' locks belong to that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reconciler._core.errors import ConfigError, Problem, SourceError
from reconciler._core.metrics import NULL, Recorder
from reconciler.commands import Gate, TaskCommands
from reconciler.commands.policy import ApiTaskPolicy
from reconciler.consul.connection import ConsulConfigError
from reconciler.consul.kv import ConsulKV
from reconciler.consul.validate import scope_problem
from reconciler.daemon.consul import ConsulTrigger
from reconciler.reconcile.cache import ParseCache
from reconciler.reconcile.configtasks import ConfigTasks
from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.reconcile.overrides import OverrideStore
from reconciler.reconcile.writeback import WriteBack
from reconciler.registry.status import StatusStore
from reconciler.registry.store import Registry
from reconciler.runner.driver import Driver
from reconciler.runner.inputs import Catalog
from reconciler.runner.process import ProcessRunner
from reconciler.runner.state import StatePolicy
from reconciler.runner.templates import ProviderTemplates
from reconciler.runner.terraform import Terraform
from reconciler.runner.vault import VaultClient
from reconciler.runner.workspace import Workspaces
from reconciler.runs.execute import APPLY_RETRY
from reconciler.runs.scheduler import Scheduler
from reconciler.settings import Settings, global_defaults
from reconciler.settings.model import (
    CONSUL_DEFAULT,
    ApiTasksSettings,
    ConfiguredTask,
    ServiceSettings,
)
from reconciler.sources.base import RootedFiles, SourcePlan
from reconciler.sources.directory import DirectorySource
from reconciler.taskfiles.load import gc_paused
from reconciler.taskfiles.model import GlobalDefaults, TaskSpec
from reconciler.triggers.buffer import BufferedSource, buffered
from reconciler.triggers.consul import NoConsulSource
from reconciler.triggers.schedule import CronSource
from reconciler.triggers.sources import TriggerSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunPlan:
    """How tasks run; a core without one only changes files."""

    workspaces: Workspaces
    driver: Driver
    status: StatusStore
    workers: int = 4
    catalog: Catalog | None = None
    retry_delay: Callable[[int], float] = APPLY_RETRY.delay
    eager_init: bool = True
    # What fires runs besides cron schedules (Consul conditions), and what owns them.
    consul: ConsulTrigger | None = None
    defaults: GlobalDefaults = field(default_factory=GlobalDefaults)  # inherited buffer period
    apply_on_start: str = "changed"
    recorder: Recorder = NULL  # run metrics
    service_blocks: Sequence[ServiceSettings] = ()  # the deprecated service blocks


class Core:
    def __init__(
        self,
        sources: Sequence[SourcePlan],
        *,
        runs: RunPlan | None = None,
        cache: ParseCache | None = None,
        gate: Gate | None = None,
        term: Callable[[], int] = lambda: 0,
        overrides: OverrideStore | None = None,
        api_tasks: ApiTasksSettings | None = None,
        config_dir: Path | None = None,
    ) -> None:
        """`term`: the leader's term that write-back commits record (high availability).
        `overrides`: where API changes to the configuration's tasks are kept."""
        self.registry = Registry()
        self.overrides = overrides or OverrideStore()
        self.cache = cache or ParseCache()
        self.reconciler = Reconciler(self.registry, self.cache)
        self.scheduler: Scheduler | None = None
        self.consul = runs.consul if runs is not None else None
        self.defaults = runs.defaults if runs is not None else GlobalDefaults()
        self._buffer: BufferedSource | None = None
        if runs is not None:
            triggers: list[TriggerSource] = [CronSource()]
            if runs.consul is None:
                triggers.append(NoConsulSource())
            elif runs.consul.source is not None:
                self._buffer = buffered(runs.consul.source, runs.defaults)
                triggers.append(self._buffer)
            self.scheduler = Scheduler(
                self.registry,
                runs.status,
                runs.workspaces,
                runs.driver,
                catalog=runs.consul.catalog if runs.consul is not None else runs.catalog,
                workers=runs.workers,
                retry_delay=runs.retry_delay,
                eager_init=runs.eager_init,
                sources=triggers,
                gate=gate,
                apply_on_start=runs.apply_on_start,
                recorder=runs.recorder,
                service_blocks=runs.service_blocks,
            )
        self._recorder = runs.recorder if runs is not None else NULL
        self.plans = {plan.source.name: plan for plan in sources}
        self.source_names_used = set(self.plans)  # never reused: see source_plans
        self.loops = {name: self._new_loop(plan) for name, plan in self.plans.items()}
        self.hooks: dict[str, list[SourceLoop]] = {}
        self.writeback = WriteBack(self.reconciler, {}, None, term=term)
        self._wire_sources()
        self.commands = TaskCommands(
            self.reconciler,
            self.writeback,
            self.scheduler,
            gate=gate,
            check=self._consul_check if self.consul is not None else None,
            policy=(
                ApiTaskPolicy(api_tasks, self._source_roots, config_dir or Path.cwd())
                if api_tasks is not None
                else None
            ),
        )
        self.config_tasks: ConfigTasks | None = None
        self.config_loop: SourceLoop | None = None
        self._background: list[asyncio.Task[None]] = []
        self._loop_tasks: dict[str, asyncio.Task[None]] = {}
        self._sources_changed = asyncio.Event()

    def _source_roots(self) -> list[Path]:
        """Where the task sources keep their files now (a git source: its whole clone)."""
        return [
            p.source.files_root() for p in self.plans.values() if isinstance(p.source, RootedFiles)
        ]

    def _new_loop(self, plan: SourcePlan) -> SourceLoop:
        return SourceLoop(
            plan.source,
            self.reconciler,
            allow_empty=plan.allow_empty,
            rescan_interval=plan.rescan_interval,
            retry_interval=plan.retry_interval,
            recorder=self._recorder,
        )

    def _wire_sources(self) -> None:
        """Webhook secrets and the write-back target follow the sources."""
        self.hooks = {}
        for name, plan in self.plans.items():
            if plan.webhook_secret:
                self.hooks.setdefault(plan.webhook_secret, []).append(self.loops[name])
        # API-created tasks go to the first writable source.
        writable = next((name for name, plan in self.plans.items() if plan.writable), None)
        self.writeback.retarget(dict(self.loops), writable)

    def set_defaults(self, defaults: GlobalDefaults) -> None:
        """What tasks inherit changed (a reload): the API shows, and the buffer uses, the
        new values."""
        self.defaults = defaults
        if self._buffer is not None:
            self._buffer.set_defaults(defaults)

    async def _consul_check(self, spec: TaskSpec) -> str | None:
        assert self.consul is not None
        return await scope_problem(self.consul.api, spec)

    @property
    def status(self) -> StatusStore | None:
        return self.scheduler.status if self.scheduler is not None else None

    # --- loading -------------------------------------------------------------------------

    async def load(self, config_tasks: Iterable[ConfiguredTask] = ()) -> None:
        """The first pass of every source (the configuration's tasks first, as CTS
        reads them first); the parse cache and the events are loaded before."""
        if self.consul is not None:
            await self.consul.open()
        with gc_paused():  # bulk parsing: avoid repeated full passes over young objects
            self.cache.load()
            if self.status is not None:
                self.status.load()
            await self.set_config_tasks(config_tasks)
            for loop in self.loops.values():
                await loop.initial_load()
            if self.status is not None:
                # Events of tasks deleted while we were not running go with them.
                self.status.retain(self.registry.names())
            await asyncio.to_thread(self.cache.save)

    async def set_config_tasks(self, tasks: Iterable[ConfiguredTask]) -> None:
        """Make the configuration's tasks these (at start, and when it is re-read): one
        full pass of their source's loop, under its lock like any other pass."""
        tasks = list(tasks)
        if self.config_loop is None:
            if not tasks:
                return  # none now or before: no "config" source in the status at all
            self.config_tasks = await asyncio.to_thread(ConfigTasks, tasks, self.overrides)
            self.config_loop = SourceLoop(self.config_tasks, self.reconciler, allow_empty=True)
            self.writeback.attach_config(self.config_loop, self.config_tasks)
        else:
            assert self.config_tasks is not None
            ended = self.config_tasks.replace(tasks)
            if ended:
                async with self.config_loop.lock:  # one writer of the overrides at a time
                    await asyncio.to_thread(self.overrides.save)
        await self.config_loop.initial_load()

    # --- running -------------------------------------------------------------------------

    def start(self) -> list[asyncio.Task[None]]:
        """The root tasks of the core: the source loops' supervisor, and the scheduler.
        The configuration's source has no loop task: it changes only on
        `set_config_tasks`."""
        for name, loop in self.loops.items():
            self._start_loop(name, loop)
        self._background = [asyncio.create_task(self._supervise_sources(), name="sources")]
        if self.scheduler is not None:
            self._background.append(asyncio.create_task(self.scheduler.run(), name="runner"))
        if self.consul is not None:
            self.consul.start_unless_on_demand()
        return list(self._background)

    def _start_loop(self, name: str, loop: SourceLoop) -> None:
        self._loop_tasks[name] = asyncio.create_task(loop.run(), name=f"source:{name}")
        self._sources_changed.set()

    async def _supervise_sources(self) -> None:
        """Wait on every source loop (they come and go with `set_sources`); a loop that
        fails ends this task with its exception, as a root task of the daemon."""
        while True:
            self._sources_changed.clear()
            changed = asyncio.create_task(self._sources_changed.wait())
            try:
                done, _ = await asyncio.wait(
                    [changed, *self._loop_tasks.values()], return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                changed.cancel()
            for task in done:
                failure = None if task is changed or task.cancelled() else task.exception()
                if failure is not None:
                    raise failure

    async def set_sources(self, plans: Sequence[SourcePlan]) -> bool:
        """Make the task sources these (a reload): a source configured as before keeps
        its loop and its tasks; a new one is read in full first, and only when every new
        one could be read do they replace the removed ones, in one reconcile (see
        Reconciler.replace_sources). False when a new source could not be read: then
        nothing changed."""
        unmatched = dict(self.plans)
        wanted: dict[str, SourcePlan] = {}  # the new order: kept ones under their names
        added: list[SourcePlan] = []
        for plan in plans:
            match = next(
                (n for n, p in unmatched.items() if p.key is not None and p.key == plan.key),
                None,
            )
            if match is None:
                added.append(plan)
                wanted[plan.source.name] = plan
            else:
                wanted[match] = unmatched.pop(match)
        removed = list(unmatched)
        if not added and not removed:
            if list(self.plans) != list(wanted):
                self.plans = wanted
                self._wire_sources()
            return True
        new_loops = {plan.source.name: self._new_loop(plan) for plan in added}
        self.source_names_used |= set(new_loops)
        try:
            scans = [await loop.scan() for loop in new_loops.values()]
        except SourceError as exc:
            log.error("task sources not changed: %s", exc.message)
            for name, loop in new_loops.items():
                self.reconciler.forget_source(name)
                await asyncio.to_thread(loop.close)
            return False
        async with contextlib.AsyncExitStack() as stack:
            # No API write or pass is half-way through a source that goes away; its loop
            # is stopped before the lock is released, so no pass of it can follow.
            for name in removed:
                await stack.enter_async_context(self.loops[name].lock)
            for name in removed:
                task = self._loop_tasks.pop(name, None)
                if task is not None:
                    task.cancel()
            change = self.reconciler.replace_sources(removed, scans)
        gone = [self.loops.pop(name) for name in removed]
        self.plans = wanted
        self.loops = {name: self.loops.get(name) or new_loops[name] for name in wanted}
        self._wire_sources()
        for name, loop in new_loops.items():
            if self._background:  # started: the new loops follow their sources from now on
                self._start_loop(name, loop)
        for loop in gone:
            await asyncio.to_thread(loop.close)
        log.info(
            "task sources: %s added, %s removed; %d tasks created, %d updated, %d deleted",
            ", ".join(new_loops) or "none",
            ", ".join(removed) or "none",
            len(change.created),
            len(change.updated),
            len(change.deleted),
        )
        return True

    async def close(self, grace: float = 0.0, force: asyncio.Event | None = None) -> None:
        """Stop the runs (running jobs get `grace` seconds), the loops, their sources."""
        if self.scheduler is not None:
            await self.scheduler.shutdown(grace, force)
            await self.scheduler.executor.workspaces.templates.aclose()
        if self.consul is not None:
            await self.consul.aclose()
        tasks = [*self._background, *self._loop_tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for loop in self.loops.values():
            await asyncio.to_thread(loop.close)


def _unique(base: str, taken: set[str]) -> str:
    name, n = base, 1
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    taken.add(name)
    return name


IMPLICIT_SOURCE_NOTE = (
    "no source block is configured: tasks created through the API or the CLI are written "
    "here, and read back at every start"
)


def implicit_task_directory(settings: Settings) -> Path:
    """Where API-created tasks go when no source block is configured: a directory of the
    working directory whose name cannot be a task's (task names have no dot), so it never
    meets a task's workspace `<working_dir>/<task>`."""
    return Path(settings.working_dir) / "tasks.d"


def source_plans(settings: Settings, taken: Iterable[str] = ()) -> list[SourcePlan]:
    """The task sources a daemon configuration names, in its order; their names are not
    among `taken` (the names a running core has used: a git source's clone is kept
    under its name)."""
    plans: list[SourcePlan] = []
    names = set(taken)
    for src in settings.sources:
        plans.append(src.plan(settings.working_dir, _unique(src.kind, names)))
    implicit = implicit_task_directory(settings)
    if not settings.sources or _holds_task_files(implicit):
        # CTS has no task sources (its API tasks live in memory): ours are written here.
        # Once it holds tasks it stays a source, after the configured ones, so a source
        # block added later does not delete them.
        implicit.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory = DirectorySource(
            implicit, name=_unique("directory", names), note=IMPLICIT_SOURCE_NOTE
        )
        plans.append(SourcePlan(directory, allow_empty=True, key=("implicit", implicit)))
    return plans


def _holds_task_files(directory: Path) -> bool:
    try:
        return any(entry.name.endswith((".hcl", ".json")) for entry in os.scandir(directory))
    except OSError:
        return False


def core_from_settings(
    settings: Settings,
    *,
    driver: Driver | None = None,
    processes: ProcessRunner | None = None,
    workers: int | None = None,
    eager_init: bool = True,
    gate: Gate | None = None,
    term: Callable[[], int] = lambda: 0,
    watch: bool = True,
    recorder: Recorder = NULL,
) -> Core:
    """The daemon's core: its sources, Terraform as configured (`driver` overrides it),
    the parse cache and events kept under `<working_dir>/.reconciler/`, Consul when the
    configuration has a consul block (`watch` False: its data is read, nothing fires)."""
    state = Path(settings.working_dir) / ".reconciler"
    consul = consul_trigger(settings, watch=watch)
    kv = ConsulKV(consul.api)
    vault = VaultClient(settings.vault) if settings.vault and settings.vault.enabled else None
    workspaces = Workspaces(
        settings.working_dir,
        settings.driver,
        settings.terraform_providers,
        policy=StatePolicy.from_settings(settings),
        kv=kv,
        templates=ProviderTemplates(settings.terraform_providers, kv=kv, vault=vault),
    )
    runs = RunPlan(
        workspaces,
        driver or Terraform(settings.driver, processes),
        StatusStore(state / "events.json"),
        workers=workers or settings.driver.workers,
        eager_init=eager_init,
        consul=consul,
        defaults=global_defaults(settings),
        apply_on_start=settings.driver.apply_on_start,
        recorder=recorder,
        service_blocks=settings.services,
    )
    return Core(
        source_plans(settings),
        runs=runs,
        cache=ParseCache(state / "parse-cache.json"),
        gate=gate,
        term=term,
        overrides=OverrideStore(state / "config-overrides.json"),
        api_tasks=settings.api_tasks,
        config_dir=Path(settings.config_files[0]).parent if settings.config_files else None,
    )


def consul_trigger(settings: Settings, *, watch: bool = True) -> ConsulTrigger:
    """Where Consul conditions and module inputs read from: the embedded catalog when one
    is configured (or its default directory exists); else the Consul agent of the consul
    block, of CONSUL_HTTP_ADDR, or of CTS's default address, which is then only asked
    once a task needs it."""
    if settings.catalog_path is not None:
        return ConsulTrigger.from_directory(
            settings.catalog_path, watch=watch, service_blocks=settings.services
        )
    try:
        return ConsulTrigger.from_settings(
            settings.consul,
            watch=watch,
            register=settings if watch else None,
            on_demand=settings.consul_from == CONSUL_DEFAULT,
            service_blocks=settings.services,
        )
    except ConsulConfigError as exc:
        raise ConfigError(Problem(str(exc), ("consul",))) from None
