"""`source "<type>"` blocks: where task files live. Zero or more, concatenated across files."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from reconciler._core.errors import Location, Problem
from reconciler.settings.model import (
    SOURCE_TYPES,
    DirectorySourceSettings,
    GitAuthorSettings,
    GitSourceSettings,
    SourceSettings,
)
from reconciler.settings.partial import Partial, decode_block
from reconciler.settings.schema import SOURCES
from reconciler.taskfiles.decode import BodyReader
from reconciler.taskfiles.hcl import Block

_COMMIT = re.compile(r"[0-9a-fA-F]{7,64}")
_SCP_LIKE = re.compile(r"^[^/]+:")  # user@host:repo.git


def decode_source(r: BodyReader, block: Block, base_dir: Path) -> SourceSettings | None:
    """Decode one source block; None (with problems recorded) when it is unusable."""
    kind = block.labels[0]
    if kind not in SOURCE_TYPES:
        allowed = ", ".join(f'"{t}"' for t in SOURCE_TYPES)
        r.error(f'unsupported source type "{kind}"; expected one of: {allowed}', block.line)
        return None
    before = len(r.problems)
    cr = r.child(block, f'source "{kind}"')
    partial = decode_block(cr, SOURCES[kind], base_dir)
    at = Location(r.file, block.line)
    source = _directory(cr, partial, at) if kind == "directory" else _git(cr, partial, at, base_dir)
    return source if len(r.problems) == before else None


def _directory(r: BodyReader, p: Partial, at: Location) -> DirectorySourceSettings | None:
    path = p.get("path")
    if not path:
        r.error('"path" is required', p.loc("path").line)
        return None
    return DirectorySourceSettings(Path(path), p.get("allow_empty", False), at)


def _git(r: BodyReader, p: Partial, at: Location, base_dir: Path) -> GitSourceSettings | None:
    def bad(message: str, *names: str) -> None:
        r.error(message, p.loc(*names).line)

    url = p.get("url")
    if not url:
        bad('"url" is required', "url")
    elif "://" not in url and not _SCP_LIKE.match(url) and not Path(url).is_absolute():
        # A local repository path, like every path: relative to this configuration file.
        url = str(base_dir / url)
    branch = p.get("branch", "main")
    if not branch:
        bad('"branch" must not be empty', "branch")
    ref, commit = p.get("ref") or None, p.get("commit") or None
    if ref and commit:
        bad('set either "ref" or "commit", not both', "commit")
    if commit and not _COMMIT.fullmatch(commit):
        bad(f'"commit" must be a hexadecimal commit id, not "{commit}"', "commit")
    push = p.get("push", False)
    if push and (ref or commit):
        bad(
            '"push" writes to "branch"; it cannot be combined with "ref" or "commit", '
            "which pin a revision",
            "push",
        )
    path = _repo_path(p.get("path", ""))
    if path is None:
        bad(f'"path" must be a relative path inside the repository, not "{p.get("path")}"', "path")
    poll = p.get("poll_interval", GitSourceSettings.poll_interval)
    if poll <= 0:
        bad('"poll_interval" must be positive', "poll_interval")
    retry = p.get("push_retry", GitSourceSettings.push_retry)
    if isinstance(retry, int) and retry < 0:
        bad('"push_retry" cannot be negative', "push_retry")
    token_env = p.get("token_env")
    if token_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", token_env):
        bad(f'"token_env" must name an environment variable, not "{token_env}"', "token_env")
    timeout = p.get("timeout", GitSourceSettings.timeout)
    if timeout <= 0:
        bad('"timeout" must be positive', "timeout")
    secret = p.get("webhook_secret")
    if secret is not None and not secret:
        bad('"webhook_secret" must not be empty: unsigned webhooks are rejected', "webhook_secret")
    author = p.block("author")
    return GitSourceSettings(
        url=url or "",
        branch=branch,
        ref=ref,
        commit=commit,
        path=path or "",
        poll_interval=poll,
        push=push,
        webhook_secret=secret,
        push_retry=retry,
        ssh_key_file=Path(p.get("ssh_key_file")) if p.get("ssh_key_file") else None,
        token_env=token_env,
        token_username=p.get("token_username", GitSourceSettings.token_username),
        timeout=timeout,
        author=GitAuthorSettings(
            author.get("name", GitAuthorSettings.name), author.get("email", GitAuthorSettings.email)
        ),
        location=at,
    )


def _repo_path(text: str) -> str | None:
    """Normalise a directory inside the repository ("" for the root)."""
    pure = PurePosixPath(text.strip())
    if pure.is_absolute() or ".." in pure.parts:
        return None
    normal = str(pure)
    return "" if normal == "." else normal


def duplicate_sources(sources: list[SourceSettings]) -> list[Problem]:
    """Two sources reading the same tasks would define every task twice."""
    problems: list[Problem] = []
    seen: dict[object, SourceSettings] = {}
    for source in sources:
        key: object
        if isinstance(source, DirectorySourceSettings):
            key = ("directory", source.path)
            shown = f'source "directory" with path "{source.path}"'
        else:
            key = ("git", source.url, source.branch, source.ref, source.commit, source.path)
            shown = f'source "git" with url "{source.url}"'
        first = seen.setdefault(key, source)
        if first is not source:
            problems.append(
                Problem(
                    f"duplicate source: {shown} is already configured at {first.location}",
                    location=source.location,
                )
            )
    return problems
