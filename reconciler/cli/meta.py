"""What every client command shares (CTS's command/meta.go): the connection flags, the
help text, the flag and argument checks with CTS's messages and exit codes, and making the
API client."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.cli.client import ApiClient, ClientError, add_client_flags, resolve_settings
from reconciler.cli.exits import EXIT_FLAG_PARSE, EXIT_MISSING_FLAGS, EXIT_OK
from reconciler.cli.flags import FlagError, FlagSet, HelpRequested
from reconciler.cli.progress import waiting
from reconciler.cli.ui import Ui

PROG = "reconciler"


@dataclass(frozen=True)
class Command:
    name: str  # "task enable"
    usage: str  # what follows the name: "[options] <task name>"
    synopsis: str
    description: str

    def flags(self) -> FlagSet:
        flags = FlagSet()
        add_client_flags(flags)
        return flags

    def help(self, flags: FlagSet) -> str:
        return "\n".join(
            [
                f"Usage: {PROG} {self.name} [-help] {self.usage}",
                "",
                *(f"  {line}" for line in self.description.splitlines()),
                "",
                "Options:",
                "",
                *flags.help_lines(),
            ]
        )

    def more_help(self) -> str:
        return f"For additional help try '{PROG} {self.name} --help'"


@dataclass
class Invocation:
    """One run of a command: where it prints, its environment, its parsed flags."""

    command: Command
    ui: Ui
    environ: Mapping[str, str]
    flags: FlagSet

    def parse(self, args: Sequence[str]) -> list[str] | int:
        """The positional arguments, or the exit code when parsing ended the command."""
        try:
            return self.flags.parse(args)
        except HelpRequested:
            self.ui.raw(self.command.help(self.flags))
            return EXIT_OK
        except FlagError as exc:
            self.ui.warn(str(exc))
            self.ui.error(f"Error: unsupported arguments in flags '{', '.join(args)}'")
            self.ui.warn(
                "Please see --help information below for supported options:\n\n"
                + self.command.help(self.flags)
            )
            return EXIT_FLAG_PARSE

    def one_arg(self, args: list[str]) -> str | int:
        """The task name, or CTS's error (exit 13) unless there is exactly one argument."""
        if len(args) == 1:
            return args[0]
        details = []
        if not args:
            details.append("No arguments were passed to the command")
        else:
            details.append(f"{len(args)} arguments were passed to the command: '{', '.join(args)}'")
            details.append("All flags are required to appear before positional arguments if set")
        details.append(self.command.more_help())
        self.ui.error("Error: this command requires one argument: [options] <task name>", *details)
        return EXIT_MISSING_FLAGS

    def no_args(self, args: list[str], expected: str) -> int | None:
        if not args:
            return None
        self.ui.error(
            "Error: this command takes no arguments",
            f"{len(args)} arguments were passed to the command: '{', '.join(args)}'",
            f"All flags are required to appear before positional arguments if set; {expected}",
            self.command.more_help(),
        )
        return EXIT_MISSING_FLAGS

    def client(self, headline: str) -> ApiClient | None:
        """The API client, or None after printing why it cannot be made."""
        try:
            settings, warning = resolve_settings(self.flags, self.environ)
            if warning:
                self.ui.warn(warning)
            return ApiClient(settings)
        except ClientError as exc:
            self.ui.error(headline, exc.message)
            return None


def invocation(command: Command, ui: Ui, environ: Mapping[str, str]) -> Invocation:
    return Invocation(command, ui, environ, command.flags())


# What `request` answers when the call failed (its error is printed already).
FAILED: Any = object()


def request(
    ui: Ui,
    client: ApiClient,
    error: str,
    method: str,
    path: str,
    *,
    progress: str | None = None,
    **options: Any,
) -> Any:
    """`client.request(method, path, **options)`; on failure, print `error` with the
    reason and answer FAILED. With `progress`, a terminal shows it while the call runs."""
    try:
        with waiting(ui.err, progress) if progress else contextlib.nullcontext():
            return client.request(method, path, **options)
    except ClientError as exc:
        ui.error(error, exc.message)
        return FAILED
