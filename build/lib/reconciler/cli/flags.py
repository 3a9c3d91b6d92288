"""Flags parsed the way Go's `flag` package (and so Consul-Terraform-Sync's CLI) does.

`-name=value`, `-name value` and `--name` all work; a boolean flag alone means true and
takes its value only after `=` (`-ssl-verify=false`). Parsing stops at the first argument
that is not a flag, or after `--`: flags after the task name are not flags, which is why
CTS tells users to put every flag before it. The flags a user set are remembered, so that
an explicit flag can win over the environment while a default does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# Go's strconv.ParseBool.
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


class FlagError(Exception):
    """A parse error, worded as Go's flag package words it."""


class HelpRequested(Exception):
    """-h or -help was given."""


def parse_bool(text: str) -> bool | None:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


@dataclass
class Flag:
    name: str
    kind: type  # str, bool or int
    default: str | bool | int
    usage: str
    metavar: str = ""


@dataclass
class FlagSet:
    flags: dict[str, Flag] = field(default_factory=dict)
    values: dict[str, str | bool | int] = field(default_factory=dict)
    given: set[str] = field(default_factory=set)

    def add(self, name: str, kind: type, default: str | bool | int, usage: str) -> None:
        self.flags[name] = Flag(name, kind, default, usage)
        self.values[name] = default

    def string(self, name: str) -> str:
        value = self.values[name]
        assert isinstance(value, str)
        return value

    def boolean(self, name: str) -> bool:
        value = self.values[name]
        assert isinstance(value, bool)
        return value

    def integer(self, name: str) -> int:
        value = self.values[name]
        assert isinstance(value, int) and not isinstance(value, bool)
        return value

    def parse(self, args: Sequence[str]) -> list[str]:
        """Set the flags from `args`; the positional arguments that follow them."""
        rest = list(args)
        while rest:
            arg = rest[0]
            if len(arg) < 2 or not arg.startswith("-"):
                break
            rest.pop(0)
            if arg == "--":
                break
            name = arg[2:] if arg.startswith("--") else arg[1:]
            if not name or name.startswith(("-", "=")):
                raise FlagError(f"bad flag syntax: {arg}")
            name, has_value, value = name.partition("=")
            flag = self.flags.get(name)
            if flag is None:
                if name in ("h", "help"):
                    raise HelpRequested
                raise FlagError(f"flag provided but not defined: -{name}")
            if flag.kind is bool:
                self._set(flag, value if has_value else "true")
                continue
            if not has_value:
                if not rest:
                    raise FlagError(f"flag needs an argument: -{name}")
                value = rest.pop(0)
            self._set(flag, value)
        return rest

    def _set(self, flag: Flag, text: str) -> None:
        value: str | bool | int
        if flag.kind is bool:
            parsed = parse_bool(text)
            if parsed is None:
                raise FlagError(f'invalid boolean value "{text}" for -{flag.name}: parse error')
            value = parsed
        elif flag.kind is int:
            try:
                value = int(text, 0)
            except ValueError:
                raise FlagError(
                    f'invalid value "{text}" for flag -{flag.name}: parse error'
                ) from None
        else:
            value = text
        self.values[flag.name] = value
        self.given.add(flag.name)

    def help_lines(self) -> list[str]:
        """The options as CTS's help lists them: `-name [Default: x]`, then the usage."""
        out = []
        for flag in sorted(self.flags.values(), key=lambda f: f.name):
            default = flag.default
            if isinstance(default, bool):
                default = "true" if default else "false"
            shown = f" [Default: {default}]" if default != "" else ""
            out.append(f"  -{flag.name}{shown}")
            out.extend(f"        {line}" for line in flag.usage.splitlines())
        return out
