"""The API token: `api_token`, `api_token_file` or `api_token_env`; required as a bearer
token on every route but /v1/health and the webhook, through `reconciler start` on a
loopback port; rotated by SIGHUP; never logged."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import wait_for
from serverkit import daemon_process, wait_listening

from reconciler._core.errors import ConfigError
from reconciler.api.auth import bearer
from reconciler.settings import load_settings

TOKEN = "s3cret-Token_1"


def call(
    port: int, method: str, path: str, token: str | None = None, body: Any = None
) -> tuple[int, Any, dict[str, str]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token if " " in token else f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            headers = {k.lower(): v for k, v in response.headers.items()}
            return response.status, json.loads(raw) if raw else None, headers
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            answer: Any = json.loads(raw)
        except ValueError:
            answer = raw.decode()
        return err.code, answer, {k.lower(): v for k, v in err.headers.items()}


def settings_with(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Any:
    path = tmp_path / "config.hcl"
    path.write_text(text)
    return load_settings([str(path)], environ=env or {})


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as err:
        settings_with(tmp_path, text, env)
    return str(err.value)


def test_the_token_comes_from_one_of_three_places(tmp_path: Path) -> None:
    assert settings_with(tmp_path, f'api_token = "{TOKEN}"\n').api_token == TOKEN
    (tmp_path / "token").write_text(f"{TOKEN}\n")
    assert settings_with(tmp_path, 'api_token_file = "token"\n').api_token == TOKEN
    env = {"RECONCILER_API_TOKEN": TOKEN}
    settings = settings_with(tmp_path, 'api_token_env = "RECONCILER_API_TOKEN"\n', env)
    assert settings.api_token == TOKEN
    assert TOKEN not in repr(settings)
    assert settings_with(tmp_path, 'log_level = "INFO"\n').api_token == ""


def test_a_token_that_cannot_be_had_is_a_configuration_error(tmp_path: Path) -> None:
    both = problems(tmp_path, 'api_token = "a"\napi_token_file = "token"\n')
    assert "set only one of api_token, api_token_file" in both
    assert "config.hcl:2" in both
    missing = problems(tmp_path, 'api_token_file = "nope"\n')
    assert 'api_token_file "' in missing and "No such file or directory" in missing
    (tmp_path / "empty").write_text("\n")
    assert "is empty" in problems(tmp_path, 'api_token_file = "empty"\n')
    unset = problems(tmp_path, 'api_token_env = "NOT_SET_ANYWHERE"\n')
    assert "the environment variable NOT_SET_ANYWHERE is not set" in unset
    assert "whitespace" in problems(tmp_path, 'api_token = "two words"\n')


def test_a_token_over_plain_http_to_other_hosts_is_warned_about(tmp_path: Path) -> None:
    open_to_all = settings_with(tmp_path, f'api_token = "{TOKEN}"\nbind_address = "0.0.0.0"\n')
    assert any("clear text" in str(w) for w in open_to_all.warnings)
    loopback = settings_with(tmp_path, f'api_token = "{TOKEN}"\n')
    assert not any("clear text" in str(w) for w in loopback.warnings)


def test_bearer_header_parsing() -> None:
    assert bearer(b"Bearer abc") == b"abc"
    assert bearer(b"bearer  abc ") == b"abc"
    assert bearer(b"Basic abc") is None
    assert bearer(b"Bearer") is None


def test_every_route_but_health_and_the_webhook_needs_the_token(tmp_path: Path) -> None:
    with daemon_process(tmp_path, f'api_token = "{TOKEN}"\n') as (proc, port):
        wait_listening(port, proc)
        status, answer, headers = call(port, "GET", "/v1/tasks")
        assert status == 401
        assert "requires a token" in answer["error"]["message"] and answer["request_id"]
        assert headers["www-authenticate"].startswith("Bearer")
        assert call(port, "GET", "/v1/tasks", "wrong")[0] == 401
        assert call(port, "GET", "/v1/tasks", "Basic " + TOKEN)[0] == 401
        assert call(port, "GET", "/v1/tasks", TOKEN)[0] == 200
        assert call(port, "GET", "/v1/tasks", "bearer " + TOKEN)[0] == 200
        for path in ("/v1/status", "/v1/status/tasks", "/v1/tasks/x", "/v1/nope"):
            assert call(port, "GET", path)[0] == 401, path
        assert call(port, "GET", "/v1/health")[0] == 200
        # The webhook signs its requests: no token asked (here no git source: 404).
        assert call(port, "POST", "/v1/source/webhook", body={})[0] == 404

        body = {
            "task": {"name": "web", "module": "./m", "condition": {"services": {"names": ["web"]}}}
        }
        assert call(port, "POST", "/v1/tasks", body=body)[0] == 401
        assert call(port, "DELETE", "/v1/tasks/web")[0] == 401
        assert not (tmp_path / "tasks" / "web.hcl").exists()  # refused before anything ran
        proc.terminate()
        assert proc.wait(30) == 0
    assert TOKEN not in (tmp_path / "daemon.log").read_text()


def test_sighup_rotates_the_token(tmp_path: Path) -> None:
    with daemon_process(tmp_path, f'api_token = "{TOKEN}"\n') as (proc, port):
        wait_listening(port, proc)
        assert call(port, "GET", "/v1/tasks", TOKEN)[0] == 200
        config = tmp_path / "config.hcl"
        config.write_text(config.read_text().replace(TOKEN, "rotated-2"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: call(port, "GET", "/v1/tasks", "rotated-2")[0] == 200, timeout=30)
        assert call(port, "GET", "/v1/tasks", TOKEN)[0] == 401
        proc.terminate()
        assert proc.wait(30) == 0
    log = (tmp_path / "daemon.log").read_text()
    assert TOKEN not in log and "rotated-2" not in log


def test_json_logs_carry_the_request_id_of_api_lines(tmp_path: Path) -> None:
    with daemon_process(tmp_path, f'log_format = "json"\napi_token = "{TOKEN}"\n') as (proc, port):
        wait_listening(port, proc)
        status, answer, _ = call(port, "GET", "/v1/tasks")
        assert status == 401
        rid = answer["request_id"]
        log = tmp_path / "daemon.log"

        def refused() -> list[dict[str, Any]]:
            lines = [json.loads(line) for line in log.read_text().splitlines() if line]
            return [e for e in lines if "refused GET /v1/tasks" in e["message"]]

        wait_for(lambda: bool(refused()), timeout=10, what=log.read_text())
        [entry] = refused()
        assert entry["request_id"] == rid and entry["level"] == "WARNING"
        assert {"time", "logger"} <= set(entry)
        proc.terminate()
        assert proc.wait(30) == 0
    # Every line is one JSON object; lines outside a request carry no request id.
    entries = [json.loads(line) for line in log.read_text().splitlines() if line]
    assert any("serving the API" in e["message"] and "request_id" not in e for e in entries)


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    assert '"log_format" must be "text" or "json"' in problems(tmp_path, 'log_format = "xml"\n')
