"""Wiring: settings -> sources -> reconciler -> registry -> runs -> API, in one event loop.

uvicorn's Server runs as one task inside our loop; we own the signals: the first SIGINT or
SIGTERM drains gracefully (running Terraform jobs get `RUN_GRACE` seconds to finish, then
their process groups are stopped), a second one forces exit; SIGHUP re-reads the daemon
configuration's tasks and rescans every source.

The same core serves the CLI's one-shot modes: `start -once` (init and apply every enabled
task once, one at a time) and `start -inspect` (plan, apply nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import uvicorn

from reconciler._core.errors import ConfigError, ReconcilerError
from reconciler.api.app import ApiContext, create_app
from reconciler.api.webhooks import webhook_routes
from reconciler.config.load import gc_paused
from reconciler.config.tasks import DecodedFile, DecodedTask
from reconciler.daemon.notify import sd_notify
from reconciler.reconcile.cache import ParseCache
from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.reconcile.writeback import WriteBack
from reconciler.registry.status import StatusStore
from reconciler.registry.store import Registry
from reconciler.runner.driver import Driver
from reconciler.runner.process import ProcessRunner
from reconciler.runner.terraform import Terraform
from reconciler.runner.workspace import Workspaces
from reconciler.settings import Settings, global_defaults, load_settings
from reconciler.settings.model import DirectorySource as DirectorySettings
from reconciler.sources.base import FileContent, SourceUpdate
from reconciler.sources.directory import DirectorySource
from reconciler.triggers.scheduler import Scheduler

log = logging.getLogger(__name__)

CONFIG_SOURCE = "config"
RUN_GRACE = 30.0  # seconds running jobs get to finish at shutdown


def _unique(base: str, taken: dict[str, SourceLoop]) -> str:
    name, n = base, 1
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


def _fetcher(loops: list[SourceLoop]) -> Callable[[], None]:
    """What a signed webhook call does: schedule a fetch (debounced) of its sources."""

    def fetch() -> None:
        for loop in loops:
            loop.hint(None)

    return fetch


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Daemon:
    def __init__(
        self,
        settings: Settings,
        config_paths: Sequence[str],
        *,
        driver: Driver | None = None,
        workers: int | None = None,
        eager_init: bool = True,
    ) -> None:
        self.settings = settings
        self.config_paths = list(config_paths)
        self.registry = Registry()
        state = settings.working_dir / ".reconciler"
        self.cache = ParseCache(state / "parse-cache.pickle")
        self.reconciler = Reconciler(self.registry, self.cache)
        self.processes = ProcessRunner()
        self.status = StatusStore(state / "events.json")
        # The real driver owns a pool of Terraform workers: started before READY=1, closed
        # at shutdown.
        self.terraform: Terraform | None = None
        if driver is None:
            driver = self.terraform = Terraform(settings.driver, self.processes)
        self.scheduler = Scheduler(
            self.registry,
            self.status,
            Workspaces(settings.working_dir, settings.driver, settings.terraform_providers),
            driver,
            workers=workers or settings.driver.workers,
            eager_init=eager_init,
        )
        self.loops: dict[str, SourceLoop] = {}
        # webhook secret -> the loops a signed call should fetch
        self.hooks: dict[str, list[SourceLoop]] = {}
        writable: list[str] = []
        for src in settings.sources:
            if isinstance(src, DirectorySettings):
                name = _unique("directory", self.loops)
                self.loops[name] = SourceLoop(
                    DirectorySource(src.path, name=name),
                    self.reconciler,
                    allow_empty=src.allow_empty,
                )
                writable.append(name)
            else:
                # Imported here: `import git` fails on a machine without the git binary,
                # and directory-only setups must not need it.
                from reconciler.sources.git import GitSource

                name = _unique("git", self.loops)
                source = GitSource.from_settings(src, settings.working_dir, name=name)
                self.loops[name] = SourceLoop(
                    source, self.reconciler, rescan_interval=source.options.poll_interval_s
                )
                if not source.options.pinned:
                    writable.append(name)
                if src.webhook_secret:
                    self.hooks.setdefault(src.webhook_secret, []).append(self.loops[name])
        # API-created tasks go to the first writable source.
        self.writeback = WriteBack(self.reconciler, self.loops, next(iter(writable), None))
        self.server: _Server | None = None
        self._stopping = 0
        self._force = asyncio.Event()

    # --- tasks from the daemon configuration files ---------------------------------------

    def apply_config_tasks(self, settings: Settings) -> None:
        """Tasks written in the daemon configuration (CTS style) form a read-only source."""
        by_file: dict[str, DecodedFile] = {}
        for t in settings.tasks:
            by_file.setdefault(t.file, DecodedFile()).tasks.append(DecodedTask(t.spec, t.line))
        update = SourceUpdate()
        parsed: dict[str, DecodedFile | None] = {}
        for file, decoded in by_file.items():
            data = "\n".join(repr(t.spec) for t in decoded.tasks).encode()
            update.changed[file] = FileContent.of(data)
            parsed[file] = decoded
        for key in [k for k in self.reconciler.files if k[0] == CONFIG_SOURCE]:
            if key[1] not in by_file:
                update.changed[key[1]] = None
                parsed[key[1]] = None
        if not parsed:
            return  # no tasks in the configuration, now or before: no "config" source at all
        self.reconciler.add_source(CONFIG_SOURCE, allow_empty=True)
        self.reconciler.apply(
            CONFIG_SOURCE, update, parsed, lambda rel: rel, locate=lambda rel: Path(rel).absolute()
        )

    # --- lifecycle ---------------------------------------------------------------------

    async def load(self) -> None:
        with gc_paused():  # bulk parsing: avoid repeated full passes over young objects
            self.cache.load()
            self.status.load()
            self.apply_config_tasks(self.settings)
            for loop in self.loops.values():
                await loop.initial_load()
            # Events of tasks deleted while we were not running go with them.
            self.status.retain(self.registry.names())
            await asyncio.to_thread(self.cache.save)
        # The loaded tasks live as long as the daemon: keep them out of future collections,
        # which otherwise stall the loop (~200 ms at 10,000 tasks).
        gc.freeze()
        log.info(
            "loaded %d tasks (parse cache: %d hits, %d misses)",
            len(self.registry),
            self.cache.hits,
            self.cache.misses,
        )

    def app_context(self) -> ApiContext:
        return ApiContext(
            registry=self.registry,
            reconciler=self.reconciler,
            writeback=self.writeback,
            defaults=global_defaults(self.settings),
            runs=self.scheduler,
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        warm = asyncio.create_task(self._start_driver(), name="terraform-pool")
        await self.load()
        await warm
        app = create_app(self.app_context())
        app.router.routes.extend(
            webhook_routes({secret: _fetcher(loops) for secret, loops in self.hooks.items()})
        )
        config = uvicorn.Config(
            app,
            host=self.settings.bind_address,
            port=self.settings.port,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(config)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        background = [
            asyncio.create_task(src.run(), name=f"source:{name}")
            for name, src in self.loops.items()
        ]
        background.append(asyncio.create_task(self._save_cache_periodically(), name="cache"))
        background.append(asyncio.create_task(self.scheduler.run(), name="runner"))
        serve = asyncio.create_task(self.server.serve(), name="api")
        ready = asyncio.create_task(self._notify_when_started(), name="notify")
        try:
            done, _ = await asyncio.wait([serve, *background], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not serve and task.exception() is not None:
                    log.error("%s stopped: %r", task.get_name(), task.exception())
                    return 11
            if serve in done and serve.exception() is not None:
                log.error("API server failed: %s", serve.exception())
                return 11
            if self.server.started is False:
                log.error(
                    "API server could not start on %s:%d",
                    self.settings.bind_address,
                    self.settings.port,
                )
                return 11
            return 0
        finally:
            sd_notify("STOPPING=1")
            ready.cancel()
            await self.close_runs()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for src in self.loops.values():
                await asyncio.to_thread(src.close)
            await asyncio.to_thread(self.cache.save)
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)

    async def close_runs(self, grace: float = RUN_GRACE) -> None:
        """Let running Terraform jobs finish (at most `grace` seconds, less on a second
        signal), then stop whatever is left: no child process outlives the daemon."""
        await self.scheduler.shutdown(grace, self._force)
        if self.terraform is not None:
            await self.terraform.close()
        await self.processes.stop_all(grace=0)

    async def _start_driver(self) -> None:
        """Warm the Terraform workers while the tasks load (a failure is logged: the
        commands that need a worker then report it)."""
        if self.terraform is not None:
            try:
                await self.terraform.start()
            except ReconcilerError as exc:
                log.error("%s", exc.message)

    async def _notify_when_started(self) -> None:
        assert self.server is not None
        while not self.server.started:
            await asyncio.sleep(0.01)
        log.info("serving the API on http://%s:%d", self.settings.bind_address, self.settings.port)
        sd_notify(f"READY=1\nSTATUS=serving {len(self.registry)} tasks")

    async def _save_cache_periodically(self) -> None:
        while True:
            await asyncio.sleep(60)
            await asyncio.to_thread(self.cache.save)

    def stop(self) -> None:
        self._stopping += 1
        if self.server is None:
            return
        if self._stopping == 1:
            log.info("shutting down (send the signal again to force)")
            self.server.should_exit = True
        else:
            log.warning("forced shutdown")
            self.server.force_exit = True
            self._force.set()

    def reload(self) -> None:
        log.info("SIGHUP: re-reading the configuration's tasks and rescanning every source")
        try:
            settings = load_settings(self.config_paths)
        except ConfigError as exc:
            log.error("configuration not reloaded:\n%s", exc)
        else:
            if (settings.port, settings.bind_address) != (
                self.settings.port,
                self.settings.bind_address,
            ):
                log.warning("port and bind_address changes take effect after a restart")
            self.apply_config_tasks(settings)
        for src in self.loops.values():
            src.hint(None)


def run_daemon(config_paths: Sequence[str]) -> int:
    settings = load_settings(config_paths)
    for warning in settings.warnings:
        log.warning("%s", warning)
    Path(settings.working_dir).mkdir(parents=True, exist_ok=True)
    return asyncio.run(Daemon(settings, config_paths).run())


# --- one-shot modes ----------------------------------------------------------------------------


def _file_problems(daemon: Daemon) -> bool:
    problems = daemon.reconciler.problems()
    for errors in problems.values():
        for error in errors:
            log.error("%s", error)
    return bool(problems)


async def _finish(daemon: Daemon) -> None:
    await daemon.close_runs(grace=0)
    for src in daemon.loops.values():
        await asyncio.to_thread(src.close)


async def run_once(daemon: Daemon) -> bool:
    """Initialise every task and apply every enabled one, one at a time (CTS's -once).
    True when everything succeeded."""
    try:
        await daemon.load()
        ok = not _file_problems(daemon)
        for live in sorted(daemon.registry, key=lambda t: t.spec.name):
            if not live.spec.is_enabled:
                continue
            event = await daemon.scheduler.run_now(live.spec.name)
            if event is not None and not event.success:
                log.error("task %s failed: %s", live.spec.name, event.error)
                ok = False
        await daemon.scheduler.idle()
        if any(daemon.scheduler.state(name).init_error for name in daemon.registry.names()):
            ok = False
        return ok
    finally:
        await _finish(daemon)


async def run_inspect(daemon: Daemon, names: Sequence[str], out: Callable[[str], None]) -> bool:
    """Plan the named tasks (every task when none is named) and print each plan (CTS's
    -inspect); nothing is applied. True when every plan succeeded."""
    try:
        await daemon.load()
        ok = not _file_problems(daemon)
        missing = [name for name in names if name not in daemon.registry]
        if missing:
            for name in missing:
                out(f"task not found: {name}")
            return False
        for name in names or sorted(daemon.registry.names()):
            try:
                plan = await daemon.scheduler.inspect(name)
            except ReconcilerError as exc:
                out(f"==> task {name}: inspection failed: {exc.message}")
                ok = False
                continue
            out(f"==> task {name}: changes present: {str(plan.changes_present).lower()}")
            out(plan.text.rstrip("\n"))
        return ok
    finally:
        await _finish(daemon)
