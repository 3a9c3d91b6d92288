"""The client's parts on their own: Go-style flags, settings precedence, the progress line."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from helpers import wait_for

from reconciler.cli import client
from reconciler.cli.client import ClientError, add_client_flags, resolve_settings
from reconciler.cli.flags import FlagError, FlagSet, HelpRequested
from reconciler.cli.progress import waiting
from reconciler.cli.status import status_lines


def flags() -> FlagSet:
    f = FlagSet()
    add_client_flags(f)
    f.add("auto-approve", bool, False, "")
    return f


def test_flags_parse_as_go_does() -> None:
    f = flags()
    rest = f.parse(["--http-addr", "https://h:1", "-auto-approve", "-ssl-verify=false", "x", "-y"])
    assert rest == ["x", "-y"]  # parsing stops at the first argument
    assert f.string("http-addr") == "https://h:1"
    assert f.boolean("auto-approve") is True and f.boolean("ssl-verify") is False
    assert f.given == {"http-addr", "auto-approve", "ssl-verify"}
    assert flags().parse(["--", "-auto-approve"]) == ["-auto-approve"]
    with pytest.raises(HelpRequested):
        flags().parse(["-help"])
    for args, message in [
        (["-nope"], "flag provided but not defined: -nope"),
        (["-token"], "flag needs an argument: -token"),
        (["-auto-approve=yes"], 'invalid boolean value "yes" for -auto-approve'),
        (["-port=x"], 'invalid value "x" for flag -port'),
        (["---x"], "bad flag syntax: ---x"),
    ]:
        with pytest.raises(FlagError, match=message):
            flags().parse(args)


def test_settings_take_the_flag_then_reconciler_then_cts_names() -> None:
    env = {
        "RECONCILER_ADDRESS": "http://r:1",
        "CTS_ADDRESS": "http://c:1",
        "CTS_CACERT": "cts.pem",
        "CTS_SSL_VERIFY": "0",
        "RECONCILER_TOKEN": "t",
    }
    settings, warning = resolve_settings(flags(), env)
    assert (settings.address, settings.ca_cert, settings.ssl_verify, settings.token) == (
        "http://r:1",
        "cts.pem",
        False,
        "t",
    )
    assert warning == ""
    f = flags()
    f.parse(["-http-addr=https://f:2/ignored/path", "-ca-cert=flag.pem", "-ssl-verify=true"])
    settings, _ = resolve_settings(f, env)
    assert (settings.address, settings.ca_cert, settings.ssl_verify) == (
        "https://f:2",
        "flag.pem",
        True,
    )
    f = flags()
    f.parse(["-port=9000"])
    settings, warning = resolve_settings(f, {})
    assert settings.address == "http://localhost:9000" and "'port' option is deprecated" in warning
    with pytest.raises(ClientError, match="unknown protocol scheme: ftp"):
        resolve_settings(flags(), {"CTS_ADDRESS": "ftp://h"})
    with pytest.raises(ClientError, match='invalid boolean value "maybe" for CTS_SSL_VERIFY'):
        resolve_settings(flags(), {"CTS_SSL_VERIFY": "maybe"})


class Terminal(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_shows_on_a_terminal_and_is_erased() -> None:
    stream = Terminal(tty=True)
    with waiting(stream, "Applying 'web'", delay=0, interval=0.01):
        wait_for(lambda: "Applying 'web' (" in stream.getvalue(), what="the progress line")
    assert stream.getvalue().endswith("\r\x1b[K")


def test_progress_stays_quiet_when_not_a_terminal() -> None:
    stream = Terminal(tty=False)
    with waiting(stream, "Applying 'web'", delay=0, interval=0.01):
        pass
    assert stream.getvalue() == ""


def test_status_lists_what_is_wrong_under_the_table() -> None:
    lines = status_lines(
        {
            "web": {
                "status": "errored",
                "enabled": True,
                "active": True,
                "source": {"file": "tasks/web.hcl", "line": 3},
                "file_errors": ['tasks/web.hcl:4: task "web": bad'],
                "init_error": "module not found",
            },
            "db": {"status": "successful", "enabled": False, "deleting": True, "source": {}},
        }
    )
    assert [line.split() for line in lines[:3]] == [
        ["TASK", "STATUS", "ENABLED", "RUNNING", "SOURCE"],
        ["db", "successful", "false", "deleting", "-"],
        ["web", "errored", "true", "true", "tasks/web.hcl:3"],
    ]
    assert "2 tasks: 1 successful, 1 errored; 1 disabled" in lines
    assert lines[lines.index("Problems:") + 1 :] == [
        "  task 'web': file: tasks/web.hcl:4: task \"web\": bad",
        "  task 'web': module not found",
    ]
    assert status_lines({}) == ["No tasks."]


def test_the_token_file_is_found_for_a_daemon_on_this_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "token"
    installed.write_text("installed-token\n")
    monkeypatch.setattr(client, "DEFAULT_TOKEN_FILE", str(installed))
    settings, _ = resolve_settings(flags(), {})
    assert settings.token == "installed-token"
    # Never sent to another host on its own.
    f = flags()
    f.parse(["-http-addr=http://elsewhere.example:8558"])
    assert resolve_settings(f, {})[0].token == ""
    # RECONCILER_TOKEN_FILE is used for any address, and must be readable.
    named = tmp_path / "named"
    named.write_text(" named-token \n")
    f = flags()
    f.parse(["-http-addr=http://elsewhere.example:8558"])
    assert resolve_settings(f, {"RECONCILER_TOKEN_FILE": str(named)})[0].token == "named-token"
    with pytest.raises(ClientError, match="RECONCILER_TOKEN_FILE"):
        resolve_settings(flags(), {"RECONCILER_TOKEN_FILE": str(tmp_path / "none")})
    # A token given outright wins over both.
    assert resolve_settings(flags(), {"RECONCILER_TOKEN": "t"})[0].token == "t"
    # Not installed, or not readable by this user: no token, no error.
    installed.unlink()
    assert resolve_settings(flags(), {})[0].token == ""
