"""Every failure is a JSON error with a request_id, and no body makes the server fail."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from apikit import JSON_HEADERS, Core, assert_error, is_uuid

from reconciler.api.inputs import MAX_BODY_BYTES

pytestmark = pytest.mark.anyio

VALID = {"name": "web", "module": "./mod", "condition": {"services": {"names": ["web"]}}}


async def test_unknown_route_and_wrong_method(core: Core) -> None:
    assert_error(await core.client.get("/v1/nope"), 404, "/v1/nope")
    assert_error(await core.client.get("/"), 404)
    assert_error(await core.client.post("/v1/tasks/"), 404)  # no redirect that replays a POST
    assert_error(await core.client.get("/v1/tasks/a/b"), 404)

    response = await core.client.put("/v1/tasks")
    assert_error(response, 405, "PUT")
    assert response.headers["allow"] == "GET, HEAD, POST"
    response = await core.client.post("/v1/tasks/web")
    assert_error(response, 405)
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    response = await core.client.delete("/v1/status")
    assert response.headers["allow"] == "GET, HEAD"
    assert_error(response, 405)


async def test_request_ids_are_fresh(core: Core) -> None:
    ids = {(await core.client.get("/v1/tasks")).json()["request_id"] for _ in range(5)}
    assert len(ids) == 5 and all(is_uuid(i) for i in ids)


async def test_unexpected_exception_is_a_logged_generic_500(
    core: Core, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(core.writeback, "create", broken)
    with caplog.at_level(logging.ERROR, logger="reconciler.api.errors"):
        response = await core.post_task(VALID)
    message = assert_error(response, 500, "internal error")
    assert "secret" not in message
    rid = response.json()["request_id"]
    assert rid in message
    [record] = [r for r in caplog.records if r.name == "reconciler.api.errors"]
    assert record.exc_info is not None and rid in record.getMessage()


async def test_content_type_and_json(core: Core) -> None:
    body = orjson.dumps({"task": VALID})
    assert_error(await core.client.post("/v1/tasks", content=body), 400, "Content-Type")
    assert_error(
        await core.client.post("/v1/tasks", content=body, headers={"Content-Type": "text/plain"}),
        400,
    )
    assert_error(
        await core.client.post("/v1/tasks", content=b"", headers=JSON_HEADERS), 400, "missing"
    )
    assert_error(
        await core.client.post("/v1/tasks", content=b"{", headers=JSON_HEADERS), 400, "decoding"
    )
    assert_error(
        await core.client.post("/v1/tasks", content=b'"\\ud800"', headers=JSON_HEADERS), 400
    )
    assert_error(
        await core.client.post("/v1/tasks", content=b"\xff\xfe", headers=JSON_HEADERS), 400
    )
    response = await core.client.post(
        "/v1/tasks", content=body, headers={"Content-Type": "Application/JSON; charset=utf-8"}
    )
    assert response.status_code == 201, response.text


async def test_bodies_over_the_limit(core: Core) -> None:
    huge = orjson.dumps({"task": {**VALID, "description": "x" * MAX_BODY_BYTES}})
    assert_error(
        await core.client.post("/v1/tasks", content=huge, headers=JSON_HEADERS),
        413,
        str(MAX_BODY_BYTES),
    )

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(2 * MAX_BODY_BYTES // 65536 + 1):
            yield b" " * 65536

    response = await core.client.post("/v1/tasks", content=chunks(), headers=JSON_HEADERS)
    assert "content-length" not in response.request.headers
    assert_error(response, 413)
    response = await core.client.patch("/v1/tasks/web", content=chunks())
    assert_error(response, 413)
    assert len(core.registry) == 0


@pytest.mark.parametrize(
    "task, fragment",
    [
        ({**VALID, "working_dir": "/tmp"}, "task.working_dir"),
        ({**VALID, "variable_files": ["a.tfvars"]}, "task.variable_files"),
        (
            {**VALID, "condition": {"services": {"names": ["a"], "bogus": 1}}},
            "task.condition.services.bogus",
        ),
        (
            {**VALID, "module_input": {"consul_kv": {"path": "a", "x": 1}}},
            "task.module_input.consul_kv.x",
        ),
        ({**VALID, "module_input": {"schedule": {}}}, "task.module_input.schedule"),
        ({**VALID, "buffer_period": {"enabled": True, "mn": "5s"}}, "task.buffer_period.mn"),
        ({**VALID, "condition": {}}, "exactly one"),
        (
            {
                **VALID,
                "condition": {"services": {"names": ["a"]}, "schedule": {"cron": "* * * * *"}},
            },
            "exactly one",
        ),
        ({**VALID, "name": 5}, "task.name"),
        ({**VALID, "enabled": "true"}, "task.enabled"),
        ({**VALID, "enabled": None}, "task.enabled"),
        ({**VALID, "providers": "aws"}, "task.providers"),
        ({**VALID, "providers": [None]}, "task.providers"),
        ({**VALID, "variables": {"a": 1}}, "task.variables.a"),
        ({**VALID, "variables": ["a"]}, "task.variables"),
        ({**VALID, "variables": {"a": "${x}"}}, 'variable "a"'),
        ({**VALID, "variables": {"a": 'upper("x")'}}, 'variable "a"'),
        ({**VALID, "variables": {"a": "1\nb = 2"}}, 'variable "a"'),
        ({**VALID, "variables": {"a": "1 }\nx {"}}, 'variable "a"'),
        ({**VALID, "variables": {"a b": "1"}}, 'variable "a b"'),
        ({**VALID, "variables": {"a": ""}}, 'variable "a"'),
        ({**VALID, "variables": {"a": "0x10"}}, "0x10 is not a decimal number"),
        ({**VALID, "variables": {"a": "1.0e999"}}, "the number 1.0e999 is too large"),
        (
            {
                **VALID,
                "condition": {"services": {"names": ["a"], "cts_user_defined_meta": {"k": None}}},
            },
            "cts_user_defined_meta",
        ),
        ({**VALID, "buffer_period": {"min": 5}}, "task.buffer_period.min"),
        ({**VALID, "buffer_period": {"min": "-5s"}}, "cannot be negative"),
        ({**VALID, "terraform_version": "1.5.0"}, "Enterprise"),
        ({**VALID, "terraform_cloud_workspace": {"execution_mode": "agent"}}, "Enterprise"),
        ({**VALID, "condition": {"services": {"names": ["a"], "regexp": "a"}}}, "not both"),
        (
            {**VALID, "condition": {"services": {}}},
            'task "web": condition "services": either "names" or "regexp" must be set',
        ),
        ({**VALID, "condition": {"schedule": {"cron": "not cron"}}}, 'condition "schedule"'),
        ({**VALID, "providers": ["aws", "aws.other"]}, "only one provider instance"),
        (
            {**VALID, "condition": {"services": {"regexp": "a{4294967296}"}}},
            "invalid repeat count",
        ),
        (
            {**VALID, "condition": {"catalog_services": {"regexp": "(" * 2000 + ")" * 2000}}},
            "nests too deeply",
        ),
        (
            {
                **VALID,
                "condition": {"consul_kv": {"path": "k"}},
                "module_input": {"services": {"regexp": "a{4294967296}"}},
            },
            'module_input "services": "regexp" is not a valid regular expression',
        ),
        (
            {**VALID, "condition": {"consul_kv": {"path": "../acl/tokens"}}},
            '"path" must not contain "." or ".." segments',
        ),
        ({"module": "./mod", "condition": {"services": {"names": ["a"]}}}, '"name" is required'),
    ],
)
async def test_rejected_task_bodies(core: Core, task: Any, fragment: str) -> None:
    assert_error(await core.post_task(task), 400, fragment)
    assert list(core.root.iterdir()) == []


@pytest.mark.parametrize(
    "body",
    [
        [],
        "task",
        None,
        1,
        {"task": None},
        {"task": []},
        {},
        {"task": VALID, "extra": 1},
        {"tasks": [VALID]},
    ],
)
async def test_rejected_top_level_shapes(core: Core, body: Any) -> None:
    assert_error(await core.client.post("/v1/tasks", json=body), 400)


async def test_deep_nesting(core: Core) -> None:
    deep: Any = "x"
    for _ in range(200):
        deep = {"a": deep}
    for task in (
        {**VALID, "variables": deep},
        {**VALID, "condition": deep},
        {**VALID, "terraform_cloud_workspace": deep},
    ):
        assert_error(await core.post_task(task), 400)
    body = b'{"task":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_error(await core.client.post("/v1/tasks", content=body, headers=JSON_HEADERS), 400)


@pytest.mark.parametrize("query", ["run=later", "run=now&run=inspect", "run="])
async def test_bad_run_values(core: Core, query: str) -> None:
    assert_error(await core.client.post(f"/v1/tasks?{query}", json={"task": VALID}), 400, "run")
    assert_error(
        await core.client.patch(f"/v1/tasks/web?{query}", json={"enabled": True}), 400, "run"
    )


async def test_without_a_runner_run_values_answer_501_after_validation(core: Core) -> None:
    for run in ("now", "inspect", "Inspect", "NOW"):
        assert_error(await core.post_task(VALID, run=run), 501, "runs no Terraform")
    assert len(core.registry) == 0 and list(core.root.iterdir()) == []
    # The body is still checked first: a bad task is a 400, not a 501.
    assert_error(await core.post_task({**VALID, "module": 1}, run="now"), 400)
    assert_error(await core.client.patch("/v1/tasks/web?run=now", json={"enabled": True}), 404)


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b'{"enabled": true, "name": "x", "a": 1}', "unsupported keys: a, name"),
        (b"{}", "Missing 'enabled'"),
        (b"null", "Missing 'enabled'"),
        (b'{"enabled": null}', "Missing 'enabled'"),
        (b'{"enabled": "yes"}', "cannot parse"),
        (b'{"enabled": [true]}', "unconvertible"),
        (b"[true]", "JSON object"),
        (b"", "decoding"),
        (b"{", "decoding"),
    ],
)
async def test_rejected_patch_bodies(core: Core, body: bytes, fragment: str) -> None:
    assert (await core.post_task(VALID)).status_code == 201
    before = (core.root / "web.hcl").read_bytes()
    assert_error(await core.client.patch("/v1/tasks/web", content=body), 400, fragment)
    assert (core.root / "web.hcl").read_bytes() == before


def _mutations(rng: random.Random, value: Any, depth: int = 0) -> Any:
    """A randomly damaged copy of a JSON value."""
    junk: list[Any] = [
        None,
        True,
        0,
        -1,
        1.5,
        10**30,
        "",
        "☃",
        "\x00",
        "${x}",
        [],
        {},
        "../../etc/passwd",
        "a" * 300,
        [None],
        {"": None},
    ]
    roll = rng.random()
    if roll < 0.15:
        return rng.choice(junk)
    if isinstance(value, dict):
        out = {
            k: _mutations(rng, v, depth + 1) if rng.random() < 0.5 else v
            for k, v in value.items()
            if rng.random() > 0.1
        }
        if rng.random() < 0.2:
            out[rng.choice(["name", "x", "enabled", "names", "services", "consul_kv"])] = (
                rng.choice(junk)
            )
        return out
    if isinstance(value, list):
        return [_mutations(rng, v, depth + 1) for v in value] + (
            [rng.choice(junk)] if rng.random() < 0.2 else []
        )
    return value


async def test_random_damaged_bodies_never_fail_the_server(core: Core) -> None:
    rng = random.Random(20240611)
    full = {
        "task": {
            "name": "t",
            "description": "d",
            "enabled": True,
            "module": "m",
            "version": "1",
            "providers": ["p"],
            "variables": {"v": '"x"', "n": "1"},
            "buffer_period": {"enabled": True, "min": "5s", "max": "20s"},
            "condition": {
                "services": {
                    "names": ["a"],
                    "datacenter": "dc",
                    "cts_user_defined_meta": {"k": "v"},
                }
            },
            "module_input": {"consul_kv": {"path": "p", "recurse": True}},
        }
    }
    created = 0
    for i in range(300):
        body = _mutations(rng, full)
        if isinstance(body, dict) and isinstance(body.get("task"), dict):
            body["task"]["name"] = f"t{i}" if rng.random() < 0.8 else body["task"].get("name")
        response = await core.client.post("/v1/tasks", json=body)
        assert response.status_code in (201, 400, 413), (body, response.text)
        created += response.status_code == 201
        if response.status_code != 201:
            assert_error(response, response.status_code)
    assert created > 0
    core.assert_files_agree()
