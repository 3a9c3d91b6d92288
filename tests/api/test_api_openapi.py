"""GET /v1/openapi.json: a valid OpenAPI 3 document of exactly the routes the daemon serves,
secured as the daemon is, agreeing with the documented Tasks API (tasks-api.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import schemathesis
from apikit import Core, running_core
from openapi_spec_validator import validate
from runfakes import FakeDriver
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from reconciler import __version__
from reconciler.api.app import ApiContext
from reconciler.api.metrics import METRICS_PATH
from reconciler.api.openapi import (
    CREATE_EXAMPLES,
    METHODS,
    OPENAPI_PATH,
    OPERATIONS,
    SCHEME,
    served_operations,
)
from reconciler.api.webhooks import WEBHOOK_PATH
from reconciler.daemon.core import Core as DaemonCore
from reconciler.daemon.metrics import PrometheusMetrics
from reconciler.daemon.runtime import daemon_app

pytestmark = pytest.mark.anyio

TOKEN = "openapi-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = "openapi-webhook-secret"


def full_app(
    token: str = TOKEN, *, secret: str = SECRET, open_paths: frozenset[str] = frozenset()
) -> Starlette:
    """The daemon's app (every route `reconciler start` serves) over an empty core."""
    metrics = PrometheusMetrics()
    context = ApiContext(
        DaemonCore([]).commands, token=lambda: token, recorder=metrics, open_paths=open_paths
    )
    return daemon_app(context, {secret: lambda: None} if secret else {}, metrics)


async def fetch(app: Starlette, headers: dict[str, str] | None = None) -> httpx2.Response:
    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://reconciler.test") as c:
        return await c.get(OPENAPI_PATH, headers=headers)


async def served(app: Starlette, headers: dict[str, str] | None = AUTH) -> dict[str, Any]:
    response = await fetch(app, headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def documented(document: dict[str, Any]) -> dict[str, set[str]]:
    return {path: {m for m in item if m in METHODS} for path, item in document["paths"].items()}


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


# --- coverage --------------------------------------------------------------------------------


async def test_document_covers_exactly_the_routes_served() -> None:
    app = full_app()
    routes = served_operations(app.router.routes)
    # Every route and method the daemon serves, HEAD aside (answered wherever GET is).
    assert set(routes) >= {"/v1/tasks", "/v1/tasks/{name}", WEBHOOK_PATH, METRICS_PATH}
    assert documented(await served(app)) == routes
    # The catalog holds nothing the daemon cannot serve.
    assert {p: {m for m in item if m in METHODS} for p, item in OPERATIONS.items()} == routes
    # Starlette's own method sets: HEAD is there exactly where GET is, nothing else is left out.
    for route in app.router.routes:
        assert isinstance(route, Route), route
        expected = {m.upper() for m in routes[route.path]}
        if "GET" in expected:
            expected.add("HEAD")
        assert route.methods == expected, route.path


async def test_an_undocumented_route_is_left_out_and_caught() -> None:
    async def endpoint(request: Request) -> Response:
        raise AssertionError("not called")

    app = full_app()
    app.router.routes.append(Route("/v1/undocumented", endpoint, methods=["GET", "POST"]))
    document = await served(app)
    assert "/v1/undocumented" not in document["paths"]
    # What the coverage test above compares: the new route shows as undocumented.
    assert served_operations(app.router.routes)["/v1/undocumented"] == {"get", "post"}
    assert documented(document) != served_operations(app.router.routes)


async def test_webhook_documented_only_when_a_source_has_a_secret() -> None:
    without = await served(full_app(secret=""))
    assert WEBHOOK_PATH not in without["paths"]
    assert documented(without) == served_operations(full_app(secret="").router.routes)
    assert WEBHOOK_PATH in (await served(full_app()))["paths"]


# --- validity --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [TOKEN, ""], ids=["token", "no-token"])
async def test_document_is_valid_openapi(token: str) -> None:
    document = await served(full_app(token))
    assert document["openapi"].startswith("3.0.")
    validate(document)  # raises on an invalid document
    schemathesis.openapi.from_dict(document)  # schemathesis validates on load too


@pytest.mark.parametrize("token", [TOKEN, ""], ids=["token", "no-token"])
async def test_every_reference_resolves_and_every_component_is_used(token: str) -> None:
    document = await served(full_app(token))

    def walk(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                yield node["$ref"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    defined = {
        f"#/components/{kind}/{name}"
        for kind, components in document["components"].items()
        if kind != "securitySchemes"
        for name in components
    }
    used = set(walk(document))
    assert used - defined == set(), "references to nothing"
    assert defined - used == set(), "components nothing uses"


async def test_version_is_the_package_version() -> None:
    document = await served(full_app())
    assert document["info"]["version"] == __version__
    assert document["info"]["title"] == "reconciler API"


# --- security --------------------------------------------------------------------------------


async def test_document_is_behind_the_token() -> None:
    app = full_app()
    refused = await fetch(app)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert (await fetch(app, {"Authorization": "Bearer wrong"})).status_code == 401
    assert (await fetch(app, AUTH)).status_code == 200


async def test_with_a_token_every_operation_but_the_open_ones_needs_it() -> None:
    document = await served(full_app())
    assert document["security"] == [{SCHEME: []}]
    scheme = document["components"]["securitySchemes"][SCHEME]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    unauthorized = {"$ref": "#/components/responses/Unauthorized"}
    for path, method, operation in operations(document):
        if path in ("/v1/health", WEBHOOK_PATH):
            assert operation["security"] == [], path
            assert operation["responses"].get("401") != unauthorized, path
        else:
            assert "security" not in operation, path  # the document's: the token
            assert operation["responses"]["401"] == unauthorized, (path, method)
    header = document["components"]["responses"]["Unauthorized"]["headers"]
    assert "WWW-Authenticate" in header


async def test_metrics_open_with_metrics_token_false() -> None:
    document = await served(full_app(open_paths=frozenset({METRICS_PATH})))
    metrics = document["paths"][METRICS_PATH]["get"]
    assert metrics["security"] == [] and "401" not in metrics["responses"]
    tasks = document["paths"]["/v1/tasks"]["get"]
    assert "security" not in tasks and "401" in tasks["responses"]


async def test_without_a_token_nothing_needs_one() -> None:
    document = await served(full_app(""), headers=None)  # served without a token too
    assert "security" not in document
    assert "securitySchemes" not in document["components"]
    assert "Unauthorized" not in document["components"]["responses"]
    for path, method, operation in operations(document):
        if path != WEBHOOK_PATH:  # its 401 is the signature's
            assert "401" not in operation["responses"], (path, method)
        assert "security" not in operation


# --- the documented Tasks API (tasks-api.md) ---------------------------------------------------


def codes(document: dict[str, Any], path: str, method: str) -> set[str]:
    return set(document["paths"][path][method]["responses"])


def component(document: dict[str, Any], ref: dict[str, str]) -> dict[str, Any]:
    kind, name = ref["$ref"].split("/")[-2:]
    found: dict[str, Any] = document["components"][kind][name]
    return found


def parameter_names(document: dict[str, Any], path: str, method: str) -> set[str]:
    item = document["paths"][path]
    params = item.get("parameters", []) + item[method].get("parameters", [])
    return {component(document, p)["name"] for p in params}


async def test_tasks_routes_agree_with_the_documented_api() -> None:
    document = await served(full_app())
    # Statuses tasks-api.md lists, each with its operation.
    assert {"200"} <= codes(document, "/v1/tasks", "get")
    assert {"201", "200"} <= codes(document, "/v1/tasks", "post")  # 200: run=inspect
    assert {"200", "404"} <= codes(document, "/v1/tasks/{name}", "get")
    assert {"200", "404"} <= codes(document, "/v1/tasks/{name}", "patch")
    assert {"202", "404"} <= codes(document, "/v1/tasks/{name}", "delete")
    # run=inspect|now on create and update, and the task's name in the path.
    assert parameter_names(document, "/v1/tasks", "post") == {"run"}
    assert parameter_names(document, "/v1/tasks/{name}", "patch") == {"name", "run"}
    run = component(document, {"$ref": "#/components/parameters/Run"})
    assert run["in"] == "query" and run["schema"]["enum"] == ["inspect", "now"]
    schemas = document["components"]["schemas"]
    assert schemas["TaskRequest"]["required"] == ["task"]
    assert schemas["NewTask"]["required"] == ["name", "module", "condition"]
    assert schemas["TaskUpdateRequest"]["minProperties"] == 1
    assert "variables" in schemas["TaskUpdateRequest"]["properties"]
    assert set(schemas["TaskUpdateResponse"]["properties"]["inspect"]["required"]) == {
        "changes_present",
        "plan",
    }
    assert schemas["TasksResponse"]["required"] == ["request_id", "tasks"]
    assert schemas["TaskDeleteResponse"]["required"] == ["request_id"]
    assert schemas["ErrorResponse"]["required"] == ["error", "request_id"]
    assert schemas["Error"]["required"] == ["message"]
    # The task object's fields, as the documentation's table lists them.
    assert set(schemas["NewTask"]["properties"]) == {
        "buffer_period",
        "condition",
        "description",
        "enabled",
        "module",
        "module_input",
        "name",
        "providers",
        "variables",
        "version",
        "terraform_version",
        "terraform_cloud_workspace",
    }
    # Every error answer is the one error shape.
    for path, _, operation in operations(document):
        for code, response in operation["responses"].items():
            if code.startswith(("4", "5")):
                found = component(document, response) if "$ref" in response else response
                schema = found["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, code)


@pytest.fixture
async def fake_core(task_dir: Path) -> AsyncIterator[Core]:
    async with running_core(task_dir, driver=FakeDriver()) as core:
        yield core


@pytest.mark.parametrize("example", sorted(CREATE_EXAMPLES))
async def test_each_create_example_creates_its_task(fake_core: Core, example: str) -> None:
    body = CREATE_EXAMPLES[example]
    created = await fake_core.client.post("/v1/tasks", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["task"]["name"] == body["task"]["name"]
    fake_core.assert_files_agree()
