"""`reconciler status [<task name>]`: the tasks' status (GET /v1/status/tasks) as a table,
with what is wrong listed under it; -json prints the API's answer as it is."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from reconciler.cli.exits import EXIT_ERROR, EXIT_MISSING_FLAGS, EXIT_OK
from reconciler.cli.meta import FAILED, Command, invocation, request
from reconciler.cli.table import table
from reconciler.cli.ui import Ui

STATUS = Command(
    "status",
    "[options] [<task name>]",
    "Shows the status of the tasks.",
    "Status shows each task's status (from its last runs), whether it is enabled or\n"
    "running, and the file that defines it; problems of a task's file or workspace are\n"
    "listed under the table. -json prints the API's answer (GET /v1/status/tasks) as it is.",
)
STATUSES = ("successful", "errored", "critical", "unknown")


def _source(status: Mapping[str, Any]) -> str:
    source = status.get("source") or {}
    file, line = source.get("file", ""), source.get("line", 0)
    return f"{file}:{line}" if file and line else str(file or "-")


def _flag(value: object) -> str:
    return "true" if value else "false"


def status_lines(statuses: Mapping[str, Mapping[str, Any]]) -> list[str]:
    if not statuses:
        return ["No tasks."]
    rows = [
        [
            name,
            str(s.get("status", "")),
            _flag(s.get("enabled")),
            "deleting" if s.get("deleting") else _flag(s.get("active")),
            _source(s),
        ]
        for name, s in sorted(statuses.items())
    ]
    lines = table(["TASK", "STATUS", "ENABLED", "RUNNING", "SOURCE"], rows)
    counts = {k: 0 for k in STATUSES}
    disabled = 0
    problems: list[str] = []
    notes: list[str] = []  # how a task runs differently from its file
    for name, s in sorted(statuses.items()):
        counts[str(s.get("status"))] = counts.get(str(s.get("status")), 0) + 1
        disabled += not s.get("enabled")
        problems += [f"task '{name}': file: {e}" for e in s.get("file_errors") or []]
        if s.get("init_error"):
            problems.append(f"task '{name}': {s['init_error']}")
        override = s.get("override")
        if isinstance(override, dict) and override.get("reason"):
            notes.append(f"task '{name}': {override['reason']}")
    total = len(statuses)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
    lines += ["", f"{total} task{'s' if total != 1 else ''}: {summary}; {disabled} disabled"]
    if notes:
        lines += ["", "Differs from its file:", *(f"  {n}" for n in notes)]
    if problems:
        lines += ["", "Problems:", *(f"  {p}" for p in problems)]
    return lines


def status(args: Sequence[str], ui: Ui, environ: Mapping[str, str]) -> int:
    inv = invocation(STATUS, ui, environ)
    inv.flags.add("json", bool, False, "Print the API's JSON answer instead of a table")
    rest = inv.parse(args)
    if isinstance(rest, int):
        return rest
    if len(rest) > 1:
        ui.error(
            "Error: this command takes at most one argument: [options] [<task name>]",
            f"{len(rest)} arguments were passed to the command: '{', '.join(rest)}'",
            "All flags are required to appear before positional arguments if set",
            STATUS.more_help(),
        )
        return EXIT_MISSING_FLAGS
    path = "/v1/status/tasks" + (f"/{quote(rest[0], safe='')}" if rest else "")
    client = inv.client("Error: unable to create client")
    if client is None:
        return EXIT_ERROR
    with client:
        what = f"the status of '{rest[0]}'" if rest else "the status of the tasks"
        answer = request(ui, client, f"Error: unable to get {what}", "GET", path)
        if answer is FAILED:
            return EXIT_ERROR
    if inv.flags.boolean("json"):
        ui.raw(json.dumps(answer, indent=2))
        return EXIT_OK
    for line in status_lines(answer if isinstance(answer, dict) else {}):
        ui.raw(line)
    return EXIT_OK
