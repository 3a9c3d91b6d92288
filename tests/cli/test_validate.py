"""`reconciler validate` checks every source, git ones in a temporary clone."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers import task_hcl

from reconciler.cli.main import EXIT_CONFIG, EXIT_ERROR, EXIT_OK, main

ENV = {
    "GIT_AUTHOR_NAME": "Human",
    "GIT_AUTHOR_EMAIL": "human@example.com",
    "GIT_COMMITTER_NAME": "Human",
    "GIT_COMMITTER_EMAIL": "human@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}
BROKEN = 'task {\n  name = "broken"\n  module = "./m"\n  enabled = "maybe"\n}\n'


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env={**os.environ, **ENV}, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class Repo:
    """A bare remote and a clone to commit from."""

    def __init__(self, root: Path) -> None:
        self.bare, self.work = root / "remote.git", root / "human"
        git(root, "init", "-q", "--bare", "-b", "main", str(self.bare))
        git(root, "clone", "-q", str(self.bare), str(self.work))
        git(self.work, "checkout", "-q", "-B", "main")

    def commit(self, files: dict[str, str | None], *, branch: str = "main") -> str:
        for rel, text in files.items():
            path = self.work / rel
            if text is None:
                path.unlink()
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "--allow-empty", "-m", "change")
        git(self.work, "push", "-q", "origin", f"HEAD:{branch}")
        return git(self.work, "rev-parse", "HEAD")


@pytest.fixture
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where validate's temporary clones go, to check they are removed."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def config(tmp_path: Path, source: str) -> str:
    path = tmp_path / "config.hcl"
    path.write_text(f'working_dir = "state"\n{source}')
    return str(path)


def validate(path: str) -> int:
    return main(["validate", f"-config-file={path}"])


def test_valid_git_source_is_checked_and_its_clone_removed(
    tmp_path: Path, temp_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Repo(tmp_path)
    sha = repo.commit({"tasks/a.hcl": task_hcl("a"), "tasks/b.hcl": task_hcl("b"), "x.hcl": "?"})
    cfg = config(tmp_path, 'source "git" {\n  url = "remote.git"\n  path = "tasks"\n}\n')
    assert validate(cfg) == EXIT_OK
    out, err = capsys.readouterr()
    assert "configuration is valid: 2 tasks" in out
    assert f"main at {sha}" in err
    assert list(temp_root.iterdir()) == []  # the temporary clone is gone
    assert not (tmp_path / "state").exists()  # the daemon's clone is not touched


def test_a_broken_task_file_in_the_repository_fails_with_file_and_line(
    tmp_path: Path, temp_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Repo(tmp_path)
    repo.commit({"tasks/a.hcl": task_hcl("a"), "tasks/team/broken.hcl": BROKEN})
    repo.commit({"tasks/syntax.hcl": "task {\n  name = \n"})
    cfg = config(tmp_path, 'source "git" {\n  url = "remote.git"\n  path = "tasks"\n}\n')
    assert validate(cfg) == EXIT_CONFIG
    out, err = capsys.readouterr()
    assert "configuration is valid" not in out
    assert "tasks/team/broken.hcl:4:" in err and '"enabled"' in err
    assert "tasks/syntax.hcl:2" in err
    assert list(temp_root.iterdir()) == []


def test_the_configured_ref_is_checked_not_the_branch_head(
    tmp_path: Path, temp_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Repo(tmp_path)
    good = repo.commit({"a.hcl": task_hcl("a")})
    git(repo.work, "tag", "v1")
    git(repo.work, "push", "-q", "origin", "v1")
    repo.commit({"broken.hcl": BROKEN})
    repo.commit({"c.hcl": task_hcl("c")}, branch="release")
    pinned = config(tmp_path, 'source "git" {\n  url = "remote.git"\n  ref = "v1"\n}\n')
    assert validate(pinned) == EXIT_OK
    assert "configuration is valid: 1 tasks" in capsys.readouterr().out
    by_commit = config(
        tmp_path, f'source "git" {{\n  url = "remote.git"\n  commit = "{good}"\n}}\n'
    )
    assert validate(by_commit) == EXIT_OK
    capsys.readouterr()
    head = config(tmp_path, 'source "git" {\n  url = "remote.git"\n}\n')
    assert validate(head) == EXIT_CONFIG
    assert "broken.hcl:4:" in capsys.readouterr().err
    # The release branch: main's broken file and release's c.hcl.
    release = config(tmp_path, 'source "git" {\n  url = "remote.git"\n  branch = "release"\n}\n')
    assert validate(release) == EXIT_CONFIG
    assert list(temp_root.iterdir()) == []


def test_an_unreachable_remote_is_an_error_not_a_pass(
    tmp_path: Path, temp_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, 'source "git" {\n  url = "nowhere.git"\n  timeout = "20s"\n}\n')
    assert validate(cfg) == EXIT_ERROR
    out, err = capsys.readouterr()
    assert "configuration is valid" not in out
    assert "not checked" in err and "nowhere.git" in err
    assert "config.hcl:" in err  # the source block's place in the configuration
    assert list(temp_root.iterdir()) == []


def test_problems_in_every_source_are_reported_together(
    tmp_path: Path, temp_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = Repo(tmp_path)
    repo.commit({"broken.hcl": BROKEN})
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "local.hcl").write_text(BROKEN.replace("broken", "local"))
    cfg = config(
        tmp_path,
        'source "directory" {\n  path = "tasks"\n}\n'
        'source "git" {\n  url = "remote.git"\n}\n'
        'source "git" {\n  url = "nowhere.git"\n}\n',
    )
    assert validate(cfg) == EXIT_CONFIG  # invalid files win over an unchecked source
    err = capsys.readouterr().err
    assert "local.hcl:4:" in err and "broken.hcl:4:" in err and "not checked" in err


def test_the_command_line_exit_code(tmp_path: Path) -> None:
    repo = Repo(tmp_path)
    repo.commit({"broken.hcl": BROKEN})
    cfg = config(tmp_path, 'source "git" {\n  url = "remote.git"\n}\n')
    result = subprocess.run(
        [sys.executable, "-m", "reconciler.cli.main", "validate", f"-config-file={cfg}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "broken.hcl:4:" in result.stderr
