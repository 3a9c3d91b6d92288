"""Running the client commands (`reconciler task ...`, `reconciler status`) as a user does:
in a child process, with an environment of the test's choosing and text on standard input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# Variables that would point the CLI somewhere else than the test means.
CLIENT_ENV = (
    "RECONCILER_ADDRESS",
    "RECONCILER_TOKEN",
    "RECONCILER_CACERT",
    "RECONCILER_CAPATH",
    "RECONCILER_CLIENT_CERT",
    "RECONCILER_CLIENT_KEY",
    "RECONCILER_SSL_VERIFY",
    "CTS_ADDRESS",
    "CTS_CACERT",
    "CTS_CAPATH",
    "CTS_CLIENT_CERT",
    "CTS_CLIENT_KEY",
    "CTS_SSL_VERIFY",
)


def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    stdin: str = "",
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in CLIENT_ENV}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", *args],
        input=stdin,
        env=environ,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def json_of(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(result).stdout)
