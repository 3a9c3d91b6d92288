"""`task create -task-file=F`: one task file -> the POST /v1/tasks body.

The file is read by the daemon's own loader, so it is valid here exactly when it would be
valid in a task directory. It must hold exactly one task and none of CTS's deprecated
fields. What a file may say but the API does not take is settled here, against the file's
own directory, the way the daemon would read the file if it sat in a task directory:

- a relative local `module` path becomes absolute, so that the daemon (which writes the task
  into its own task directory) finds the module the file meant;
- `variable_files` are read and sent as `variables` (CTS's CLI does the same), with the
  daemon's order: the files in turn, then the task's own `variables`;
- `working_dir` is refused: the daemon places API-created tasks in its own working_dir, and
  moving the task silently would leave its Terraform state behind.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from reconciler._core.errors import ConfigError
from reconciler.api.encoding import task_request
from reconciler.cli.deprecations import deprecation_messages
from reconciler.runner.workspace import WorkspaceError, is_local_module, task_variables
from reconciler.taskfiles.load import load_task_file, parse_task_source
from reconciler.taskfiles.model import TaskSpec


class TaskFileError(Exception):
    """Why the file cannot be sent: lines to print under "unable to create request"."""

    def __init__(self, *lines: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


def read_task_file(path: str) -> tuple[TaskSpec, dict[str, Any]]:
    """The task of the file at `path` (as sent) and the request body for it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TaskFileError("unable to read task file", f"open {path}: {exc.strerror}") from None
    loaded = load_task_file(data, path)
    if loaded.problems:
        raise TaskFileError("unable to read task file", *(str(p) for p in loaded.problems))
    count = len(loaded.tasks)
    if count > 1:
        raise TaskFileError(
            f"task file '{path}' cannot contain more than 1 task, contains {count} tasks"
        )
    if count == 0:
        raise TaskFileError(
            f"task file '{path}' does not contain a task, must contain at least one task"
        )
    try:
        body = parse_task_source(data, path)
    except ConfigError as exc:  # it just loaded; kept for the type checker's sake
        raise TaskFileError("unable to read task file", str(exc)) from None
    deprecated = [m for b in body.blocks if b.type == "task" for m in deprecation_messages(b)]
    if deprecated:
        lines: list[str] = []
        for message in deprecated:
            lines += ["", message.rstrip("\n")] if lines else [message.rstrip("\n")]
        raise TaskFileError(*lines)
    spec = loaded.tasks[0].spec
    if spec.working_dir is not None:
        raise TaskFileError(
            f"task '{spec.name}' sets working_dir, which cannot be sent to the daemon: "
            "a task created through the API runs in the daemon's working_dir/<task name>; "
            "remove working_dir from the file (or keep the file in a task directory)"
        )
    base = Path(os.path.abspath(path)).parent
    try:
        variables = task_variables(spec, base) if spec.variable_files else spec.variables
    except WorkspaceError as exc:
        raise TaskFileError(f"task '{path}' is invalid", exc.message) from None
    module = spec.module
    if module is not None and is_local_module(module) and not os.path.isabs(module):
        module = os.path.normpath(base / module)
    sent = dataclasses.replace(spec, module=module, variables=variables, variable_files=None)
    return sent, task_request(sent)
