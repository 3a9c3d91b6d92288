"""SIGHUP reloads the daemon configuration through `reconciler start`: task sources added,
removed and replaced, the buffer period, the number of Terraform workers, TLS certificates
rotated on the same paths, and
what cannot be applied (an unreadable new source, a broken certificate) is reported with
the running value kept."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import trustme
from helpers import task_hcl, wait_for, without_consul
from prometheus_client.parser import text_string_to_metric_families
from serverkit import daemon_process, wait_listening

MODULES = Path(__file__).resolve().parents[1] / "fixtures" / "modules"


def get(port: int, path: str, context: ssl.SSLContext | None = None) -> tuple[int, object]:
    scheme = "https" if context is not None else "http"
    host = "localhost" if context is not None else "127.0.0.1"
    try:
        with urllib.request.urlopen(
            f"{scheme}://{host}:{port}{path}", timeout=30, context=context
        ) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def task_names(port: int) -> set[str]:
    status, body = get(port, "/v1/tasks")
    assert status == 200, body
    assert isinstance(body, dict)
    return {t["name"] for t in body["tasks"]}


def source_block(path: str) -> str:
    return f'source "directory" {{\n  path = "{path}"\n  allow_empty = true\n}}\n'


def write_tasks(directory: Path, *names: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if not (directory / "mod").exists():
        shutil.copytree(MODULES / "services-file", directory / "mod")
    for name in names:
        (directory / f"{name}.hcl").write_text(task_hcl(name))


def reload(proc: subprocess.Popen[bytes], config: Path, text: str) -> None:
    config.write_text(text)
    proc.send_signal(signal.SIGHUP)


def log_text(tmp_path: Path) -> str:
    return (tmp_path / "daemon.log").read_text()


def test_sources_are_added_removed_and_replaced_without_a_restart(tmp_path: Path) -> None:
    write_tasks(tmp_path / "tasks", "a1", "a2")
    write_tasks(tmp_path / "more", "b1")
    with daemon_process(tmp_path) as (proc, port):
        wait_listening(port, proc)
        config = tmp_path / "config.hcl"
        without_consul(tmp_path)
        base = f'port = {port}\nworking_dir = "state"\n'
        wait_for(lambda: task_names(port) == {"a1", "a2"}, timeout=60, what="the first load")

        # Added: its tasks come, the first source keeps its own.
        reload(proc, config, base + source_block("tasks") + source_block("more"))
        wait_for(
            lambda: task_names(port) == {"a1", "a2", "b1"}, timeout=60, what=log_text(tmp_path)
        )
        # The new source is followed like the first: a file written later is picked up.
        write_tasks(tmp_path / "more", "b2")
        wait_for(lambda: "b2" in task_names(port), timeout=60, what=log_text(tmp_path))

        # Removed: its tasks go (a deliberate removal: the prune guard does not hold them).
        reload(proc, config, base + source_block("more"))
        wait_for(lambda: task_names(port) == {"b1", "b2"}, timeout=60, what=log_text(tmp_path))
        # A file appearing in the removed directory is no longer followed.
        write_tasks(tmp_path / "tasks", "a3")

        # Replaced by another path holding the same tasks: they move, none is deleted.
        shutil.copytree(tmp_path / "more", tmp_path / "renamed")
        reload(proc, config, base + source_block("renamed"))

        def moved() -> bool:
            status, body = get(port, "/v1/status/tasks/b1")
            assert status == 200, body
            return "renamed" in json.dumps(body)

        wait_for(moved, timeout=60, what=log_text(tmp_path))
        wait_for(
            lambda: "removed; 0 tasks created, 0 updated, 0 deleted" in log_text(tmp_path),
            timeout=60,
        )
        assert task_names(port) == {"b1", "b2"}

        # The API writes to the source the configuration now names.
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/tasks",
            data=json.dumps(
                {
                    "task": {
                        "name": "c1",
                        "module": "./mod",
                        "condition": {"services": {"names": ["web"]}},
                    }
                }
            ).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 201
        assert (tmp_path / "renamed" / "c1.hcl").exists()
        assert not (tmp_path / "more" / "c1.hcl").exists()
        assert "a3" not in task_names(port)
        proc.terminate()
        assert proc.wait(30) == 0


def test_an_unreadable_new_source_changes_nothing(tmp_path: Path) -> None:
    write_tasks(tmp_path / "tasks", "a1", "a2")
    with daemon_process(tmp_path) as (proc, port):
        wait_listening(port, proc)
        config = tmp_path / "config.hcl"
        without_consul(tmp_path)
        base = f'port = {port}\nworking_dir = "state"\n'
        wait_for(lambda: task_names(port) == {"a1", "a2"}, what="the first load")
        # The replacement is a file, not a directory: it cannot be read as a source.
        (tmp_path / "not-a-dir").write_text("x")
        reload(proc, config, base + source_block("not-a-dir"))
        wait_for(
            lambda: "task sources not changed" in log_text(tmp_path),
            what=log_text(tmp_path),
        )
        assert task_names(port) == {"a1", "a2"}
        # The running source is still followed.
        write_tasks(tmp_path / "tasks", "a3")
        wait_for(lambda: "a3" in task_names(port), what=log_text(tmp_path))
        proc.terminate()
        assert proc.wait(30) == 0


def idle_workers(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        for family in text_string_to_metric_families(response.read().decode()):
            for sample in family.samples:
                if sample.name == "reconciler_terraform_workers" and sample.labels == {
                    "state": "idle"
                }:
                    return sample.value
    raise AssertionError("no reconciler_terraform_workers sample")


def test_the_buffer_period_and_the_workers_follow_a_reload(tmp_path: Path) -> None:
    write_tasks(tmp_path / "tasks", "a1")
    (tmp_path / "tasks" / "own.hcl").write_text(
        task_hcl("own").replace(
            '  condition "services"',
            '  buffer_period {\n    min = "2s"\n    max = "8s"\n  }\n  condition "services"',
        )
    )
    workers = 'driver "terraform" {\n  workers = 3\n}\n'
    with daemon_process(tmp_path, workers) as (proc, port):
        wait_listening(port, proc)
        config = tmp_path / "config.hcl"
        without_consul(tmp_path)

        def buffer(name: str) -> object:
            status, body = get(port, f"/v1/tasks/{name}")
            assert status == 200, body
            assert isinstance(body, dict)
            return body["task"]["buffer_period"]

        wait_for(lambda: task_names(port) == {"a1", "own"}, what=log_text(tmp_path))
        assert buffer("a1") == {"enabled": True, "min": "5s", "max": "20s"}
        wait_for(lambda: idle_workers(port) == 3, what=log_text(tmp_path))
        text = config.read_text().replace("workers = 3", "workers = 1")
        text += 'buffer_period {\n  min = "1s"\n  max = "3s"\n}\n'
        reload(proc, config, text)
        wait_for(lambda: idle_workers(port) == 1, what=log_text(tmp_path))
        wait_for(
            lambda: buffer("a1") == {"enabled": True, "min": "1s", "max": "3s"},
            what=log_text(tmp_path),
        )
        assert buffer("own") == {"enabled": True, "min": "2s", "max": "8s"}
        assert "taking effect only after a restart" not in log_text(tmp_path)
        proc.terminate()
        assert proc.wait(30) == 0


def _client(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def _handshake(port: int, context: ssl.SSLContext) -> str:
    """ "ok", or why the handshake failed."""
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            context.wrap_socket(raw, server_hostname="localhost"),
        ):
            return "ok"
    except ssl.SSLError as exc:
        return f"{type(exc).__name__}: {exc}"


def test_tls_certificates_are_rotated_on_the_same_paths(tmp_path: Path) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"

    def issue(ca: trustme.CA) -> None:
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))

    issue(old_ca)
    tls = f'tls {{\n  enabled = true\n  cert = "{cert}"\n  key = "{key}"\n}}\n'
    with daemon_process(tmp_path, tls) as (proc, port):
        wait_listening(port, proc)
        config = tmp_path / "config.hcl"
        without_consul(tmp_path)
        assert get(port, "/v1/health", _client(old_ca))[0] == 200
        assert _handshake(port, _client(new_ca)) != "ok"

        issue(new_ca)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _handshake(port, _client(new_ca)) == "ok", what=log_text(tmp_path))
        assert get(port, "/v1/health", _client(new_ca))[0] == 200
        assert _handshake(port, _client(old_ca)) != "ok"

        # A broken certificate fails validation (file:line): nothing is reloaded, the
        # running certificate keeps being served.
        cert.write_text("not a certificate\n")
        proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "configuration not reloaded" in log_text(tmp_path),
            what=log_text(tmp_path),
        )
        lines = (tmp_path / "config.hcl").read_text().splitlines()
        line = next(i for i, text in enumerate(lines, 1) if text.startswith("  cert ="))
        assert f'config.hcl:{line}: tls: cannot load cert "{cert}"' in log_text(tmp_path)
        assert _handshake(port, _client(new_ca)) == "ok"

        # Turning TLS off is named as needing a restart (the socket is made at start); the
        # certificates are still re-read for the running socket, and the broken one is
        # refused there too.
        reload(proc, config, config.read_text().replace("enabled = true", "enabled = false"))
        wait_for(
            lambda: "taking effect only after a restart: tls.enabled" in log_text(tmp_path),
            what=log_text(tmp_path),
        )
        wait_for(
            lambda: "TLS certificates not reloaded" in log_text(tmp_path),
            what=log_text(tmp_path),
        )
        assert _handshake(port, _client(new_ca)) == "ok"
        proc.terminate()
        assert proc.wait(30) == 0
