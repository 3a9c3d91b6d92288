"""The daemon names, when it starts, every setting it reads but does not act on."""

from __future__ import annotations

from pathlib import Path

from helpers import wait_for
from serverkit import daemon_process, wait_listening


def test_unsupported_settings_are_logged_at_start(tmp_path: Path) -> None:
    extra = 'syslog {\n  enabled = true\n}\nclient_type = "dev"\n'
    log = tmp_path / "daemon.log"
    with daemon_process(tmp_path, extra) as (proc, port):
        wait_listening(port, proc)
        wait_for(lambda: "serving the API" in log.read_text(), timeout=30, what="start-up")
    text = log.read_text()
    config = tmp_path / "config.hcl"
    lines = config.read_text().splitlines()
    syslog, client_type = lines.index("syslog {") + 1, lines.index('client_type = "dev"') + 1
    assert f"{config}:{syslog}: syslog is not supported and has no effect" in text
    assert f"{config}:{client_type}: client_type is not supported and has no effect" in text


def test_an_api_without_a_token_is_warned_about_and_one_with_a_token_is_not(
    tmp_path: Path,
) -> None:
    log = tmp_path / "open" / "daemon.log"
    (tmp_path / "open").mkdir()
    with daemon_process(tmp_path / "open") as (proc, port):
        wait_listening(port, proc)
        wait_for(lambda: "serving the API" in log.read_text(), timeout=30, what="start-up")
    text = log.read_text()
    assert "the API has no token" in text
    assert f"can reach 127.0.0.1:{port} can run programs as this daemon's user" in text
    closed = tmp_path / "closed"
    closed.mkdir()
    with daemon_process(closed, 'api_token = "s3cret-token-x"\n') as (proc, port):
        wait_listening(port, proc)
        wait_for(
            lambda: "serving the API" in (closed / "daemon.log").read_text(),
            timeout=30,
            what="start-up",
        )
    assert "the API has no token" not in (closed / "daemon.log").read_text()
