"""Task commands: the one place that sequences create, enable/disable and delete, with
`run=now` / `run=inspect`, across validation, the run scheduler and write-back. The
HTTP API, a CLI client and HA leadership all go through it."""

from reconciler.commands.service import CreateResult, Gate, TaskCommands

__all__ = ["CreateResult", "Gate", "TaskCommands"]
