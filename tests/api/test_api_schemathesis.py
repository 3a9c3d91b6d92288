"""Every operation of GET /v1/openapi.json exercised by schemathesis against the daemon's
app (its routes as `reconciler start` wires them, a token and a webhook secret set) on a
real uvicorn server on a loopback port: no answer is a 5xx, and each one has a status
code, content type, headers and body the document declares.

The core runs the fast fake driver (tests/runfakes.py): these cases are about the API's
answers; Terraform itself is tested elsewhere. Cases come from the document's examples,
its coverage of boundary values and a bounded hypothesis run with a fixed seed, valid and
invalid data alike, so that CI sees the same cases on every run.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import schemathesis
from apikit import running_core
from helpers import task_hcl
from runfakes import FakeDriver
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from serverkit import embedded_server, server_thread

from reconciler.api.app import ApiContext
from reconciler.api.openapi import OPENAPI_PATH, SCHEME, openapi_document
from reconciler.daemon.core import Core as DaemonCore
from reconciler.daemon.metrics import PrometheusMetrics
from reconciler.daemon.runtime import daemon_app

TOKEN = "schemathesis-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "schemathesis-webhook-secret"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@contextlib.asynccontextmanager
async def live_daemon(root: Path) -> AsyncIterator[str]:
    """The daemon's app over the real core, served on a free loopback port; its URL."""
    tasks = root / "tasks"
    tasks.mkdir()
    # A task that exists from the start, so that reads find one besides those created.
    (tasks / "seeded.hcl").write_text(task_hcl("seeded", names=("api", "web")))
    async with running_core(tasks, driver=FakeDriver()) as core:
        metrics = PrometheusMetrics()
        context = ApiContext(core.commands, token=lambda: TOKEN, recorder=metrics)
        app = daemon_app(context, {SECRET: lambda: core.loop.hint(None)}, metrics)
        async with embedded_server(app) as port:
            yield f"http://127.0.0.1:{port}"


def daemon_document() -> dict[str, Any]:
    """The document the daemon serves with this token and secret (no core needed: it only
    depends on the routes and the settings); test_served_document_is_the_one_tested."""
    metrics = PrometheusMetrics()
    context = ApiContext(DaemonCore([]).commands, token=lambda: TOKEN, recorder=metrics)
    app = daemon_app(context, {SECRET: lambda: None}, metrics)
    return openapi_document(app.router.routes, token=True)


DOCUMENT = daemon_document()
# Loaded when the module is collected, so that each operation is a test of its own.
schema = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "seed": 20240611,
            # Generation time depends on the machine's load, not on the API.
            "suppress-health-check": ["too_slow"],
            "generation": {
                "mode": "all",
                "max-examples": 25,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            # The token for the operations that need it; schemathesis still tries each
            # one without it, expecting the documented 401.
            "auth": {"openapi": {SCHEME: {"bearer": TOKEN}}},
        }
    ),
)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("schemathesis")
    with server_thread(lambda: live_daemon(root)) as url:
        yield url


def test_served_document_is_the_one_tested(base_url: str) -> None:
    served = httpx2.get(f"{base_url}{OPENAPI_PATH}", headers=AUTH, timeout=30)
    assert served.status_code == 200, served.text
    assert served.json() == DOCUMENT


@schema.parametrize()
def test_operation_conforms_to_the_document(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)
