"""`source "<kind>"` blocks: where task files live. Zero or more, concatenated across files.

`SOURCE_KINDS` is the one table of the kinds of source block: for each label, the keys
of its block and the reader that checks them and applies the defaults. What a block then
is, how its source is built and how `reconciler validate` reads it belong to its kind of
source (its settings class, a `reconciler.sources.base.SourceSettings`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from reconciler._core.errors import Location, Problem
from reconciler.settings.model import (
    DirectorySourceSettings,
    GitAuthorSettings,
    GitSourceSettings,
    SourceSettings,
)
from reconciler.settings.partial import Partial, decode_block
from reconciler.settings.schema import B, BlockSpec, D, Kind, P, S
from reconciler.taskfiles.decode import BodyReader
from reconciler.taskfiles.hcl import Block

_COMMIT = re.compile(r"[0-9a-fA-F]{7,64}")
_SCP_LIKE = re.compile(r"^[^/]+:")  # user@host:repo.git

# Reads a decoded block (given where it is written and the directory of its file) into
# its settings, or records problems on the reader and returns None.
ReadBlock = Callable[[BodyReader, Partial, Location, Path], SourceSettings | None]


@dataclass(frozen=True)
class SourceKind:
    """How one kind of `source` block is read."""

    spec: BlockSpec  # the block's keys
    read: ReadBlock


def decode_source(r: BodyReader, block: Block, base_dir: Path) -> SourceSettings | None:
    """Decode one source block; None (with problems recorded) when it is unusable."""
    label = block.labels[0]
    kind = SOURCE_KINDS.get(label)
    if kind is None:
        allowed = ", ".join(f'"{t}"' for t in SOURCE_KINDS)
        r.error(f'unsupported source type "{label}"; expected one of: {allowed}', block.line)
        return None
    before = len(r.problems)
    cr = r.child(block, f'source "{label}"')
    partial = decode_block(cr, kind.spec, base_dir)
    source = kind.read(cr, partial, Location(r.file, block.line), base_dir)
    return source if len(r.problems) == before else None


DIRECTORY_SOURCE = BlockSpec({"path": P, "allow_empty": B})


def _directory(
    r: BodyReader, p: Partial, at: Location, base_dir: Path
) -> DirectorySourceSettings | None:
    path = p.get("path")
    if not path:
        r.error('"path" is required', p.loc("path").line)
        return None
    return DirectorySourceSettings(Path(path), p.get("allow_empty", False), at)


GIT_SOURCE = BlockSpec(
    {
        "url": S,
        "branch": S,
        "ref": S,
        "commit": S,
        "path": S,
        "poll_interval": D,
        "push": B,
        "webhook_secret": S,
        "push_retry": Kind.RETRY,
        "ssh_key_file": P,
        "token_env": S,
        "token_username": S,
        "timeout": D,
    },
    {"author": BlockSpec({"name": S, "email": S})},
)


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


SOURCE_KINDS: dict[str, SourceKind] = {
    DirectorySourceSettings.kind: SourceKind(DIRECTORY_SOURCE, _directory),
    GitSourceSettings.kind: SourceKind(GIT_SOURCE, _git),
}


def duplicate_sources(sources: list[SourceSettings]) -> list[Problem]:
    """Two sources reading the same tasks would define every task twice."""
    problems: list[Problem] = []
    seen: dict[object, SourceSettings] = {}
    for source in sources:
        first = seen.setdefault((source.kind, source.identity), source)
        if first is not source:
            problems.append(
                Problem(
                    f"duplicate source: {source.summary} is already configured at {first.location}",
                    location=source.location,
                )
            )
    return problems
