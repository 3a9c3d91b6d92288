"""Helpers of the daemon configuration tests (tests/settings): writing configuration files
inline, loading them as the daemon does, and reading back their problems."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from reconciler._core.errors import ConfigError
from reconciler.settings import Settings, load_settings

FIXTURES = Path(__file__).parent / "fixtures" / "settings"
S = 1_000_000_000


def src(text: str) -> str:
    """Dedent an inline config; line 1 is the first line after the opening quotes."""
    return textwrap.dedent(text).lstrip("\n")


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(src(text))
    return path


def copy_certs(**targets: Path) -> None:
    """Put the fixture certificates (cert, key, ca) where a test's configuration names them."""
    names = {"cert": "cts_cert.pem", "key": "cts_key.pem", "ca": "ca_cert.pem"}
    for which, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(FIXTURES / "cts" / "certs" / names[which], target)


def load(*paths: str | Path, env: dict[str, str] | None = None) -> Settings:
    return load_settings(list(paths), environ=env or {}, hostname="testhost")


def problems_of(*paths: str | Path, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(*paths, env=env)
    return [p.without_location() for p in info.value.problems]


def located(*paths: str | Path) -> list[tuple[int, str]]:
    """(line, message) of every problem."""
    with pytest.raises(ConfigError) as info:
        load(*paths)
    out = []
    for p in info.value.problems:
        assert p.location is not None, p
        out.append((p.location.line, p.without_location()))
    return out
