"""One test per example of the documented Tasks API (tasks-api.md): the request from the
document, the response compared field by field (request_id values only need to be UUIDs).

Where an example's buffer_period max is 25s, the daemon's global buffer period is set to
match: the task object shows the effective period, inherited from the global one.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from apikit import JSON_HEADERS, SECOND, assert_error, assert_matches, running_core
from runfakes import FakeDriver

from reconciler.taskfiles.model import GlobalDefaults

pytestmark = pytest.mark.anyio

GLOBAL_25S = GlobalDefaults(buffer_enabled=True, buffer_min=5 * SECOND, buffer_max=25 * SECOND)

# --- the examples, verbatim from tasks-api.md -----------------------------------------------

GET_TASKS_RESPONSE = {
    "request_id": "0e0290f9-94df-3a4a-fd17-72467a16083c",
    "tasks": [
        {
            "buffer_period": {"enabled": True, "max": "25s", "min": "5s"},
            "condition": {
                "services": {
                    "cts_user_defined_meta": {},
                    "datacenter": "",
                    "filter": "",
                    "names": ["api", "web"],
                    "namespace": "",
                    "use_as_module_input": True,
                }
            },
            "description": "Writes the service name, id, and IP address to a file",
            "enabled": True,
            "module": "path/to/module",
            "module_input": {},
            "name": "task_a",
            "providers": ["my-provider"],
            "variables": {},
            "version": "",
        }
    ],
}

GET_TASK_RESPONSE = {
    "request_id": "b7559ab0-5111-381b-367a-0dfb7e216d41",
    "task": {
        "buffer_period": {"enabled": True, "max": "20s", "min": "5s"},
        "condition": {
            "consul_kv": {
                "datacenter": "",
                "namespace": "",
                "path": "my_key",
                "recurse": False,
                "use_as_module_input": True,
            }
        },
        "description": "task triggering on consul-kv",
        "enabled": True,
        "module": "path/to/module",
        "module_input": {
            "services": {
                "cts_user_defined_meta": {},
                "datacenter": "",
                "filter": "",
                "names": ["api"],
                "namespace": "",
            }
        },
        "name": "task_a",
        "providers": [],
        "variables": {},
        "version": "",
    },
}

CREATE_PAYLOAD = {
    "task": {
        "description": "Writes the service name, id, and IP address to a file",
        "enabled": True,
        "name": "task_a",
        "providers": ["my-provider"],
        "condition": {"services": {"names": ["web", "api"]}},
        "module": "path/to/module",
    }
}

CREATE_RESPONSE = {
    "request_id": "0428ed18-1359-874c-8b27-742e43ebd7e7",
    "task": GET_TASKS_RESPONSE["tasks"][0],
}

DELETE_RESPONSE = {"request_id": "9b23eea7-a435-2797-c71e-10c15766cd73"}

TASK_A_SERVICES = """\
task {
  name        = "task_a"
  description = "Writes the service name, id, and IP address to a file"
  module      = "path/to/module"
  providers   = ["my-provider"]

  condition "services" {
    names = ["api", "web"]
  }
}
"""

TASK_A_CONSUL_KV = """\
task {
  name        = "task_a"
  description = "task triggering on consul-kv"
  module      = "path/to/module"

  condition "consul-kv" {
    path = "my_key"
  }

  module_input "services" {
    names = ["api"]
  }
}
"""


async def test_get_tasks_example(task_dir: Path) -> None:
    (task_dir / "task_a.hcl").write_text(TASK_A_SERVICES)
    async with running_core(task_dir, defaults=GLOBAL_25S) as core:
        response = await core.client.get("/v1/tasks")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert_matches(response.json(), GET_TASKS_RESPONSE)


async def test_get_task_example(task_dir: Path) -> None:
    (task_dir / "task_a.hcl").write_text(TASK_A_CONSUL_KV)
    async with running_core(task_dir) as core:
        response = await core.client.get("/v1/tasks/task_a")
        assert response.status_code == 200
        assert_matches(response.json(), GET_TASK_RESPONSE)
        assert_error(await core.client.get("/v1/tasks/task_b"), 404, "task_b")


async def test_create_task_example(task_dir: Path) -> None:
    async with running_core(task_dir, defaults=GLOBAL_25S) as core:
        response = await core.client.post("/v1/tasks", json=CREATE_PAYLOAD)
        assert response.status_code == 201, response.text
        assert_matches(response.json(), CREATE_RESPONSE)
        # GET and POST agree (CTS issue #1000).
        got = await core.client.get("/v1/tasks/task_a")
        assert got.json()["task"] == response.json()["task"]


async def test_disable_task_example(task_dir: Path) -> None:
    (task_dir / "task_a.hcl").write_text(TASK_A_SERVICES)
    async with running_core(task_dir) as core:
        response = await core.client.patch(
            "/v1/tasks/task_a", content=b'{"enabled":false}', headers=JSON_HEADERS
        )
        assert response.status_code == 200
        assert_matches(response.json(), {})
        task = (await core.client.get("/v1/tasks/task_a")).json()["task"]
        assert task["enabled"] is False
        assert re.search(r"^  enabled += false$", (task_dir / "task_a.hcl").read_text(), re.M)


@pytest.mark.parametrize("changes", [True, False])
async def test_inspect_enabling_a_task_example(task_dir: Path, changes: bool) -> None:
    """The plan comes from the driver (a fake here; tests/scenarios has the real one), and
    nothing changes: the task stays disabled in its file and in the registry."""
    (task_dir / "task_a.hcl").write_text(
        TASK_A_SERVICES.replace('"path/to/module"', '"path/to/module"\n  enabled     = false')
    )
    driver = FakeDriver(changes_present=changes)
    async with running_core(task_dir, driver=driver) as core:
        await core.scheduler.idle()
        before = (task_dir / "task_a.hcl").read_bytes()
        response = await core.client.patch(
            "/v1/tasks/task_a?run=inspect", content=b'{"enabled":true}', headers=JSON_HEADERS
        )
        assert response.status_code == 200, response.text
        assert_matches(
            response.json(), {"inspect": {"changes_present": changes, "plan": "plan of task_a"}}
        )
        assert (task_dir / "task_a.hcl").read_bytes() == before
        assert core.registry.get("task_a").spec.enabled is False  # type: ignore[union-attr]
        assert driver.ops("task_a", "apply") == []


async def test_delete_task_example(task_dir: Path) -> None:
    (task_dir / "task_a.hcl").write_text(TASK_A_SERVICES)
    async with running_core(task_dir) as core:
        response = await core.client.delete("/v1/tasks/task_a")
        assert response.status_code == 202
        assert_matches(response.json(), DELETE_RESPONSE)
        assert not (task_dir / "task_a.hcl").exists()
        assert_error(await core.client.get("/v1/tasks/task_a"), 404)
        assert_error(await core.client.delete("/v1/tasks/task_a"), 404)
