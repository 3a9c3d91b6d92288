"""`make install` into a staging root: the venv runs, the unit is the verified one, the
default configuration starts a daemon, and a second install keeps an edited
configuration."""

from __future__ import annotations

import os
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import free_port
from serverkit import wait_listening

CHECKOUT = Path(__file__).resolve().parents[2]


def install(root: Path) -> str:
    result = subprocess.run(
        ["make", "-s", "install", f"ROOT={root}"],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_make_install_into_a_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    assert f"installed under {root}" in install(root)
    binary = root / "opt/reconciler/venv/bin/reconciler"
    unit = root / "etc/systemd/system/reconciler.service"
    config = root / "etc/reconciler/config.hcl"
    assert (root / "var/lib/reconciler/tasks").is_dir()
    # The unit as verified by test_notify (the default PREFIX changes nothing in it).
    assert unit.read_text() == (CHECKOUT / "systemd" / "reconciler.service").read_text()
    version = subprocess.run([binary, "-version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.strip(), version.stderr

    # A random token, readable by its owner and group only; the configuration uses it.
    token_file = root / "etc/reconciler/token"
    token = token_file.read_text().strip()
    assert len(token) >= 40 and stat.S_IMODE(token_file.stat().st_mode) == 0o640
    assert 'api_token_file = "/etc/reconciler/token"' in config.read_text()

    # The default configuration, with its paths moved under the root and a free port.
    port = free_port()
    text = config.read_text().replace("/var/lib/reconciler", str(root / "var/lib/reconciler"))
    text = text.replace("/etc/reconciler", str(root / "etc/reconciler"))
    trial = tmp_path / "trial.hcl"
    trial.write_text(text.replace("port         = 8558", f"port = {port}"))
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([binary, "start", f"-config-file={trial}"], stderr=log)
        try:
            wait_listening(port, proc)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=30) as r:
                assert r.status == 200
            # Without the token: 401. The CLI on the host finds the token file.
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/tasks", timeout=30)
            assert refused.value.code == 401
            refused.value.close()  # the error holds the response and its socket
            cli = subprocess.run(
                [binary, "task", "list", f"-http-addr=127.0.0.1:{port}"],
                env={**os.environ, "RECONCILER_TOKEN_FILE": str(token_file)},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert cli.returncode == 0, cli.stdout + cli.stderr
        finally:
            proc.terminate()
            assert proc.wait(30) == 0, (tmp_path / "daemon.log").read_text()

    # A second install keeps the operator's configuration.
    config.write_text(config.read_text() + "# edited\n")
    assert f"kept the existing {config}" in install(root)
    assert config.read_text().endswith("# edited\n")
    assert token_file.read_text().strip() == token  # and its token
