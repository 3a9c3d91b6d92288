"""A `source "git"` block in the terms git is run with (`GitOptions`), and the environment
git runs in."""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reconciler.sources.git.settings import DEFAULT_PUSH_RETRIES, SECOND, GitSourceSettings

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCP_LIKE = re.compile(r"^[^/:]+:")


def mask_url(text: str) -> str:
    """`text` with the user information of every URL in it replaced by `***`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def _push_retry(value: int | str) -> tuple[int, bool]:
    """`push_retry` is an int (rejected-push retries) or "background" (keep unpushable
    commits and push them later, with the default number of retries)."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "background":
            return DEFAULT_PUSH_RETRIES, True
        if text.isdigit():
            return int(text), False
        raise ValueError(f'"push_retry" must be a number or "background", not "{value}"')
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value, False
    return DEFAULT_PUSH_RETRIES, False


def _local_url(url: str) -> str:
    """git runs inside the clone, so a relative local path is made absolute here."""
    if "://" in url or _SCP_LIKE.match(url):
        return url
    return str(Path(url).expanduser().absolute())


_BLOCK = GitSourceSettings(url="")  # a block that sets nothing: every default
_RETRIES, _BACKGROUND = _push_retry(_BLOCK.push_retry)


@dataclass(frozen=True)
class GitOptions:
    """A `source "git"` block in the terms git is run with: durations in seconds,
    `push_retry` as a number of retries and whether unpushable commits wait to be pushed
    in the background, the author's name and address, a local URL made absolute.

    The block declares the settings and their defaults: `from_settings` reads one, and
    the defaults here are the block's (for the tests and benchmarks that build one).
    """

    url: str
    branch: str = _BLOCK.branch
    ref: str | None = _BLOCK.ref
    commit: str | None = _BLOCK.commit
    path: str = _BLOCK.path  # folder inside the repository, "" for its root
    poll_interval_s: float = _BLOCK.poll_interval / SECOND
    push: bool = _BLOCK.push
    push_retries: int = _RETRIES
    background_push: bool = _BACKGROUND
    author_name: str = _BLOCK.author.name
    author_email: str = _BLOCK.author.email
    timeout_s: float = _BLOCK.timeout / SECOND
    ssh_key_file: str | None = None
    token_env: str | None = _BLOCK.token_env
    token_username: str = _BLOCK.token_username

    def __post_init__(self) -> None:
        if self.token_env is not None and not _ENV_NAME.fullmatch(self.token_env):
            raise ValueError(f'"token_env" must be an environment variable name: {self.token_env}')

    @property
    def pinned(self) -> bool:
        """A tag, ref or commit is followed: read-only."""
        return bool(self.ref or self.commit)

    @property
    def shown_url(self) -> str:
        return mask_url(self.url)

    @property
    def followed(self) -> str:
        if self.commit:
            return f"commit {self.commit}"
        if self.ref:
            return self.ref
        return f"branch {self.branch}"

    @classmethod
    def from_settings(cls, settings: GitSourceSettings) -> GitOptions:
        retries, background = _push_retry(settings.push_retry)
        return cls(
            url=_local_url(settings.url),
            branch=settings.branch or _BLOCK.branch,
            ref=settings.ref or None,
            commit=settings.commit or None,
            path=settings.path.strip("/"),
            poll_interval_s=settings.poll_interval / SECOND,
            push=settings.push,
            push_retries=retries,
            background_push=background,
            author_name=settings.author.name or _BLOCK.author.name,
            author_email=settings.author.email or _BLOCK.author.email,
            timeout_s=settings.timeout / SECOND,
            ssh_key_file=str(settings.ssh_key_file) if settings.ssh_key_file else None,
            token_env=settings.token_env or None,
            token_username=settings.token_username or _BLOCK.token_username,
        )


def git_environment(opts: GitOptions, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Variables added to every git command: never prompt, bounded network waits, our
    identity for commits, and credentials only through the usual git means. Secrets are
    never put on a command line: a token stays in its own variable and is read by a
    credential helper that git configures from the environment."""
    base = os.environ if base is None else base
    timeout = max(1, round(opts.timeout_s))
    ssh = [base.get("GIT_SSH_COMMAND") or "ssh", "-o BatchMode=yes", f"-o ConnectTimeout={timeout}"]
    if opts.ssh_key_file:
        ssh += [f"-i {shlex.quote(opts.ssh_key_file)}", "-o IdentitiesOnly=yes"]
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GCM_INTERACTIVE": "never",
        "GIT_EDITOR": "true",
        "GIT_SSH_COMMAND": " ".join(ssh),
        "GIT_AUTHOR_NAME": opts.author_name,
        "GIT_AUTHOR_EMAIL": opts.author_email,
        "GIT_COMMITTER_NAME": opts.author_name,
        "GIT_COMMITTER_EMAIL": opts.author_email,
    }
    config = [
        # Slow HTTP transfers fail instead of hanging until the kill.
        ("http.lowSpeedLimit", "1000"),
        ("http.lowSpeedTime", str(timeout)),
        # `gc --auto` may detach into the background; we run it ourselves (see source.py).
        ("gc.auto", "0"),
        ("maintenance.auto", "false"),
        ("commit.gpgSign", "false"),
        ("core.hooksPath", os.devnull),
    ]
    if opts.token_env:
        env["RECONCILER_GIT_USERNAME"] = opts.token_username
        helper = (
            '!f() { test "$1" = get || exit 0; '
            'printf "username=%s\\npassword=%s\\n" "$RECONCILER_GIT_USERNAME" '
            f'"${{{opts.token_env}}}"; }}; f'
        )
        config.append(("credential.helper", helper))
    start = int(base.get("GIT_CONFIG_COUNT", "0") or "0")
    for i, (key, value) in enumerate(config, start):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    env["GIT_CONFIG_COUNT"] = str(start + len(config))
    return env
