"""Where a task's state lives when no backend is configured (reconciler.runner.state):
CTS's consul backend when the daemon uses Consul, state CTS left found and used, local
state kept, and state in two places refused."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from reconciler.runner.state import (
    LOCAL,
    NoConsulError,
    StateError,
    StatePolicy,
    consul_resources,
    describe,
    place,
)
from reconciler.settings.model import (
    CONSUL_BLOCK,
    CONSUL_CATALOG,
    CONSUL_DEFAULT,
    ConsulSettings,
    ConsulTLSSettings,
    Settings,
    TerraformDriverSettings,
)

pytestmark = pytest.mark.anyio

CTS = {"address": "consul:8500", "path": "consul-terraform-sync/terraform", "gzip": True}
KEY = "consul-terraform-sync/terraform-env:web"


def state(resources: int) -> bytes:
    """A Terraform state document with `resources` managed instances and a data source."""
    doc = {
        "version": 4,
        "serial": 3,
        "resources": [
            {"mode": "data", "type": "terraform_remote_state", "name": "d", "instances": [{}]},
            *(
                {"mode": "managed", "type": "terraform_data", "name": f"r{i}", "instances": [{}]}
                for i in range(resources)
            ),
        ],
    }
    return json.dumps(doc).encode()


class KV:
    """Consul KV as a dict; `absent`: nothing listens; `broken`: Consul cannot answer."""

    def __init__(self, values: dict[str, bytes] | None = None, *, absent: bool = False) -> None:
        self.values = values or {}
        self.absent = absent
        self.broken = False
        self.asked: list[str] = []

    async def get(self, key: str) -> bytes | None:
        self.asked.append(key)
        if self.absent:
            raise NoConsulError("connection refused")
        if self.broken:
            raise StateError("Consul KV cannot be read: 403 (ACL not found)")
        return self.values.get(key)


def policy(mode: str, backend: dict[str, dict[str, object]] | None = None) -> StatePolicy:
    settings = Settings(
        consul=ConsulSettings(address="consul:8500", token="tok"),
        consul_from=mode,
        driver=TerraformDriverSettings(backend=backend),
    )
    return StatePolicy.from_settings(settings)


async def test_a_daemon_that_uses_consul_keeps_state_where_cts_does(tmp_path: Path) -> None:
    kv = KV()
    p = await place(policy(CONSUL_BLOCK), tmp_path / "web", "web", kv)
    assert p.backend == {"consul": CTS} and p.workspace == "web"
    assert p.env == {"CONSUL_HTTP_ADDR": "consul:8500", "CONSUL_HTTP_TOKEN": "tok"}
    assert KEY in p.where and not p.reconfigure and p.warning is None
    assert kv.asked == []  # nothing local to weigh against: no question to Consul
    assert "tok" not in repr(p) and "tok" not in describe(p)


async def test_local_state_from_an_earlier_run_is_kept_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "terraform.tfstate").write_bytes(state(2))
    kv = KV()
    p = await place(policy(CONSUL_BLOCK), tmp_path / "web", "web", kv)
    assert p.backend == LOCAL and p.workspace is None
    assert p.where == str(tmp_path / "web" / "terraform.tfstate")
    assert p.warning is not None and "2 resources" in p.warning
    assert "-migrate-state" in p.warning and 'backend "local"' in p.warning
    assert kv.asked == [KEY]


async def test_state_in_both_places_is_refused_saying_how_to_choose(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    local = tmp_path / "web" / "terraform.tfstate"
    local.write_bytes(state(1))
    kv = KV({KEY: gzip.compress(state(3))})
    with pytest.raises(StateError) as info:
        await place(policy(CONSUL_BLOCK), tmp_path / "web", "web", kv)
    message = info.value.message
    assert "1 resource in" in message and "3 resources in Consul KV at consul:8500" in message
    assert f"mv {local} {local}.old" in message
    assert f"consul kv delete '{KEY}'" in message


async def test_local_state_is_not_kept_blind_while_consul_cannot_be_asked(
    tmp_path: Path,
) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "terraform.tfstate").write_bytes(state(1))
    with pytest.raises(StateError, match="runs once Consul answers"):
        await place(policy(CONSUL_BLOCK), tmp_path / "web", "web", KV(absent=True))
    kv = KV()
    kv.broken = True
    with pytest.raises(StateError, match="ACL not found"):
        await place(policy(CONSUL_BLOCK), tmp_path / "web", "web", kv)


async def test_without_a_consul_block_state_cts_left_at_its_default_address_is_used(
    tmp_path: Path,
) -> None:
    kv = KV({KEY: gzip.compress(state(4))})
    p = await place(policy(CONSUL_DEFAULT), tmp_path / "web", "web", kv)
    assert p.backend == {"consul": CTS} and p.workspace == "web"
    assert "4 resources" in p.why and p.env["CONSUL_HTTP_ADDR"] == "consul:8500"


async def test_without_a_consul_block_and_no_cts_state_state_is_local(tmp_path: Path) -> None:
    for kv in (KV(), KV(absent=True)):
        p = await place(policy(CONSUL_DEFAULT), tmp_path / "web", "web", kv)
        assert p.backend == LOCAL and p.workspace is None and p.env == {}
        assert kv.asked == [KEY]
    broken = KV()
    broken.broken = True  # Consul is there but will not say: do not guess
    with pytest.raises(StateError):
        await place(policy(CONSUL_DEFAULT), tmp_path / "web", "web", broken)


async def test_the_embedded_catalog_keeps_state_local_and_asks_nothing(tmp_path: Path) -> None:
    kv = KV({KEY: state(1)})
    p = await place(policy(CONSUL_CATALOG), tmp_path / "web", "web", kv)
    assert p.backend == LOCAL and kv.asked == []


def record_backend(directory: Path, kind: str, config: dict[str, object]) -> None:
    (directory / ".terraform").mkdir(parents=True)
    doc = {"version": 3, "backend": {"type": kind, "config": config, "hash": 1}}
    (directory / ".terraform" / "terraform.tfstate").write_text(json.dumps(doc))


async def test_a_workspace_cts_initialised_on_consul_is_never_switched_to_empty_state(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "web"
    record_backend(ws, "consul", {"address": "consul.prod:8500", "path": "cts/terraform"})
    with pytest.raises(StateError) as info:
        await place(policy(CONSUL_CATALOG), ws, "web", None)
    assert 'consul { address = "consul.prod:8500" }' in info.value.message
    assert str(ws / ".terraform") in info.value.message
    # CTS's default Consul answers and holds nothing for the task: empty local state.
    default = ws.parent / "api"
    record_backend(default, "consul", {"address": "consul:8500", "path": CTS["path"]})
    p = await place(policy(CONSUL_DEFAULT), default, "api", KV())
    assert p.backend == LOCAL and p.reconfigure


async def test_a_workspace_initialised_locally_without_state_moves_to_consul(
    tmp_path: Path,
) -> None:
    ws = tmp_path / "web"
    record_backend(ws, "local", {})
    (ws / "terraform.tfstate").write_bytes(state(0))
    p = await place(policy(CONSUL_BLOCK), ws, "web", KV())
    assert p.kind == "consul" and p.reconfigure  # -reconfigure, never -migrate-state


async def test_a_configured_local_backend_finds_cts_and_earlier_layouts(tmp_path: Path) -> None:
    configured = policy(CONSUL_BLOCK, {"local": {}})
    fresh = await place(configured, tmp_path / "a", "a", None)
    assert fresh.workspace == "a"  # CTS selects a workspace per task
    cts = tmp_path / "b" / "terraform.tfstate.d" / "b"
    cts.mkdir(parents=True)
    (cts / "terraform.tfstate").write_bytes(state(1))
    assert (await place(configured, tmp_path / "b", "b", None)).workspace == "b"
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "terraform.tfstate").write_bytes(state(1))
    earlier = await place(configured, tmp_path / "c", "c", None)
    assert earlier.workspace is None and earlier.where.endswith("c/terraform.tfstate")


async def test_a_configured_consul_backend_gets_the_consul_variables(tmp_path: Path) -> None:
    settings = Settings(
        consul=ConsulSettings(
            address="consul:8501",
            tls=ConsulTLSSettings(enabled=True, ca_cert=Path("/ca.pem"), server_name="consul"),
        ),
        consul_from=CONSUL_BLOCK,
        driver=TerraformDriverSettings(backend={"consul": {"address": "other:8500", "path": "p"}}),
    )
    p = await place(StatePolicy.from_settings(settings), tmp_path / "t", "t", None)
    assert p.backend == {"consul": {"address": "other:8500", "path": "p"}}
    assert p.workspace == "t"
    assert p.env == {
        "CONSUL_HTTP_ADDR": "consul:8501",
        "CONSUL_CACERT": "/ca.pem",
        "CONSUL_TLS_SERVER_NAME": "consul",
        "CONSUL_HTTP_SSL": "true",
    }


async def test_state_in_consul_is_read_as_terraform_stores_it() -> None:
    plain = KV({"k": state(2)})
    assert await consul_resources(plain, "k") == 2
    assert await consul_resources(KV(), "k") is None
    zipped = gzip.compress(state(3))
    half = len(zipped) // 2
    index = {"current-hash": "abc", "chunks": ["k/tfstate.abc/0", "k/tfstate.abc/1"]}
    chunked = KV(
        {
            "k": json.dumps(index).encode(),
            "k/tfstate.abc/0": zipped[:half],
            "k/tfstate.abc/1": zipped[half:],
        }
    )
    assert await consul_resources(chunked, "k") == 3
    del chunked.values["k/tfstate.abc/1"]
    with pytest.raises(StateError, match="missing"):
        await consul_resources(chunked, "k")
    # Something that is not a state document still counts as something there.
    assert await consul_resources(KV({"k": b"\x00garbage"}), "k") == 1
