"""What the git source needs from a `source "git"` block, and the environment git runs in.

The settings layer sits above sources, so the block is read by attribute name
(`GitOptions.from_settings`) rather than imported; a field the object does not have, or
leaves unset, falls back to its default.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SECOND_NS = 1_000_000_000
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_PUSH_RETRIES = 3

_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SCP_LIKE = re.compile(r"^[^/:]+:")


def mask_url(text: str) -> str:
    """`text` with the user information of every URL in it replaced by `***`."""
    return _USERINFO.sub(r"\g<scheme>***@", text)


def _seconds(value: object, default: float) -> float:
    """A settings duration (int nanoseconds, like poll_interval) or plain seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if isinstance(value, int) and value >= SECOND_NS // 1000:
        return value / SECOND_NS
    return float(value)


def _push_retry(value: object) -> tuple[int, bool]:
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


@dataclass(frozen=True)
class GitOptions:
    url: str
    branch: str = "main"
    ref: str | None = None
    commit: str | None = None
    path: str = ""  # folder inside the repository, "" for its root
    poll_interval_s: float = 30.0
    push: bool = False
    push_retries: int = DEFAULT_PUSH_RETRIES
    background_push: bool = False
    author_name: str = "reconciler"
    author_email: str = "reconciler@localhost"
    timeout_s: float = DEFAULT_TIMEOUT_S
    ssh_key_file: str | None = None
    token_env: str | None = None
    token_username: str = "x-access-token"

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
    def from_settings(cls, settings: object) -> GitOptions:
        """Read a settings `GitSource` (or anything with the same attribute names)."""
        retries, background = _push_retry(getattr(settings, "push_retry", DEFAULT_PUSH_RETRIES))
        author = getattr(settings, "author", None)
        return cls(
            url=_local_url(str(getattr(settings, "url"))),  # noqa: B009 - required field
            branch=getattr(settings, "branch", None) or "main",
            ref=getattr(settings, "ref", None) or None,
            commit=getattr(settings, "commit", None) or None,
            path=(getattr(settings, "path", "") or "").strip("/"),
            poll_interval_s=_seconds(getattr(settings, "poll_interval", None), 30.0),
            push=bool(getattr(settings, "push", False)),
            push_retries=retries,
            background_push=background,
            author_name=getattr(author, "name", None) or cls.author_name,
            author_email=getattr(author, "email", None) or cls.author_email,
            timeout_s=_seconds(getattr(settings, "timeout", None), DEFAULT_TIMEOUT_S),
            ssh_key_file=getattr(settings, "ssh_key_file", None) or None,
            token_env=getattr(settings, "token_env", None) or None,
            token_username=getattr(settings, "token_username", None) or cls.token_username,
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
