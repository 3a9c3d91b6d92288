"""The template syntax CTS allows in `terraform_provider` blocks, parsed at load.

CTS renders provider values with hcat (Go text/template). The forms its documentation
and users write are supported exactly:

    {{ env "NAME" }}                                  an environment variable
    {{ key "path/in/consul" }}                        a Consul KV value
    {{ with secret "path" }}{{ .Data.data.field }}{{ end }}   a Vault secret's field

with `{{-` / `-}}` trimming whitespace as Go does, text around the actions, several
field references inside one `with`, and `env`/`key` inside it. Anything else (another
function, a pipeline, a variable, `if`/`range`) is refused at load with its place, never
passed through as text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

OPEN, CLOSE = "{{", "}}"


class TemplateSyntaxError(ValueError):
    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Env:
    name: str


@dataclass(frozen=True)
class Key:
    path: str


@dataclass(frozen=True)
class Field:
    """`.Data.a.b` inside a `with secret`: the path below the secret's data (a, b)."""

    path: tuple[str, ...]


@dataclass(frozen=True)
class WithSecret:
    path: str
    body: tuple[Node, ...]


Node = Text | Env | Key | Field | WithSecret

# A Go string literal ("..." with escapes) or a raw one (`...`).
_STRING = r'"(?:[^"\\\n]|\\.)*"|`[^`]*`'
_ACTION = re.compile(
    r"\s*(?:(?P<fn>env|key)\s+(?P<arg>" + _STRING + r")"
    r"|with\s+secret\s+(?P<secret>" + _STRING + r")(?P<extra>\s+" + _STRING + r")*"
    r"|(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_-]*)+)"
    r"|(?P<end>end))\s*",
    re.DOTALL,
)


def has_template(value: str) -> bool:
    return OPEN in value


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a plain value (nested objects and lists included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings_in(v)


def _no_dot_segments(path: str, fn: str, at: int) -> None:
    """A path is sent in a URL (/v1/kv/<path>, /v1/<path>), where "." and ".." segments
    would be resolved into another endpoint, read with the daemon's token."""
    if any(part in (".", "..") for part in path.split("?")[0].split("/")):
        raise TemplateSyntaxError(f'{fn} "{path}": "." and ".." segments are not allowed', at)


def _unquote(literal: str) -> str:
    if literal.startswith("`"):
        return literal[1:-1]
    # Go's escapes are a superset of what configurations use: \" \\ \n \t.
    return re.sub(
        r"\\(.)",
        lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]),
        literal[1:-1],
    )


def parse(source: str) -> tuple[Node, ...]:
    """The template `source` as nodes; raises TemplateSyntaxError at the first problem."""
    stack: list[tuple[str, int, list[Node]]] = []  # open `with`s: path, offset, body
    out: list[Node] = []
    pos = 0
    trim_next = False
    while True:
        start = source.find(OPEN, pos)
        text = source[pos:] if start < 0 else source[pos:start]
        if trim_next:
            text = text.lstrip()
        if (
            start >= 0
            and source.startswith("{{-", start)
            and source[start + 3 : start + 4]
            in (
                " ",
                "\t",
                "\n",
                "\r",
            )
        ):
            text = text.rstrip()
        if text:
            (stack[-1][2] if stack else out).append(Text(text))
        if start < 0:
            break
        end = source.find(CLOSE, start + 2)
        if end < 0:
            raise TemplateSyntaxError('unclosed action: "{{" without "}}"', start)
        inner = source[start + 2 : end]
        trim_next = False
        if inner.startswith("-") and inner[1:2].isspace():
            inner = inner[1:]
        if inner.endswith("-") and inner[-2:-1].isspace():
            inner = inner[:-1]
            trim_next = True
        pos = end + 2
        m = _ACTION.fullmatch(inner)
        if m is None:
            raise TemplateSyntaxError(
                f"unsupported template action {{{{{inner.strip()}}}}}: only "
                '{{ env "NAME" }}, {{ key "path" }} and {{ with secret "path" }}'
                "{{ .Data.field }}{{ end }} are rendered",
                start,
            )
        target = stack[-1][2] if stack else out
        if m["fn"] == "env":
            target.append(Env(_unquote(m["arg"])))
        elif m["fn"] == "key":
            key = _unquote(m["arg"])
            _no_dot_segments(key, "key", start)
            target.append(Key(key))
        elif m["secret"] is not None:
            _no_dot_segments(_unquote(m["secret"]), "secret", start)
            if m["extra"]:
                raise TemplateSyntaxError(
                    "a secret with parameters (a Vault write) is not supported: only reads",
                    start,
                )
            stack.append((_unquote(m["secret"]), start, []))
        elif m["field"] is not None:
            if not stack:
                raise TemplateSyntaxError(
                    f"{m['field']} outside a {{{{ with secret ... }}}} block", start
                )
            fields = tuple(m["field"].split(".")[1:])
            if fields[0] != "Data" or len(fields) < 2:
                raise TemplateSyntaxError(
                    f"{m['field']}: only fields of the secret's data (.Data.<field>) are rendered",
                    start,
                )
            target.append(Field(fields[1:]))
        else:  # end
            if not stack:
                raise TemplateSyntaxError("{{ end }} without an open {{ with }}", start)
            secret, _, body = stack.pop()
            (stack[-1][2] if stack else out).append(WithSecret(secret, tuple(body)))
    if stack:
        raise TemplateSyntaxError("{{ with secret ... }} without its {{ end }}", stack[-1][1])
    return tuple(out)


def secrets_used(nodes: tuple[Node, ...]) -> bool:
    return any(isinstance(n, WithSecret) for n in nodes)
