"""SIGHUP through `reconciler start`: the log settings apply at once; every other changed
setting is named as needing a restart, none is dropped silently."""

from __future__ import annotations

import signal
from pathlib import Path

from helpers import wait_for
from serverkit import daemon_process, wait_listening

from reconciler.daemon.runtime import restart_needed
from reconciler.settings.model import (
    BufferPeriodSettings,
    DirectorySourceSettings,
    Settings,
    TerraformDriverSettings,
    TLSSettings,
)


def test_restart_needed_names_what_a_reload_does_not_apply() -> None:
    old = Settings()
    new = Settings(
        log_level="DEBUG",
        api_token="x",
        port=9000,
        buffer_period=BufferPeriodSettings(min=1),
        sources=(DirectorySourceSettings(Path("/elsewhere")),),
        driver=TerraformDriverSettings(workers=9, log=True, persist_log=True),
        tls=TLSSettings(cert=Path("/new.pem"), verify_incoming=True),
    )
    assert restart_needed(old, new) == ["port", "tls.verify_incoming"]
    backend = Settings(driver=TerraformDriverSettings(workers=9, backend={"s3": {}}))
    assert restart_needed(old, backend) == ["driver.backend"]
    assert restart_needed(old, old) == []


def test_sighup_applies_the_log_level_and_names_the_rest(tmp_path: Path) -> None:
    with daemon_process(tmp_path, 'log_level = "WARN"\n') as (proc, port):
        wait_listening(port, proc)
        config = tmp_path / "config.hcl"
        text = config.read_text().replace('log_level = "WARN"', 'log_level = "DEBUG"')
        config.write_text(text + 'driver "terraform" {\n  apply_on_start = "always"\n}\n')
        proc.send_signal(signal.SIGHUP)
        log = tmp_path / "daemon.log"
        wait_for(lambda: "[DEBUG]" in log.read_text(), timeout=30, what=log.read_text())
        text = log.read_text()
        assert "changed, but taking effect only after a restart: driver.apply_on_start" in text
        assert "log_level" not in text.split("restart:")[1].splitlines()[0]
        proc.terminate()
        assert proc.wait(30) == 0
