"""The error tree. Every error a user can cause carries a reason code and a message that
names the place (file:line, task, field) so that it can be shown without a traceback."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Location:
    """Where something is in a file: 1-based line and column."""

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line and self.column:
            return f"{self.file}:{self.line}:{self.column}"
        if self.line:
            return f"{self.file}:{self.line}"
        return self.file


# Where something no file wrote is: a default, or a settings block built in code.
NOWHERE = Location("<defaults>")


class ReconcilerError(Exception):
    """Base of every expected error. `reason` is a short machine-readable code."""

    reason = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(ReconcilerError):
    """One or more problems in a configuration or task file."""

    reason = "ConfigInvalid"

    def __init__(self, problems: list[Problem] | Problem) -> None:
        self.problems = problems if isinstance(problems, list) else [problems]
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class Problem:
    """One validation or syntax problem.

    `where` is the path inside the document ("task \"web\"", "condition \"services\""),
    `location` is where in which file, when the problem came from a file.
    """

    message: str
    where: tuple[str, ...] = ()
    location: Location | None = None

    def __str__(self) -> str:
        parts = [str(self.location)] if self.location else []
        parts.extend(self.where)
        parts.append(self.message)
        return ": ".join(parts)

    def without_location(self) -> str:
        return ": ".join([*self.where, self.message])


class SourceError(ReconcilerError):
    """A source (directory, git repository) cannot be read."""

    reason = "SourceUnavailable"


class ConflictError(ReconcilerError):
    """A change cannot be made in the current state (e.g. the task's file is broken)."""

    reason = "Conflict"


class StorageFullError(ReconcilerError, OSError):
    """A write failed for lack of space (ENOSPC) or quota (EDQUOT); nothing was changed.

    Also an OSError, so that code which already treats a failed write as an OSError (the
    parse cache, events.json) keeps doing so; the API answers it with 507.
    """

    reason = "InsufficientStorage"

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class NotFoundError(ReconcilerError):
    reason = "NotFound"


class DuplicateTaskError(ReconcilerError):
    """The name is taken: by a live task, a file's task, one being deleted or created."""

    reason = "DuplicateTask"


class ReadOnlySourceError(ConflictError):
    """The task (or the change) belongs to a source the API cannot write (a git source
    that follows a pinned tag or commit), or no source can take it. A conflict with how
    things are, like every ConflictError (API: 409)."""

    reason = "ReadOnly"


class InvalidTaskError(ReconcilerError):
    """A task sent by a client (API, CLI) that cannot become a task file: it fails
    validation, or would not read back as sent."""

    reason = "InvalidTask"
