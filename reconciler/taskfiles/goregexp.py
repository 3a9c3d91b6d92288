"""Regular expressions as CTS runs them: Go's regexp package is RE2, so a `regexp` in a
condition or module_input is compiled and matched here with RE2 too (google-re2). The
patterns CTS accepts are accepted and mean the same, the ones it refuses (look-arounds,
back-references) are refused, and matching takes time linear in the text: a service name
chosen by whoever can register services in Consul cannot stall the event loop, as it
could with Python's backtracking `re` (`^([a-z0-9]+-?)+$` against 40 characters and a `!`
would run for hours)."""

from __future__ import annotations

import re
from functools import lru_cache

import re2

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the error is raised, with its reason; not also on stderr


class RegexpError(ValueError):
    """A pattern RE2 (and so Go) refuses; the message says why."""


class Regexp:
    """A compiled pattern; `search` is Go's MatchString (a match anywhere in the text)."""

    __slots__ = ("_compiled", "pattern")

    def __init__(self, pattern: str) -> None:
        depth, repeat = _shape(pattern)
        if depth > MAX_NESTING:
            raise RegexpError("expression nests too deeply")
        if repeat > MAX_REPEAT:
            raise RegexpError(f"invalid repeat count: {{{repeat}}} (at most {MAX_REPEAT})")
        try:
            self._compiled = re2.compile(pattern, _OPTIONS)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else "invalid"
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", errors="replace")
            raise RegexpError(str(reason)) from None
        except (TypeError, OverflowError) as exc:
            raise RegexpError(str(exc)) from None
        self.pattern = pattern

    def search(self, text: str) -> bool:
        return self._compiled.search(text) is not None

    def __repr__(self) -> str:
        return f"Regexp({self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Regexp) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(self.pattern)


# Go's regexp/syntax refuses deeper nesting (maxHeight) and larger counts in {n,m}; RE2
# takes the first, and a count past 2^31 wraps around in its parser.
MAX_NESTING = 1000
MAX_REPEAT = 1000
_COUNT = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def _shape(pattern: str) -> tuple[int, int]:
    """How deep the groups nest and the largest repeat count (escapes and character
    classes skipped)."""
    depth = deepest = repeat = 0
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            in_class = ch != "]"
        elif ch == "[":
            in_class = True
            if pattern.startswith("]", i + 1) or pattern.startswith("^]", i + 1):
                i += 2 if pattern[i + 1] == "]" else 3  # a leading ] is a literal
                continue
        elif ch == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch == ")":
            depth = max(0, depth - 1)
        elif ch == "{" and (m := _COUNT.match(pattern, i)):
            repeat = max(repeat, *(int(n) for n in m.groups() if n))
        i += 1
    return deepest, repeat


@lru_cache(maxsize=1024)
def compile_regexp(pattern: str) -> Regexp:
    """The pattern compiled (cached: the same few patterns are matched over and over).
    Raises RegexpError."""
    return Regexp(pattern)
