"""`source` blocks: directories and git repositories of task files, their options and
their problems, and the sources each kind of block builds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from settingskit import S, load, write

from reconciler._core.errors import ConfigError, Location
from reconciler.settings import DirectorySourceSettings, GitAuthorSettings, GitSourceSettings

# --- sources ---------------------------------------------------------------------------------


def test_sources(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf/cts.hcl",
        """
        source "directory" {
          path = "tasks"
        }
        source "directory" {
          path        = "/srv/more-tasks"
          allow_empty = true
        }
        source "git" {
          url = "https://git.example.com/infra/tasks.git"
        }
        source "git" {
          url            = "git@example.com:infra/tasks.git"
          branch         = "prod"
          path           = "./cts/tasks/"
          poll_interval  = "1m"
          push           = true
          webhook_secret = "s3cret"
          push_retry     = 5
          author {
            name  = "bot"
            email = "bot@example.com"
          }
        }
        source "git" {
          url    = "https://git.example.com/pinned.git"
          commit = "0123456789abcdef0123456789abcdef01234567"
        }
    """,
    )
    conf = tmp_path / "conf"
    assert load(path).sources == (
        DirectorySourceSettings(conf / "tasks", False),
        DirectorySourceSettings(Path("/srv/more-tasks"), True),
        GitSourceSettings(
            "https://git.example.com/infra/tasks.git",
            "main",
            None,
            None,
            "",
            30 * S,
            False,
            None,
            3,
            author=GitAuthorSettings("reconciler", "reconciler@localhost"),
        ),
        GitSourceSettings(
            "git@example.com:infra/tasks.git",
            "prod",
            None,
            None,
            "cts/tasks",
            60 * S,
            True,
            "s3cret",
            5,
            author=GitAuthorSettings("bot", "bot@example.com"),
        ),
        GitSourceSettings(
            "https://git.example.com/pinned.git", commit="0123456789abcdef0123456789abcdef01234567"
        ),
    )
    assert load(path).sources[0].location == Location(str(path), 1)


# --- git source options -------------------------------------------------------------------


def test_git_source_options(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "conf/cts.hcl",
        """
        source "git" {
          url          = "../repos/tasks.git"
          push_retry   = "background"
          ssh_key_file = "keys/deploy"
          token_env    = "GIT_TOKEN"
          timeout      = "10s"
        }
    """,
    )
    (src,) = load(path).sources
    assert isinstance(src, GitSourceSettings)
    assert src.url == str(tmp_path / "conf" / ".." / "repos" / "tasks.git")
    assert src.push_retry == "background"
    assert src.ssh_key_file == tmp_path / "conf" / "keys" / "deploy"
    assert (src.token_env, src.timeout) == ("GIT_TOKEN", 10 * S)


def test_git_source_option_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cts.hcl",
        """
        source "git" {
          url        = "https://x/y.git"
          push_retry = "later"
          token_env  = "not a name"
        }
    """,
    )
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    assert 'cts.hcl:3: source "git": "push_retry" must be a whole number or "background"' in text
    assert 'cts.hcl:4: source "git": "token_env" must name an environment variable' in text


# --- what each kind of block builds ---------------------------------------------------------


def test_a_git_source_block_is_read_without_importing_git(tmp_path: Path) -> None:
    # GitPython needs the git binary: a machine without git still reads the configuration.
    path = write(tmp_path, "cts.hcl", 'source "git" {\n  url = "https://x/y.git"\n}\n')
    code = (
        "import sys\n"
        "from reconciler.settings import load_settings\n"
        f"load_settings([{str(path)!r}], environ={{}})\n"
        "assert 'git' not in sys.modules, 'GitPython was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_a_git_source_hands_its_ssh_key_file_to_git(tmp_path: Path) -> None:
    from reconciler.sources.git import GitOptions, git_environment

    path = write(
        tmp_path,
        "cts.hcl",
        'source "git" {\n  url = "git@example.com:r.git"\n  ssh_key_file = "keys/a key"\n}\n',
    )
    (src,) = load(path).sources
    assert isinstance(src, GitSourceSettings)
    env = git_environment(GitOptions.from_settings(src), base={})
    assert f"-i '{tmp_path / 'keys' / 'a key'}' -o IdentitiesOnly=yes" in env["GIT_SSH_COMMAND"]


def test_each_kind_of_block_plans_its_source(tmp_path: Path) -> None:
    directory = DirectorySourceSettings(tmp_path / "tasks", allow_empty=True)
    plan = directory.plan(tmp_path / "work", "directory-1")
    assert (plan.source.name, plan.allow_empty, plan.writable, plan.key) == (
        "directory-1",
        True,
        True,
        directory,
    )
    pinned = GitSourceSettings(
        "https://x/y.git", ref="refs/tags/v1", poll_interval=5 * S, webhook_secret="s"
    )
    plan = pinned.plan(tmp_path / "work", "git-1")
    try:
        assert (plan.source.name, plan.writable, plan.rescan_interval) == ("git-1", False, 5.0)
        assert (plan.webhook_secret, plan.key) == ("s", pinned)
    finally:
        plan.source.close()  # type: ignore[attr-defined]
