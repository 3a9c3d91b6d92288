"""Wiring: settings -> sources -> reconciler -> registry -> runs -> API, in one event loop.

uvicorn's Server runs as one task inside our loop; we own the signals: the first SIGINT or
SIGTERM drains gracefully (running Terraform jobs get `RUN_GRACE` seconds to finish, then
their process groups are stopped), a second one forces exit; SIGHUP re-reads the daemon
configuration (its tasks, sources, token, log and buffer settings, TLS certificates, the
driver's workers and logs; the rest is named as needing a restart) and rescans every source.

The same core serves the CLI's one-shot modes: `start -once` (init and apply every enabled
task once, one at a time) and `start -inspect` (plan, apply nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import uvicorn
from starlette.applications import Starlette

from reconciler._core.errors import ConfigError, ReconcilerError
from reconciler.api.app import ApiContext, create_app
from reconciler.api.metrics import METRICS_PATH
from reconciler.api.status import source_problems
from reconciler.api.webhooks import Trigger, webhook_routes
from reconciler.coordination.cluster import Cluster
from reconciler.coordination.etcd import EtcdError
from reconciler.daemon.core import core_from_settings, implicit_task_directory, source_plans
from reconciler.daemon.logs import setup_logging
from reconciler.daemon.metrics import PrometheusMetrics
from reconciler.daemon.notify import reloading_message, sd_notify, watchdog_interval
from reconciler.daemon.server import (
    GuardedEventLoop,
    ServerTLS,
    raise_open_file_limit,
    server_config,
)
from reconciler.reconcile.loop import SourceLoop
from reconciler.registry.store import Registry
from reconciler.runner.driver import Driver
from reconciler.runner.process import ProcessRunner
from reconciler.runner.terraform import Terraform
from reconciler.runs.scheduler import Scheduler
from reconciler.settings import Settings, TLSSettings, global_defaults, load_settings
from reconciler.settings.model import TerraformDriverSettings

log = logging.getLogger(__name__)

RUN_GRACE = 30.0  # seconds running jobs get to finish at shutdown
STATUS_INTERVAL = 5.0  # how often STATUS= follows the counts without a watchdog


def _fetcher(loops: list[SourceLoop]) -> Callable[[], None]:
    """What a signed webhook call does: schedule a fetch (debounced) of its sources."""

    def fetch() -> None:
        for loop in loops:
            loop.hint(None)

    return fetch


def daemon_app(
    context: ApiContext,
    hooks: Mapping[str, Trigger] | Callable[[], Mapping[str, Trigger]],
    metrics: PrometheusMetrics,
) -> Starlette:
    """Every route the daemon serves: the API, the webhook (`hooks` maps each source's
    webhook_secret to what it triggers: a mapping serves the route only when it has a
    secret, a callable always, asked per call) and /metrics."""
    return create_app(
        context, extra_routes=[*webhook_routes(hooks, recorder=metrics), metrics.route()]
    )


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
        watch: bool = True,
    ) -> None:
        """`watch`: Consul conditions fire runs, and a high-availability member joins its
        cluster (both off in the one-shot modes, which run or plan here and exit)."""
        self.settings = settings
        self._token = settings.api_token  # the event loop owns it; a reload replaces it
        self.config_paths = list(config_paths)
        self.processes = ProcessRunner()
        # The real driver owns a pool of Terraform workers: started before READY=1, closed
        # at shutdown.
        self.terraform: Terraform | None = None
        if driver is None:
            driver = self.terraform = Terraform(settings.driver, self.processes)
        self.metrics = PrometheusMetrics()
        # High availability: the cluster's leader writes and runs; the gate says so.
        self.cluster: Cluster | None = None
        if settings.high_availability is not None and watch:
            self.cluster = Cluster(
                settings.high_availability,
                settings.id,
                on_change=self._leadership_changed,
                on_members=self._members_changed,
            )
        self.core = core_from_settings(
            settings,
            driver=driver,
            processes=self.processes,
            workers=workers,
            eager_init=eager_init,
            gate=self.cluster.gate if self.cluster is not None else None,
            term=(lambda: self.cluster.term if self.cluster is not None else 0),
            watch=watch,
            recorder=self.metrics,
        )
        self.metrics.watch(self.core, self.terraform.pool if self.terraform else None)
        if self.cluster is not None and self.core.scheduler is not None:
            queue = self.core.scheduler.queue
            queue.on_applied = self.cluster.publish_applied
            if self.cluster.settings.shard_runs:
                # Every member runs the tasks it owns, each run under the task's lock; the
                # leader's gate is for API changes only.
                queue.gate, queue.claims = None, self.cluster.claim
        self.server: _Server | None = None
        self.tls: ServerTLS | None = None  # the API's certificates, when served over TLS
        self._stopping = 0
        self._force = asyncio.Event()
        self._reloads: set[asyncio.Task[None]] = set()

    @property
    def registry(self) -> Registry:
        return self.core.registry

    @property
    def scheduler(self) -> Scheduler:
        assert self.core.scheduler is not None
        return self.core.scheduler

    # --- lifecycle ---------------------------------------------------------------------

    async def load(self) -> None:
        await self.core.load(self.settings.tasks)
        if not self.settings.sources:
            log.info(  # the implicit source (see source_plans)
                "no source block is configured: tasks created through the API are written to %s",
                implicit_task_directory(self.settings),
            )
        if self.core.consul is not None:
            log.info(
                "Consul conditions and module inputs read from %s", self.core.consul.description
            )
        # The loaded tasks live as long as the daemon: keep them out of future collections,
        # which otherwise stall the loop (~200 ms at 10,000 tasks).
        gc.freeze()
        log.info(
            "loaded %d tasks (parse cache: %d hits, %d misses)",
            len(self.registry),
            self.core.cache.hits,
            self.core.cache.misses,
        )

    def _leadership_changed(self, leading: bool) -> None:
        """A new leader runs every task once (CTS does the same), with what it sees now,
        except the tasks whose definition and inputs are what the cluster last applied;
        one that lost leadership starts nothing more (the gate) and lets a running job
        finish."""
        assert self.cluster is not None
        if leading:
            # The old leader's last commits may be newer than our last poll: fetch now.
            for loop in self.core.loops.values():
                loop.hint(None)
        if leading and self.core.scheduler is not None and not self.cluster.settings.shard_runs:
            task = asyncio.get_running_loop().create_task(self._take_over(), name="takeover")
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)
        self._notify_ready()

    def _members_changed(self, before: tuple[str, ...], now: tuple[str, ...]) -> None:
        """Runs spread over the members: the tasks this member owns from now on run once
        (what another member already applied for the same inputs is not run again)."""
        cluster, scheduler = self.cluster, self.core.scheduler
        if cluster is None or scheduler is None or not cluster.settings.shard_runs or not now:
            return
        gained = {
            name
            for name in self.registry.names()
            if cluster.owns(name, now) and not cluster.owns(name, before)
        }
        if gained:
            log.info("ha: %d tasks run on this member from now on", len(gained))
            scheduler.trigger_all(retry=False, reason="owner", everything=True, only=gained)

    async def _take_over(self) -> None:
        assert self.cluster is not None and self.core.scheduler is not None
        try:
            known = self.core.scheduler.adopt_applied(await self.cluster.applied())
            log.info("ha: %d tasks applied by earlier leaders are not applied again", known)
        except EtcdError as exc:
            log.warning("ha: what earlier leaders applied is unknown (%s): applying all", exc)
        self.core.scheduler.trigger_all(retry=False, reason="leader", everything=True)

    def app_context(self) -> ApiContext:
        cluster = self.cluster
        return ApiContext(
            self.core.commands,
            defaults=lambda: self.core.defaults,
            health=self._health,
            token=lambda: self._token,
            recorder=self.metrics,
            open_paths=frozenset() if self.settings.metrics_token else frozenset({METRICS_PATH}),
            redirect=(lambda: cluster.gate()) if cluster is not None else None,
            cluster=cluster.status if cluster is not None else None,
            role=cluster.role if cluster is not None else None,
        )

    def _health(self) -> list[str]:
        problems = source_problems(self.core.reconciler)
        consul = self.core.consul.health() if self.core.consul is not None else None
        if self.cluster is not None and self.cluster.problem is not None:
            problems.append(f"high availability: {self.cluster.problem}")
        return [*problems, consul] if consul else problems

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        warm = asyncio.create_task(self._start_driver(), name="terraform-pool")
        await self.load()
        await warm
        # Asked per call: a reload may add or remove sources with a webhook_secret.
        app = daemon_app(
            self.app_context(),
            lambda: {secret: _fetcher(loops) for secret, loops in self.core.hooks.items()},
            self.metrics,
        )
        if self.settings.tls.enabled:
            self.tls = ServerTLS(self.settings.tls)
        config = server_config(
            app,
            host=self.settings.bind_address,
            port=self.settings.port,
            tls=self.tls or self.settings.tls,
            open_files=raise_open_file_limit(),
        )
        self.server = _Server(config)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        background = self.core.start()
        member = None
        if self.cluster is not None:
            member = asyncio.create_task(self.cluster.run(), name="cluster")
            background.append(member)
        background.append(asyncio.create_task(self._save_cache_periodically(), name="cache"))
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
            if self.cluster is not None and member is not None:
                # After the runs: another member may start its own once we leave.
                member.cancel()
                await asyncio.gather(member, return_exceptions=True)
                await self.cluster.close()
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await self.core.close()
            await asyncio.to_thread(self.core.cache.save)
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
        scheme = "https" if self.settings.tls.enabled else "http"
        log.info(
            "serving the API on %s://%s:%d", scheme, self.settings.bind_address, self.settings.port
        )
        self._notify_ready()
        if self.core.consul is not None:
            self.core.consul.serving()
        interval = watchdog_interval()
        last = ""
        while True:
            # The watchdog pings come from the event loop itself: a loop that hangs stops
            # them. STATUS follows the counts (sent when they change).
            await asyncio.sleep(interval or STATUS_INTERVAL)
            line = self.status_line()
            message = f"STATUS={line}" if line != last else ""
            if interval is not None:
                message = "WATCHDOG=1" + (f"\n{message}" if message else "")
            if message:
                sd_notify(message)
            last = line

    def _notify_ready(self) -> None:
        sd_notify(f"READY=1\nSTATUS={self.status_line()}")

    def status_line(self) -> str:
        """What `systemctl status` shows: tasks and how far their runs are."""
        line = f"serving {len(self.registry)} tasks"
        if self.core.scheduler is not None:
            p = self.core.scheduler.progress()
            line += f": {p['applied']} applied, {p['pending']} with work pending"
            if p["init_errors"]:
                line += f", {p['init_errors']} failing to initialise"
        return line

    async def _save_cache_periodically(self) -> None:
        while True:
            await asyncio.sleep(60)
            await asyncio.to_thread(self.core.cache.save)

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
        log.info("SIGHUP: re-reading the configuration and rescanning every source")
        sd_notify(reloading_message())
        try:
            settings = load_settings(self.config_paths)
        except ConfigError as exc:
            log.error("configuration not reloaded:\n%s", exc)
            sd_notify(f"READY=1\nSTATUS=reload failed, running configuration kept: {exc}")
        else:
            task = asyncio.get_running_loop().create_task(self._reload(settings), name="reload")
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)
        for src in self.core.loops.values():
            src.hint(None)

    async def _reload(self, settings: Settings) -> None:
        """Apply what a reload applies (RELOADED, RELOADED_KEYS) and name the rest; what
        cannot be applied (unusable certificates, an unreadable new source) is reported
        and the running value kept, so the next reload tries again."""
        old, failed = self.settings, []
        later = restart_needed(old, settings)
        if later:
            log.warning("changed, but taking effect only after a restart: %s", ", ".join(later))
        if (settings.log_level, settings.log_format) != (old.log_level, old.log_format):
            setup_logging(settings.log_level, settings.log_format)
            log.info("log_level %s, log_format %s", settings.log_level, settings.log_format)
        if settings.api_token != self._token:
            self._token = settings.api_token
            log.info("the API token changed: requests need the new one from now on")
        if settings.buffer_period != old.buffer_period:
            self.core.set_defaults(global_defaults(settings))
            log.info("the buffer_period changed: tasks that inherit it use the new one")
        driver = _reloaded_part(old.driver, settings.driver, RELOADED_KEYS["driver"])
        if driver != old.driver:
            if self.terraform is not None:
                self.terraform.reconfigure(driver)
            if driver.workers != old.driver.workers and self.core.scheduler is not None:
                self.core.scheduler.resize(driver.workers)
                log.info("Terraform workers: %d", driver.workers)
        tls = old.tls
        if self.tls is not None:
            candidate = _reloaded_part(old.tls, settings.tls, RELOADED_KEYS["tls"])
            try:
                self.tls.reload(candidate)
            except ConfigError as exc:
                log.error("TLS certificates not reloaded, the current ones are kept: %s", exc)
                failed.append("TLS certificates")
            else:
                tls = candidate
                log.info("TLS certificates re-read: new connections use them")
        sources = old.sources
        if settings.sources != old.sources:
            plans = source_plans(settings, self.core.source_names_used)
            if await self.core.set_sources(plans):
                sources = settings.sources
            else:
                failed.append("task sources")
        applied = {name: getattr(settings, name) for name in RELOADED}
        self.settings = dataclasses.replace(
            old, **{**applied, "driver": driver, "tls": tls, "sources": sources}
        )
        if self.core.scheduler is not None:
            # Provider templates are rendered again; the tasks that use them run once
            # more, and apply only where a rendered value changed (a rotated secret).
            templates = self.core.scheduler.executor.workspaces.templates
            templates.clear()
            users = {
                t.spec.name
                for t in self.registry
                if any(templates.templated(p) for p in t.spec.providers or ())
            }
            if users:
                self.core.scheduler.trigger_all(reason="reload", everything=True, only=users)
        # Through the configuration source's loop, like any other change of tasks.
        await self.core.set_config_tasks(settings.tasks)
        if failed:
            sd_notify(f"READY=1\nSTATUS=reloaded, but kept the running {' and '.join(failed)}")
        else:
            self._notify_ready()


# Settings a SIGHUP applies in full (the tasks through the configuration source).
RELOADED = frozenset({"tasks", "api_token", "log_level", "log_format", "buffer_period", "sources"})
# Of these blocks, the keys a SIGHUP applies; any other key of theirs needs a restart.
# TLS: certificates and CAs are re-read (rotation) at every reload; turning TLS on or off
# and verify_incoming are fixed when the listening socket is made (see ServerTLS).
RELOADED_KEYS = {
    "driver": ("log", "persist_log", "workers", "pass_env"),
    "tls": ("cert", "key", "ca_cert", "ca_path"),
}


_Block = TypeVar("_Block", TerraformDriverSettings, TLSSettings)


def _reloaded_part(old: _Block, new: _Block, keys: Sequence[str]) -> _Block:
    """`old` with the `keys` a reload applies taken from `new`."""
    return dataclasses.replace(old, **{k: getattr(new, k) for k in keys})


def restart_needed(old: Settings, new: Settings) -> list[str]:
    """The settings that differ but a reload does not apply, by name (`block.key` for a
    block a reload applies in part)."""
    named: list[str] = []
    for f in dataclasses.fields(Settings):
        was, now = getattr(old, f.name), getattr(new, f.name)
        if not f.compare or f.name in RELOADED or was == now:
            continue
        live = RELOADED_KEYS.get(f.name)
        if live is None:
            named.append(f.name)
            continue
        named.extend(
            f"{f.name}.{key.name}"
            for key in dataclasses.fields(was)
            if key.name not in live and getattr(was, key.name) != getattr(now, key.name)
        )
    return named


def run_daemon(config_paths: Sequence[str]) -> int:
    settings = load_settings(config_paths)
    for warning in settings.warnings:
        log.warning("%s", warning)
    if not settings.api_token:
        log.warning(
            "the API has no token (api_token_file, api_token_env or api_token): any user "
            "or process that can reach %s:%d can run programs as this daemon's user "
            "through it (a task's module is code); see the README's Security section",
            settings.bind_address,
            settings.port,
        )
    Path(settings.working_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    with asyncio.Runner(loop_factory=GuardedEventLoop) as runner:
        return runner.run(Daemon(settings, config_paths).run())


# --- one-shot modes ----------------------------------------------------------------------------


def _file_problems(daemon: Daemon) -> bool:
    problems = daemon.core.reconciler.problems()
    for errors in problems.values():
        for error in errors:
            log.error("%s", error)
    return bool(problems)


async def _finish(daemon: Daemon) -> None:
    await daemon.close_runs(grace=0)
    await daemon.core.close()


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
