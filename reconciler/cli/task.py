"""`reconciler task create|update|enable|disable|delete|list`: CTS's task commands over
the API (`update` is ours: CTS cannot change a task).

The steps, prompts and messages are CTS's (command/task_*.go): create and enable show the
plan of a `run=inspect` request and apply only after the answer `yes` (or with
-auto-approve); disable asks nothing; delete asks first and is only marked by the daemon
while a run is in progress. `list` is ours: the tasks as a table, or the API's JSON.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

from reconciler.cli.client import ApiClient
from reconciler.cli.exits import EXIT_ERROR, EXIT_FLAG_PARSE, EXIT_MISSING_FLAGS, EXIT_OK
from reconciler.cli.meta import FAILED, PROG, Command, Invocation, invocation, request
from reconciler.cli.table import table
from reconciler.cli.taskfile import TaskFileError, read_task_file
from reconciler.cli.ui import Ui
from reconciler.taskfiles.conditions import CONDITION_API_KINDS
from reconciler.taskfiles.model import TaskSpec

ERR_REQUEST = "Error: unable to create request"
ERR_CLIENT = "Error: unable to create client"
GENERATING = "Generating plan that reconciler will use Terraform to execute"
AUTO_APPROVE = "Skip interactive approval of inspect plan"

CREATE = Command(
    "task create",
    "[options] -task-file=<task config>",
    "Creates a new task.",
    "Task Create is used to create a new task. It is not to be used for updating a task;\n"
    "it will not create a task if the task name already exists. The file's relative\n"
    "module path and variable_files are read against the file's own directory.",
)
UPDATE = Command(
    "task update",
    "[options] -task-file=<task config>",
    "Updates an existing task to the definition in a file.",
    "Task Update changes the task named in the file to the file's definition (its\n"
    "description, module, version, variables, condition, module_input, providers and\n"
    "buffer_period; a field the file leaves out is removed from the task; `enabled` is\n"
    "changed only when the file sets it). The daemon writes the change into the task's\n"
    "own file, changing only what differs. Before the update, the CLI presents the plan\n"
    "of the task as it would be and asks for approval; the update then runs the task.",
)
ENABLE = Command(
    "task enable",
    "[options] <task name>",
    "Enables existing tasks to run.",
    "Task Enable is used to enable existing tasks. Once enabled, a task will run and make\n"
    "changes to your infrastructure resources. Before enabling, the CLI will present the\n"
    "operator with an inspect plan and ask for approval.",
)
DISABLE = Command(
    "task disable",
    "[options] <task name>",
    "Disables existing tasks from running.",
    "Task Disable is used to disable existing tasks. Once disabled, a task will no longer\n"
    "run and make changes to your infrastructure resources.",
)
DELETE = Command(
    "task delete",
    "[options] <task name>",
    "Deletes an existing task.",
    "Task Delete is used to delete an existing task. If the task is not running, then it\n"
    "is deleted immediately. Otherwise, it will be deleted once the task is complete.\n"
    "With -destroy, what the task built is destroyed first (the destroy plan is shown and\n"
    "approved), then the task, its workspace and its state are deleted; a destroy that\n"
    "fails deletes nothing.",
)
LIST = Command(
    "task list",
    "[options]",
    "Lists the tasks.",
    "Task List shows the daemon's tasks as a table; -json prints the API's answer\n"
    "(GET /v1/tasks) as it is, for scripts.",
)


def _task_path(name: str) -> str:
    return f"/v1/tasks/{quote(name, safe='')}"


def _plan(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"


def _with_task_file(
    command: Command, args: Sequence[str], ui: Ui, environ: Mapping[str, str]
) -> tuple[Invocation, TaskSpec, dict[str, Any]] | int:
    """The flags of a command that reads a task file (-task-file, -auto-approve) and the
    file read: the task and its API body; or the exit code."""
    inv = invocation(command, ui, environ)
    inv.flags.add("auto-approve", bool, False, AUTO_APPROVE)
    inv.flags.add(
        "task-file", str, "", "[Required] A file containing the hcl or json definition of a task"
    )
    rest = inv.parse(args)
    if isinstance(rest, int):
        return rest
    wrong = inv.no_args(rest, "use -task-file=<file>")
    if wrong is not None:
        return wrong
    task_file = inv.flags.string("task-file")
    if not task_file:
        ui.error(ERR_REQUEST, "no task file provided", command.more_help())
        return EXIT_MISSING_FLAGS
    try:
        spec, body = read_task_file(task_file)
    except TaskFileError as exc:
        ui.error(ERR_REQUEST, *exc.lines)
        return EXIT_ERROR
    return inv, spec, body


def create(args: Sequence[str], ui: Ui, environ: Mapping[str, str]) -> int:
    parsed = _with_task_file(CREATE, args, ui, environ)
    if isinstance(parsed, int):
        return parsed
    inv, spec, body = parsed
    name = spec.name
    client = inv.client(ERR_CLIENT)
    if client is None:
        return EXIT_ERROR
    with client:
        ui.info(f"Inspecting changes to resource if creating task '{name}'...")
        ui.output("")
        ui.output(GENERATING)
        ui.output("")
        inspect = request(
            ui,
            client,
            f"Error: unable to generate plan for '{name}'",
            "POST",
            "/v1/tasks",
            progress=f"Planning task '{name}'",
            params={"run": "inspect"},
            body=body,
        )
        if inspect is FAILED:
            return EXIT_ERROR
        if not isinstance(inspect, dict) or not isinstance(inspect.get("run"), dict):
            ui.error(f"Error: unable to retrieve a plan for '{name}'")
            return EXIT_ERROR
        run = inspect["run"]
        ui.output(f"Request ID: {inspect.get('request_id', '')}")
        ui.output("Request Payload:")
        ui.output(json.dumps(body, indent=2).replace("\n", "\n    "))
        ui.output("")
        ui.output(f"Plan: \n{_plan(str(run.get('plan', '')))}")
        if not inv.flags.boolean("auto-approve"):
            code = ui.approve_create(name)
            if code is not None:
                return code
        ui.info(f"Creating and running task '{name}'...")
        ui.output("The task creation request has been sent to the reconciler daemon.")
        ui.output(
            "Please be patient as it may take some time to see a confirmation that this "
            "task has completed."
        )
        ui.output("Warning: Terminating this process will not stop task creation.")
        ui.output("")
        created = request(
            ui,
            client,
            f"Error: unable to create '{name}'",
            "POST",
            "/v1/tasks",
            progress=f"Creating and running task '{name}'",
            params={"run": "now"},
            body=body,
            expect=(201,),
        )
        if created is FAILED:
            return EXIT_ERROR
        created = created if isinstance(created, dict) else {}
        ui.info(f"Task '{(created.get('task') or {}).get('name', name)}' created")
        ui.output(f"Request ID: '{created.get('request_id', '')}'")
        return EXIT_OK


# The task fields an update sends; those the file leaves out are sent as null (removed).
_UPDATED = ("description", "module", "version", "providers", "variables", "condition",
            "module_input", "buffer_period")  # fmt: skip


def update(args: Sequence[str], ui: Ui, environ: Mapping[str, str]) -> int:
    parsed = _with_task_file(UPDATE, args, ui, environ)
    if isinstance(parsed, int):
        return parsed
    inv, spec, body = parsed
    name = spec.name
    task = body.get("task")
    sent: dict[str, Any] = task if isinstance(task, dict) else {}
    patch: dict[str, Any] = {key: sent.get(key) for key in _UPDATED}
    if "enabled" in sent:
        patch["enabled"] = sent["enabled"]
    client = inv.client(ERR_CLIENT)
    if client is None:
        return EXIT_ERROR
    path = _task_path(name)
    with client:
        ui.info(f"Inspecting changes to resource if updating task '{name}'...")
        ui.output("")
        ui.output(GENERATING)
        ui.output("")
        answer = request(
            ui,
            client,
            f"Error: unable to generate plan for '{name}'",
            "PATCH",
            path,
            progress=f"Planning task '{name}'",
            params={"run": "inspect"},
            body=patch,
        )
        if answer is FAILED:
            return EXIT_ERROR
        inspect = answer.get("inspect") if isinstance(answer, dict) else None
        if not isinstance(inspect, dict):
            ui.error(f"Error: unable to retrieve a plan for '{name}'")
            return EXIT_ERROR
        ui.output(f"Plan: \n{_plan(str(inspect.get('plan', '')))}")
        if not inv.flags.boolean("auto-approve"):
            code = ui.approve_update(name)
            if code is not None:
                return code
        ui.info(f"Updating and running task '{name}'...")
        ui.output("")
        updated = request(
            ui,
            client,
            f"Error: unable to update '{name}'",
            "PATCH",
            path,
            progress=f"Updating and running task '{name}'",
            params={"run": "now"},
            body=patch,
        )
        if updated is FAILED:
            return EXIT_ERROR
        ui.info(f"Task '{name}' updated")
        return EXIT_OK


def _named(
    command: Command,
    args: Sequence[str],
    ui: Ui,
    environ: Mapping[str, str],
    extra: Callable[[Invocation], None] | None = None,
) -> tuple[Invocation, str] | int:
    inv = invocation(command, ui, environ)
    if extra is not None:
        extra(inv)
    rest = inv.parse(args)
    if isinstance(rest, int):
        return rest
    name = inv.one_arg(rest)
    return name if isinstance(name, int) else (inv, name)


def _auto_approve(inv: Invocation) -> None:
    inv.flags.add("auto-approve", bool, False, AUTO_APPROVE)


def enable(args: Sequence[str], ui: Ui, environ: Mapping[str, str]) -> int:
    parsed = _named(ENABLE, args, ui, environ, _auto_approve)
    if isinstance(parsed, int):
        return parsed
    inv, name = parsed
    ui.info(f"Inspecting changes to resource if enabling '{name}'...")
    ui.output("")
    ui.output(GENERATING)
    ui.output("")
    client = inv.client(f"Error: unable to create client for '{name}'")
    if client is None:
        return EXIT_ERROR
    path = _task_path(name)
    with client:
        answer = request(
            ui,
            client,
            f"Error: unable to generate plan for '{name}'",
            "PATCH",
            path,
            progress=f"Planning task '{name}'",
            params={"run": "inspect"},
            body={"enabled": True},
        )
        if answer is FAILED:
            return EXIT_ERROR
        inspect = answer.get("inspect") if isinstance(answer, dict) else None
        if not isinstance(inspect, dict):
            ui.error(f"Error: unable to retrieve a plan for '{name}'")
            return EXIT_ERROR
        ui.output(_plan(str(inspect.get("plan", ""))))
        if not inspect.get("changes_present"):
            error = f"Error: unable to enable '{name}'"
            if request(ui, client, error, "PATCH", path, body={"enabled": True}) is FAILED:
                return EXIT_ERROR
            ui.info(f"'{name}' enable complete!")
            return EXIT_OK
        if not inv.flags.boolean("auto-approve"):
            code = ui.approve_enable(name)
            if code is not None:
                return code
        ui.info(f"Enabling and running '{name}'...")
        ui.output("")
        enabled = request(
            ui,
            client,
            f"Error: unable to enable and run '{name}'",
            "PATCH",
            path,
            progress=f"Enabling and running '{name}'",
            params={"run": "now"},
            body={"enabled": True},
        )
        if enabled is FAILED:
            return EXIT_ERROR
        ui.info(f"'{name}' enable complete!")
        return EXIT_OK


def disable(args: Sequence[str], ui: Ui, environ: Mapping[str, str]) -> int:
    parsed = _named(DISABLE, args, ui, environ)
    if isinstance(parsed, int):
        return parsed
    inv, name = parsed
    ui.info(f"Waiting to disable '{name}'...")
    ui.output("")
    client = inv.client(f"Error: unable to create client for '{name}'")
    if client is None:
        return EXIT_ERROR
    with client:
        disabled = request(
            ui,
            client,
            f"Error: unable to disable '{name}'",
            "PATCH",
            _task_path(name),
            progress=f"Disabling '{name}'",
            body={"enabled": False},
        )
        if disabled is FAILED:
            return EXIT_ERROR
    ui.info(f"'{name}' disable complete!")
    return EXIT_OK


def delete(args: Sequence[str], ui: Ui, environ: Mapping[str, str]) -> int:
    def flags(inv: Invocation) -> None:
        inv.flags.add("auto-approve", bool, False, "Skip interactive approval of deleting a task")
        inv.flags.add(
            "destroy",
            bool,
            False,
            "Destroy what the task built (terraform destroy) before deleting it, with its "
            "workspace and state; the destroy plan is shown first",
        )

    parsed = _named(DELETE, args, ui, environ, flags)
    if isinstance(parsed, int):
        return parsed
    inv, name = parsed
    client = inv.client(ERR_CLIENT)
    if client is None:
        return EXIT_ERROR
    with client:
        if inv.flags.boolean("destroy"):
            return _destroy(inv, ui, client, name)
        if not inv.flags.boolean("auto-approve"):
            code = ui.approve_delete(name)
            if code is not None:
                return code
        ui.info(f"Marking task '{name}' for deletion...")
        ui.output("")
        error = f"Error: unable to delete '{name}'"
        if request(ui, client, error, "DELETE", _task_path(name), expect=(202,)) is FAILED:
            return EXIT_ERROR
    ui.info(f"Task '{name}' has been marked for deletion and will be deleted when not running.")
    return EXIT_OK


def _destroy(inv: Invocation, ui: Ui, client: ApiClient, name: str) -> int:
    """`task delete -destroy`: the destroy plan, the question, then the destroy."""
    path = _task_path(name)
    ui.info(f"Inspecting what destroying task '{name}' would remove...")
    ui.output("")
    answer = request(
        ui,
        client,
        f"Error: unable to generate the destroy plan for '{name}'",
        "DELETE",
        path,
        progress=f"Planning the destroy of '{name}'",
        params={"destroy": "true", "run": "inspect"},
        expect=(200,),
    )
    if answer is FAILED:
        return EXIT_ERROR
    inspect = answer.get("inspect") if isinstance(answer, dict) else None
    if not isinstance(inspect, dict):
        ui.error(f"Error: unable to retrieve the destroy plan for '{name}'")
        return EXIT_ERROR
    ui.output(f"Plan: \n{_plan(str(inspect.get('plan', '')))}")
    if not inv.flags.boolean("auto-approve"):
        code = ui.approve_destroy(name)
        if code is not None:
            return code
    ui.info(f"Destroying and deleting task '{name}'...")
    ui.output("")
    done = request(
        ui,
        client,
        f"Error: unable to destroy '{name}'",
        "DELETE",
        path,
        progress=f"Destroying task '{name}'",
        params={"destroy": "true"},
        expect=(200,),
    )
    if done is FAILED:
        return EXIT_ERROR
    ui.info(f"Task '{name}' destroyed and deleted.")
    return EXIT_OK


def condition_summary(condition: Mapping[str, Any]) -> str:
    """`services: api, web`, `schedule: */5 * * * *`, ...; "-" for none."""
    for kind, fields in condition.items():
        shown = kind.replace("_", "-")
        if not isinstance(fields, dict):
            return shown
        known = CONDITION_API_KINDS.get(kind)
        # A kind this client does not know (a newer daemon's): its name, no detail.
        detail = known.summary(fields) if known is not None else ""
        return f"{shown}: {detail}"
    return "-"


def list_tasks(args: Sequence[str], ui: Ui, environ: Mapping[str, str]) -> int:
    inv = invocation(LIST, ui, environ)
    inv.flags.add("json", bool, False, "Print the API's JSON answer instead of a table")
    rest = inv.parse(args)
    if isinstance(rest, int):
        return rest
    wrong = inv.no_args(rest, "task list takes only flags")
    if wrong is not None:
        return wrong
    client = inv.client(ERR_CLIENT)
    if client is None:
        return EXIT_ERROR
    with client:
        answer = request(ui, client, "Error: unable to list tasks", "GET", "/v1/tasks")
        if answer is FAILED:
            return EXIT_ERROR
    if inv.flags.boolean("json"):
        ui.raw(json.dumps(answer, indent=2))
        return EXIT_OK
    tasks = (answer.get("tasks") if isinstance(answer, dict) else None) or []
    if not tasks:
        ui.raw("No tasks.")
        return EXIT_OK
    rows = [
        [
            str(t.get("name", "")),
            "true" if t.get("enabled", True) else "false",
            condition_summary(t.get("condition") or {}),
            str(t.get("module", "")),
        ]
        for t in tasks
    ]
    for line in table(["NAME", "ENABLED", "CONDITION", "MODULE"], rows):
        ui.raw(line)
    return EXIT_OK


SUBCOMMANDS: dict[str, tuple[Callable[[Sequence[str], Ui, Mapping[str, str]], int], Command]] = {
    "create": (create, CREATE),
    "update": (update, UPDATE),
    "enable": (enable, ENABLE),
    "disable": (disable, DISABLE),
    "delete": (delete, DELETE),
    "list": (list_tasks, LIST),
}


def task_help() -> str:
    lines = [f"Usage: {PROG} task <subcommand> [-help] [options] [<task name>]", ""]
    lines.append("Subcommands:")
    lines += [f"    {name:<10}{command.synopsis}" for name, (_, command) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def run_task(args: Sequence[str], ui: Ui, environ: Mapping[str, str]) -> int:
    """`reconciler task <subcommand> ...`."""
    if not args:
        ui.warn(task_help())
        return EXIT_MISSING_FLAGS
    if args[0] in ("-h", "-help", "--help"):
        ui.raw(task_help())
        return EXIT_OK
    found = SUBCOMMANDS.get(args[0])
    if found is None:
        ui.error(f"Error: unknown subcommand 'task {args[0]}'", task_help())
        return EXIT_FLAG_PARSE
    return found[0](args[1:], ui, environ)
