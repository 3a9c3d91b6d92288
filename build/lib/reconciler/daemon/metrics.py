"""`GET /metrics` in Prometheus's text format (prometheus-client, one registry per daemon).

Two kinds of series. Counters and histograms are fed as things happen, through the
`Recorder` seam the run queue, the source loops and the API call: runs by task and outcome
with their duration, API requests by route, method and code with their duration, passes
over each source, webhook outcomes. Gauges are read
from the daemon's state at scrape time by a collector, in the event loop that owns that
state: tasks by status, how far the runs are, the Terraform workers, the Consul queries.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter as Tally
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler.api.metrics import METRICS_PATH
from reconciler.daemon.core import Core
from reconciler.runner.pool import WorkerPool

# Terraform runs take from milliseconds (a warm worker, nothing to change) to minutes.
RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class PrometheusMetrics:
    """The daemon's recorder and its registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._runs = Counter(
            "reconciler_runs",
            "Task runs recorded (an apply or its failure), by task and outcome.",
            ["task", "outcome"],
            registry=self.registry,
        )
        self._run_seconds = Histogram(
            "reconciler_run_duration_seconds",
            "How long task runs took, from their start to their event.",
            ["task"],
            buckets=RUN_BUCKETS,
            registry=self.registry,
        )
        self._requests = Counter(
            "reconciler_api_requests",
            "API requests answered, by route template, method and status code.",
            ["route", "method", "code"],
            registry=self.registry,
        )
        self._request_seconds = Histogram(
            "reconciler_api_request_duration_seconds",
            "How long API requests took to answer, by route template and method.",
            ["route", "method"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._passes = Histogram(
            "reconciler_reconcile_duration_seconds",
            "How long a pass over a source took (read or fetch, parse, apply to the registry).",
            ["source"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self._source_errors = Counter(
            "reconciler_source_errors",
            "Passes whose source could not be read (a failed git fetch, a missing directory).",
            ["source"],
            registry=self.registry,
        )
        self._source_success = Gauge(
            "reconciler_source_last_success_timestamp_seconds",
            "When the source was last read successfully (Unix time).",
            ["source"],
            registry=self.registry,
        )
        self._webhooks = Counter(
            "reconciler_webhook_requests",
            "Webhook calls, accepted (signed for a known source) or rejected.",
            ["outcome"],
            registry=self.registry,
        )

    # --- Recorder ----------------------------------------------------------------------

    def run_finished(self, task: str, success: bool, seconds: float) -> None:
        self._runs.labels(task, "success" if success else "failure").inc()
        self._run_seconds.labels(task).observe(max(0.0, seconds))

    def api_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, method, str(status)).inc()
        self._request_seconds.labels(route, method).observe(seconds)

    def source_pass(self, source: str, ok: bool, seconds: float) -> None:
        if ok:
            self._passes.labels(source).observe(seconds)
            self._source_success.labels(source).set(time.time())
        else:
            self._source_errors.labels(source).inc()

    def webhook(self, accepted: bool) -> None:
        self._webhooks.labels("accepted" if accepted else "rejected").inc()

    def task_gone(self, task: str) -> None:
        for outcome in ("success", "failure"):
            with contextlib.suppress(KeyError):
                self._runs.remove(task, outcome)
        with contextlib.suppress(KeyError):
            self._run_seconds.remove(task)

    # --- state and serving -------------------------------------------------------------

    def watch(self, core: Core, pool: WorkerPool | None) -> None:
        self.registry.register(StateCollector(core, pool))

    def route(self) -> Route:
        async def endpoint(request: Request) -> Response:
            return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

        return Route(METRICS_PATH, endpoint, methods=["GET"])


class StateCollector(Collector):
    def __init__(self, core: Core, pool: WorkerPool | None) -> None:
        self._core = core
        self._pool = pool

    def collect(self) -> Iterator[Metric]:
        core = self._core
        tasks = GaugeMetricFamily(
            "reconciler_tasks", "Tasks in the registry, by status.", labels=["status"]
        )
        store = core.status
        names = core.registry.names()
        statuses = (
            Tally(store.status(n) for n in names) if store else Tally({"unknown": len(names)})
        )
        for status in ("successful", "errored", "critical", "unknown"):
            tasks.add_metric([status], statuses.get(status, 0))
        yield tasks
        if core.scheduler is not None:
            runs = GaugeMetricFamily(
                "reconciler_task_runs",
                "How far the tasks' runs are: initialised since start, applied, with work "
                "queued or running, with an init error.",
                labels=["state"],
            )
            progress = core.scheduler.progress()
            for state in ("initialised", "applied", "pending", "init_errors"):
                runs.add_metric([state], progress[state])
            yield runs
        if self._pool is not None:
            workers = GaugeMetricFamily(
                "reconciler_terraform_workers",
                "Terraform workers of the pool, busy or idle.",
                labels=["state"],
            )
            busy = self._pool.busy
            workers.add_metric(["busy"], busy)
            workers.add_metric(["idle"], max(0, len(self._pool.pids) - busy))
            yield workers
            yield GaugeMetricFamily(
                "reconciler_terraform_commands_waiting",
                "Terraform commands waiting for a free worker.",
                value=self._pool.waiting,
            )
        if core.consul is not None:
            watchers = core.consul.watchers
            queries = GaugeMetricFamily(
                "reconciler_consul_queries",
                "Consul queries watched, by status and mode (long poll or cluster index).",
                labels=["status", "mode"],
            )
            by = Tally((str(s.status), s.mode) for s in watchers.states())
            for (status, mode), n in sorted(by.items()):
                queries.add_metric([status, mode], n)
            yield queries
            yield GaugeMetricFamily(
                "reconciler_consul_long_polls",
                "Blocking queries held open to Consul (each holds a connection).",
                value=watchers.long_polls(),
            )
