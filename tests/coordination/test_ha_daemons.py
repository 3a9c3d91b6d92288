"""High availability through `reconciler start`: three daemons on one real etcd and one
real git remote. One leader; followers answer /v1/tasks with 400 naming it; every member
serves /v1/status/cluster and says its role in /v1/health; kill -9 of the leader in the
middle of API writes: another member takes over, no acknowledged change is lost and none
is committed twice; the commits carry the leader's term."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcdkit import EtcdServer, etcd_server
from gitkit import Remote
from helpers import free_port, task_hcl, wait_for, without_consul
from serverkit import stop_process, wait_listening

MODULE = Path(__file__).resolve().parents[1] / "fixtures" / "modules" / "services-file"
SEED = {"seed.hcl": task_hcl("seed", module=str(MODULE))}


def call(port: int, method: str, path: str, body: object = None) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=data,
        method=method,
        headers={"Content-Type": "application/json"} if data else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


class Member:
    def __init__(
        self,
        root: Path,
        member_id: str,
        remote: Path,
        etcd: EtcdServer,
        *,
        extra: str = "",
        shard: bool = False,
        poll: str = "1s",
    ) -> None:
        self.id = member_id
        self.root = root / member_id
        self.root.mkdir(parents=True)
        without_consul(self.root)
        self.port = free_port()
        self.address = f"http://127.0.0.1:{self.port}"
        (self.root / "config.hcl").write_text(
            f'id = "{member_id}"\nport = {self.port}\nworking_dir = "state"\n'
            f'source "git" {{\n  url = "{remote}"\n  push = true\n  poll_interval = "{poll}"\n}}\n'
            f'api_tasks {{\n  modules = ["{MODULE}"]\n}}\n'  # the tests' shared module
            'high_availability {\n  cluster {\n    name = "prod"\n'
            f'    storage "etcd" {{\n      endpoints = ["{etcd.url}"]\n'
            '      session_ttl = "2s"\n    }\n  }\n'
            f'  instance {{\n    address = "{self.address}"\n  }}\n'
            f"  shard_runs = {str(shard).lower()}\n}}\n" + extra
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.root / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "reconciler.cli.main", "start", "-config-file=config.hcl"],
                cwd=self.root,
                stderr=log,
            )

    def log(self) -> str:
        return (self.root / "daemon.log").read_text()

    def role(self) -> str | None:
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            status, body = call(self.port, "GET", "/v1/health")
        except OSError:
            return None
        ha = body.get("high_availability")
        return str(ha["role"]) if status == 200 and isinstance(ha, dict) else None

    def stop(self) -> None:
        stop_process(self.proc)


@contextlib.contextmanager
def cluster_of(
    tmp_path: Path,
    count: int = 3,
    *,
    files: dict[str, str] | None = None,
    extra: str = "",
    shard: bool = False,
    poll: str = "1s",
) -> Iterator[tuple[list[Member], Remote, EtcdServer]]:
    """`count` daemons on one etcd and one git remote holding `files` (default: one task)."""
    remote = Remote.create(tmp_path, files or SEED)
    with etcd_server(tmp_path / "etcd") as etcd:
        members = [
            Member(
                tmp_path, f"cts-0{i + 1}", remote.bare, etcd, extra=extra, shard=shard, poll=poll
            )
            for i in range(count)
        ]
        try:
            for m in members:
                m.start()
            for m in members:
                assert m.proc is not None
                wait_listening(m.port, m.proc)
            yield members, remote, etcd
        finally:
            for m in members:
                m.stop()


def the_leader(members: list[Member]) -> Member | None:
    roles = {m.id: m.role() for m in members}
    leading = [m for m in members if roles[m.id] == "leader"]
    return leading[0] if len(leading) == 1 else None


def test_one_leader_followers_redirect_and_every_member_reports_the_cluster(
    tmp_path: Path,
) -> None:
    with cluster_of(tmp_path) as (members, _remote, _etcd):
        wait_for(lambda: the_leader(members) is not None, timeout=30, what="one leader")
        leader = the_leader(members)
        assert leader is not None
        assert f"ha: acquired leadership lock: id={leader.id}" in leader.log()
        expected_members = [
            {"id": o.id, "address": o.address, "healthy": True, "leader": o is leader}
            for o in members
        ]
        for m in members:

            def reported(m: Member = m) -> bool:
                status, body = call(m.port, "GET", "/v1/status/cluster")
                assert status == 200 and body["cluster_name"] == "prod", body
                return body["members"] == expected_members

            wait_for(reported, timeout=30, what=f"{m.id}'s view of the cluster")
            if m is leader:
                continue
            expected = f"redirect requests to leader '{leader.id}' at {leader.address}"
            for method, path in [("GET", "/v1/tasks"), ("GET", "/v1/tasks/seed")]:
                status, body = call(m.port, method, path)
                assert (status, body["error"]) == (400, {"message": expected}), body
            status, body = call(m.port, "PATCH", "/v1/tasks/seed", {"enabled": False})
            assert status == 400 and body["error"] == {"message": expected}
        # The leader serves the tasks, from the shared repository; only it ran them.
        status, body = call(leader.port, "GET", "/v1/tasks")
        assert status == 200 and [t["name"] for t in body["tasks"]] == ["seed"]  # type: ignore[index, union-attr]
        wait_for(lambda: "task seed: applied" in leader.log(), timeout=60, what=leader.log())
        for m in members:
            if m is not leader:
                assert "task seed: applied" not in m.log()


def test_kill_of_the_leader_during_writes_loses_nothing(tmp_path: Path) -> None:
    # Followers poll the remote only every 10 minutes: a new leader fetches at once.
    with cluster_of(tmp_path, poll="10m") as (members, remote, _etcd):
        wait_for(lambda: the_leader(members) is not None, timeout=30, what="one leader")
        first = the_leader(members)
        assert first is not None
        acknowledged: list[str] = []
        stop, resumed = threading.Event(), threading.Event()

        def writer() -> None:
            """Writes to the first leader until it dies, then (once resumed) to the new."""
            n = 0
            while not stop.is_set():
                if resumed.is_set():
                    live = [m for m in members if m.proc and m.proc.poll() is None]
                    leader = the_leader(live)
                else:
                    leader = first if first.proc and first.proc.poll() is None else None
                if leader is None:
                    stop.wait(0.05)  # poll interval while leadership moves
                    continue
                name = f"t{n}"
                body = {
                    "task": {
                        "name": name,
                        "module": str(MODULE),
                        "condition": {"services": {"names": ["web"]}},
                    }
                }
                try:
                    status, answer = call(leader.port, "POST", "/v1/tasks", body)
                except OSError:
                    stop.wait(0.05)
                    continue  # the leader died under the request: not acknowledged
                if status == 201:
                    acknowledged.append(name)
                    n += 1
                elif status == 400 and "already exists" in json.dumps(answer):
                    n += 1  # written before a failover, its answer lost: a new name
                # 400 redirect / 503 while leadership moves: try again

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            wait_for(lambda: len(acknowledged) >= 3, timeout=120, what=first.log())
            assert first.proc is not None
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            survivors = [m for m in members if m is not first]
            wait_for(lambda: the_leader(survivors) is not None, timeout=60, what="a new leader")
            before_kill = list(acknowledged)
            new_leader = the_leader(survivors)
            assert new_leader is not None

            def serves_them() -> bool:
                status, body = call(new_leader.port, "GET", "/v1/tasks")
                names = {t["name"] for t in body.get("tasks", [])}  # type: ignore[attr-defined]
                return status == 200 and set(before_kill) <= names

            # Nothing was written to the new leader yet: only its fetch at takeover (not
            # its 10-minute poll) can bring the old leader's last commits.
            wait_for(serves_them, timeout=60, what=new_leader.log())
            resumed.set()
            count = len(acknowledged)
            wait_for(lambda: len(acknowledged) >= count + 3, timeout=120, what="writes after")
        finally:
            stop.set()
            thread.join(120)
        second = the_leader(survivors)
        assert second is not None and second is not first
        # Every acknowledged task is in the repository, created by exactly one commit.
        messages = remote.messages(count=1000)
        files = remote.files()
        for name in acknowledged:
            creates = [m for m in messages if m.startswith(f"create task {name}\n")]
            assert len(creates) == 1, (name, creates)
            assert "Leader-Term: " in creates[0]
            assert f"{name}.hcl" in files
        terms = {
            line.split(": ")[1]
            for m in messages
            for line in m.splitlines()
            if line.startswith("Leader-Term: ")
        }
        assert len(terms) >= 2  # commits from both leaders, each with its own term
        status, body = call(second.port, "GET", "/v1/tasks")
        assert status == 200, body
        names = {t["name"] for t in body["tasks"]}  # type: ignore[union-attr]
        assert set(acknowledged) <= names


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_a_frozen_leader_is_replaced_and_rejoins_as_a_follower(tmp_path: Path) -> None:
    with cluster_of(tmp_path, 2) as (members, _remote, _etcd):
        wait_for(lambda: the_leader(members) is not None, timeout=30, what="one leader")
        first = the_leader(members)
        assert first is not None and first.proc is not None
        other = next(m for m in members if m is not first)
        first.proc.send_signal(signal.SIGSTOP)  # cut off: it renews nothing
        try:
            wait_for(lambda: other.role() == "leader", timeout=60, what=other.log())
        finally:
            first.proc.send_signal(signal.SIGCONT)
        # Woken up, it finds its lease gone: it leads no more and names the new leader.
        expected = f"redirect requests to leader '{other.id}' at {other.address}"

        def redirected() -> bool:
            status, body = call(first.port, "GET", "/v1/tasks")
            return status == 400 and body["error"] == {"message": expected}

        wait_for(redirected, timeout=60, what=first.log())
        assert first.role() == "follower"
        assert "ha: released leadership" in first.log()
        assert the_leader(members) is other


def test_a_rolling_restart_applies_nothing_twice(tmp_path: Path) -> None:
    with cluster_of(tmp_path) as (members, _remote, _etcd):
        wait_for(lambda: the_leader(members) is not None, timeout=30, what="one leader")
        leader = the_leader(members)
        assert leader is not None
        wait_for(lambda: "task seed: applied" in leader.log(), timeout=60, what=leader.log())
        for member in members:  # each in turn, the leader among them
            member.stop()
            member.start()
            assert member.proc is not None
            wait_listening(member.port, member.proc)
            wait_for(lambda: the_leader(members) is not None, timeout=60, what="a leader")
        leader = the_leader(members)
        assert leader is not None
        wait_for(
            lambda: "applied by earlier leaders are not applied again" in leader.log(),
            timeout=60,
            what=leader.log(),
        )
        wait_for(
            lambda: "task seed: leader: nothing changed since its last apply" in leader.log(),
            timeout=60,
            what=leader.log(),
        )
        applies = sum(m.log().count("task seed: applied") for m in members)
        assert applies == 1, [m.log() for m in members]


def test_the_one_shot_modes_do_not_join_the_cluster(tmp_path: Path) -> None:
    remote = Remote.create(tmp_path, SEED)
    dead = f"http://127.0.0.1:{free_port()}"  # no etcd anywhere: -once must not need one
    without_consul(tmp_path)
    (tmp_path / "config.hcl").write_text(
        'working_dir = "state"\n'
        f'source "git" {{\n  url = "{remote.url}"\n}}\n'
        'high_availability {\n  cluster {\n    name = "prod"\n'
        f'    storage "etcd" {{\n      endpoints = ["{dead}"]\n    }}\n  }}\n}}\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "start", "-once", "-config-file=config.hcl"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "task seed: applied" in result.stderr
    assert "ha:" not in result.stderr
