"""The typed failures of task commands. Each carries a reason; a front end (the HTTP API,
a CLI client) maps the class to its own answer in one place, never the message."""

from __future__ import annotations

from reconciler._core.errors import NotFoundError, ReconcilerError


class TaskNotFoundError(NotFoundError):
    reason = "TaskNotFound"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a task with the name '{name}' does not exist or has not been initialized yet"
        )


class InspectFailedError(ReconcilerError):
    """Planning a task that is sent (POST ?run=inspect) failed: CTS answers 400."""

    reason = "InspectFailed"


class RunFailedError(ReconcilerError):
    """The task's apply failed (run=now): Terraform's error."""

    reason = "RunFailed"


class RunsUnavailableError(ReconcilerError):
    """This core runs no Terraform, so `run=...` cannot be served."""

    reason = "RunsUnavailable"


class NotAllowedNowError(ReconcilerError):
    """An injected gate (HA leadership) refuses commands on this instance now."""

    reason = "NotAllowedNow"


class ForbiddenError(ReconcilerError):
    """What the caller asks for is not allowed to it (a module or provider the api_tasks
    policy does not list): 403."""

    reason = "Forbidden"
