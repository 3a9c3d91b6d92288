"""Command line: `reconciler start|validate -config-file=F [-config-dir=D]...`, and the
client commands `reconciler task ...` and `reconciler status` for a running daemon.

`start` runs the daemon; `start -once` initialises every task and applies every enabled
one once, one at a time, then exits; `start -inspect` (or `-inspect-task NAME`, repeatable)
plans and prints, applying nothing.

`validate` checks the configuration and the task files of every source (a git source in a
temporary clone, at its configured branch, ref or commit and path).

`task create|enable|disable|delete|list` and `status` talk to a running daemon over its API
(reconciler.cli.task, reconciler.cli.status); they read no configuration file.

Flags use Consul-Terraform-Sync's single-dash spelling (`-config-file`); the double-dash
spelling works too. Exit codes follow CTS: 0 ok, 11 error (a task failed), 12 interrupt,
13 missing flags, 14 flag parse error, 15 configuration error, 16 Terraform unavailable.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from reconciler import __version__

if TYPE_CHECKING:
    from reconciler.cli.migration import PlannedTask
    from reconciler.settings.model import Settings, SourceSettings
    from reconciler.sources.base import SourceUpdate

from reconciler.cli.exits import (
    EXIT_CONFIG,
    EXIT_DRIVER,
    EXIT_ERROR,
    EXIT_FLAG_PARSE,
    EXIT_INTERRUPT,
    EXIT_MISSING_FLAGS,
    EXIT_OK,
)

__all__ = [
    "EXIT_CONFIG",
    "EXIT_DRIVER",
    "EXIT_ERROR",
    "EXIT_FLAG_PARSE",
    "EXIT_INTERRUPT",
    "EXIT_MISSING_FLAGS",
    "EXIT_OK",
    "build_parser",
    "main",
    "start",
    "validate",
]

# Commands that talk to a running daemon; their flags are parsed as CTS parses them.
CLIENT_COMMANDS = ("task", "status")

log = logging.getLogger("reconciler")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_FLAG_PARSE)


class _OrderedPaths(argparse.Action):
    """-config-file and -config-dir share one ordered list, as in CTS."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        paths = list(getattr(namespace, "config_paths", None) or [])
        paths.append(values)
        namespace.config_paths = paths


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-config-file",
        "--config-file",
        action=_OrderedPaths,
        metavar="FILE",
        help="a configuration file (repeatable)",
    )
    p.add_argument(
        "-config-dir",
        "--config-dir",
        action=_OrderedPaths,
        metavar="DIR",
        help="a directory of *.hcl / *.json configuration files (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reconciler", description="GitOps reconciler for CTS-style tasks.")
    parser.add_argument("-v", "-version", "--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    start = sub.add_parser("start", help="run the daemon")
    _add_config_flags(start)
    start.add_argument(
        "-once",
        "--once",
        action="store_true",
        help="init and apply every enabled task once, one at a time, then exit",
    )
    start.add_argument(
        "-inspect",
        "--inspect",
        action="store_true",
        help="plan every task and print the plans; apply nothing",
    )
    start.add_argument(
        "-inspect-task",
        "--inspect-task",
        action="append",
        default=[],
        metavar="NAME",
        help="plan only this task (repeatable); implies -inspect",
    )
    validate = sub.add_parser("validate", help="check the configuration and every task file")
    _add_config_flags(validate)
    # Listed for the help only: main() hands these to their own parsers.
    sub.add_parser(
        "task",
        help="create, enable, disable, delete or list tasks of a running daemon",
        add_help=False,
    )
    sub.add_parser("status", help="show the status of a running daemon's tasks", add_help=False)
    return parser


def run_client(args: Sequence[str]) -> int:
    import os

    from reconciler.cli.status import status
    from reconciler.cli.task import run_task
    from reconciler.cli.ui import Ui

    ui = Ui()
    command = run_task if args[0] == "task" else status
    try:
        return command(args[1:], ui, os.environ)
    except KeyboardInterrupt:
        ui.warn("interrupted")
        return EXIT_INTERRUPT


_VERSION_FLAGS = ("-v", "-version", "--version")
_HELP_FLAGS = ("-h", "-help", "--help")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in CLIENT_COMMANDS:
        return run_client(argv)
    from reconciler.daemon.logs import setup_logging

    if argv and argv[0].startswith("-") and argv[0] not in (*_VERSION_FLAGS, *_HELP_FLAGS):
        # As CTS (command/cli.go): flags without a sub-command are a deprecated `start`,
        # the form CTS's container image and many unit files still use.
        print(
            "Warning: Usage of reconciler without a subcommand is deprecated (as in "
            "Consul-Terraform-Sync). Use `reconciler start` instead.",
            file=sys.stderr,
        )
        argv = ["start", *argv]
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help(sys.stderr)
        return EXIT_MISSING_FLAGS
    paths: list[str] = getattr(args, "config_paths", None) or []
    if not paths:
        print(
            "error: no config file provided: use -config-file=FILE or -config-dir=DIR",
            file=sys.stderr,
        )
        return EXIT_MISSING_FLAGS
    setup_logging("INFO")
    if args.command == "validate":
        return validate(paths)
    if args.once and (args.inspect or args.inspect_task):
        print("error: -once and -inspect cannot be used together", file=sys.stderr)
        return EXIT_FLAG_PARSE
    if args.once:
        return start(paths, mode="once")
    if args.inspect or args.inspect_task:
        return start(paths, mode="inspect", tasks=args.inspect_task)
    return start(paths)


def start(paths: list[str], *, mode: str = "daemon", tasks: Sequence[str] = ()) -> int:
    import asyncio

    from reconciler._core.errors import ConfigError
    from reconciler.daemon.logs import setup_logging
    from reconciler.daemon.runtime import Daemon, run_daemon, run_inspect, run_once
    from reconciler.runner.driver import RunError
    from reconciler.settings import load_settings

    try:
        settings = load_settings(paths)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    setup_logging(settings.log_level, settings.log_format)
    try:
        if mode == "daemon":
            return run_daemon(paths)
        for warning in settings.warnings:  # run_daemon logs them in the daemon mode
            log.warning("%s", warning)
        settings.working_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if mode == "once":
            daemon = Daemon(settings, paths, workers=1, watch=False)
            return EXIT_OK if asyncio.run(run_once(daemon)) else EXIT_ERROR
        daemon = Daemon(settings, paths, eager_init=False, watch=False)
        ok = asyncio.run(run_inspect(daemon, tasks, print))
        return EXIT_OK if ok else EXIT_ERROR
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RunError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return EXIT_DRIVER
    except KeyboardInterrupt:
        return EXIT_INTERRUPT


def validate(paths: list[str]) -> int:
    """Print every problem of the configuration and of every task file of every source.

    A git source is fetched into a temporary clone (removed afterwards) and its task files
    are checked at the configured branch, ref or commit and path. Exit 15 when anything is
    invalid; otherwise 11 when a source could not be read, so its files were not checked
    (an unreachable remote, for instance); 0 when everything was checked and is valid.
    """
    import asyncio
    import contextlib
    import tempfile

    from reconciler._core.errors import ConfigError
    from reconciler.cli.migration import PlannedTask
    from reconciler.settings import load_settings

    try:
        settings = load_settings(paths)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG
    planned = [
        PlannedTask(t.spec, f"{t.file}:{t.line}", Path(t.file).absolute().parent)
        for t in settings.tasks
    ]
    invalid = unchecked = False
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    with contextlib.ExitStack() as scratch_dirs:

        def scratch() -> Path:
            made = tempfile.TemporaryDirectory(prefix="reconciler-validate-")
            return Path(scratch_dirs.enter_context(made))

        for src in settings.sources:
            result = _validate_source(src, scratch)
            if result is None:
                unchecked = True
                continue
            tasks, bad = result
            planned.extend(tasks)
            invalid = invalid or bad
        implicit = _implicit_tasks(settings, scratch)
        planned.extend(implicit)
        if invalid:
            return EXIT_CONFIG
        abandons = asyncio.run(_migration_report(settings, planned))
    if unchecked:
        print(
            "error: some task sources could not be read; their task files were not checked",
            file=sys.stderr,
        )
        return EXIT_ERROR
    if abandons:
        print(
            "error: state that CTS left would not be used by this daemon (see above): its "
            "first start would build those tasks' resources again",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(f"configuration is valid: {len(planned)} tasks")
    return EXIT_OK


def _implicit_tasks(settings: Settings, scratch: Callable[[], Path]) -> list[PlannedTask]:
    """The tasks of the implicit directory (no source block), when it exists."""
    from reconciler.daemon.core import implicit_task_directory
    from reconciler.settings.model import DirectorySourceSettings

    directory = implicit_task_directory(settings)
    if settings.sources or not directory.is_dir():
        return []
    result = _validate_source(DirectorySourceSettings(directory), scratch)
    return result[0] if result is not None else []


async def _migration_report(settings: Settings, planned: Sequence[PlannedTask]) -> bool:
    """Print what the first start does with each task; True when CTS left state that
    this daemon would not use."""
    from reconciler.cli.migration import report_task, state_policy
    from reconciler.consul.client import ConsulClient
    from reconciler.consul.connection import ConsulConfigError, client_config
    from reconciler.consul.kv import ConsulKV
    from reconciler.runner.workspace import Workspaces

    workspaces = Workspaces(
        settings.working_dir,
        settings.driver,
        settings.terraform_providers,
        policy=state_policy(settings),
    )
    client = None
    try:
        client = ConsulClient(client_config(settings.consul))
    except ConsulConfigError as exc:
        print(f"warning: Consul cannot be asked about state: {exc}", file=sys.stderr)
    kv = ConsulKV(client, timeout=5.0) if client is not None else None
    abandons = False
    try:
        for task in sorted(planned, key=lambda t: t.spec.name):
            report = await report_task(settings, workspaces, task, kv)
            print(f"task {report.name} ({report.where}):")
            for line in report.lines:
                print(f"  {line}")
            abandons = abandons or report.abandons_state
    finally:
        if client is not None:
            await client.aclose()
    return abandons


def _validate_source(
    src: SourceSettings, scratch: Callable[[], Path]
) -> tuple[list[PlannedTask], bool] | None:
    """Read one source on its own and print the problems of its files: (tasks defined,
    any problem), or None when it could not be read, so its files were not checked."""
    from reconciler.sources.base import SourceUnread

    checked = src.check(scratch)
    if isinstance(checked, SourceUnread):
        print(checked.note, file=sys.stderr)
        return ([], True) if checked.invalid else None
    for note in checked.notes:
        print(note, file=sys.stderr)
    return _check_files(checked.update, checked.source.display_path, checked.source.absolute_path)


def _check_files(
    update: SourceUpdate, display: Callable[[str], str], absolute: Callable[[str], Path]
) -> tuple[list[PlannedTask], bool]:
    """Print the problems of every file in `update`; (tasks defined, any problem)."""
    from reconciler.cli.migration import PlannedTask
    from reconciler.taskfiles.load import load_task_file

    tasks: list[PlannedTask] = []
    failed = False
    for rel, reason in sorted(update.unreadable.items()):
        print(f"{display(rel)}: cannot read file: {reason}", file=sys.stderr)
        failed = True
    for rel, content in sorted(update.changed.items()):
        if content is None:
            continue
        loaded = load_task_file(content.data, display(rel))
        for problem in loaded.problems:
            print(f"{problem}", file=sys.stderr)
        for warning in loaded.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        failed = failed or bool(loaded.problems)
        base = absolute(rel).parent
        tasks.extend(PlannedTask(t.spec, f"{display(rel)}:{t.line}", base) for t in loaded.tasks)
    return tasks, failed


if __name__ == "__main__":
    raise SystemExit(main())
