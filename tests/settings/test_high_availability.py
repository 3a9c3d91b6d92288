"""The high_availability block: CTS's shape with an etcd storage, its checks (file:line),
and what a cluster needs from the rest of the configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler._core.errors import ConfigError
from reconciler.settings import load_settings
from reconciler.settings.model import SECOND, EtcdTLSSettings, HighAvailabilitySettings

GIT = 'source "git" {\n  url = "https://example.com/tasks.git"\n}\n'


def block(
    storage: str = 'storage "etcd" {\n  endpoints = ["http://10.0.0.5:2379"]\n}', extra: str = ""
) -> str:
    return (
        'id = "cts-01"\nhigh_availability {\n  cluster {\n    name = "prod"\n'
        f"    {storage}\n  }}\n{extra}}}\n"
    )


def problems(tmp_path: Path, text: str) -> list[str]:
    (tmp_path / "c.hcl").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings([tmp_path / "c.hcl"], environ={})
    return [str(p) for p in info.value.problems]


def test_the_block_in_full(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("x")
    storage = (
        'storage "etcd" {\n      endpoints = ["https://10.0.0.5:2379", "https://10.0.0.6:2379"]\n'
        '      session_ttl = "5s"\n      parent_path = "ops"\n'
        f'      tls {{\n        ca_cert = "{tmp_path / "ca.pem"}"\n      }}\n    }}'
    )
    extra = '  instance {\n    address = "http://cts-01.example.com:8558"\n  }\n'
    (tmp_path / "c.hcl").write_text(block(storage, extra) + GIT)
    settings = load_settings([tmp_path / "c.hcl"], environ={})
    assert settings.id == "cts-01"
    assert settings.high_availability == HighAvailabilitySettings(
        cluster_name="prod",
        endpoints=("https://10.0.0.5:2379", "https://10.0.0.6:2379"),
        session_ttl=5 * SECOND,
        parent_path="ops",
        tls=EtcdTLSSettings(ca_cert=tmp_path / "ca.pem"),
        address="http://cts-01.example.com:8558",
    )
    assert settings.high_availability.prefix == "ops/prod/"
    assert not settings.high_availability.shard_runs
    # The local backend keeps state per member: said, not refused.
    assert any("shared backend" in str(w) for w in settings.warnings)


def test_defaults(tmp_path: Path) -> None:
    (tmp_path / "c.hcl").write_text(block() + GIT)
    ha = load_settings([tmp_path / "c.hcl"], environ={}).high_availability
    assert ha is not None
    assert (ha.session_ttl, ha.prefix, ha.address) == (15 * SECOND, "reconciler/prod/", "")
    (tmp_path / "c.hcl").write_text(block(extra="  shard_runs = true\n") + GIT)
    sharded = load_settings([tmp_path / "c.hcl"], environ={}).high_availability
    assert sharded is not None and sharded.shard_runs


def test_consul_storage_is_recognised_and_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, block('storage "default" {\n      session_ttl = "15s"\n    }') + GIT)
    assert any(
        ':5: high_availability: cluster: invalid key "storage.default": high availability '
        "on Consul sessions" in p
        for p in found
    ), found


@pytest.mark.parametrize(
    ("storage", "extra", "fragment"),
    [
        ('storage "etcd" {\n  endpoints = []\n}', "", "needs at least one endpoint"),
        ('storage "etcd" {\n  endpoints = ["10.0.0.5:2379"]\n}', "", "must look like http://host"),
        # Not URLs at all (an unclosed IPv6 bracket, a port out of range): named, not a crash.
        ('storage "etcd" {\n  endpoints = ["http://[::1:2379"]\n}', "", "must look like http"),
        ('storage "etcd" {\n  endpoints = ["http://e:99999"]\n}', "", "must look like http"),
        (
            'storage "etcd" {\n  endpoints = ["http://e:2379"]\n}',
            '  instance {\n    address = "http://[cts-01:8558"\n  }\n',
            "must be a URL",
        ),
        (
            'storage "etcd" {\n  endpoints = ["http://e:2379"]\n  session_ttl = "100ms"\n}',
            "",
            "session_ttl must be at least 1s",
        ),
        (
            'storage "etcd" {\n  endpoints = ["http://e:2379"]\n  tls {\n    cert = "/x"\n  }\n}',
            "",
            "cert and key go together",
        ),
        (
            'storage "etcd" {\n  endpoints = ["http://e:2379"]\n}',
            '  instance {\n    address = "cts-01:8558"\n  }\n',
            "must be a URL",
        ),
    ],
)
def test_mistakes_are_named(tmp_path: Path, storage: str, extra: str, fragment: str) -> None:
    found = problems(tmp_path, block(storage, extra) + GIT)
    assert any(fragment in p and "c.hcl:" in p for p in found), found


def test_a_cluster_needs_tasks_every_member_sees(tmp_path: Path) -> None:
    found = problems(tmp_path, block())
    assert any("needs a task source every member reads" in p for p in found), found
    (tmp_path / "tasks").mkdir()
    (tmp_path / "c.hcl").write_text(block() + 'source "directory" {\n  path = "tasks"\n}\n')
    settings = load_settings([tmp_path / "c.hcl"], environ={})
    assert any("the same directory" in str(w) for w in settings.warnings)


def test_a_missing_name_or_storage(tmp_path: Path) -> None:
    found = problems(tmp_path, "high_availability {\n  cluster {\n  }\n}\n" + GIT)
    assert any("a cluster name is required" in p for p in found), found
    assert any('a storage "etcd" block is required' in p for p in found), found
