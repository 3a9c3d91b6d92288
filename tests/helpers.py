"""Small helpers shared by tests: task text, polling with a deadline."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from reconciler.taskfiles.load import is_task_file, load_task_file
from reconciler.taskfiles.model import TaskSpec


def task_hcl(
    name: str, module: str = "./mod", names: tuple[str, ...] = ("web",), **extra: str
) -> str:
    lines = [f'  name = "{name}"', f'  module = "{module}"']
    lines += [f"  {k} = {v}" for k, v in extra.items()]
    quoted = ", ".join(f'"{n}"' for n in names)
    return (
        "task {\n"
        + "\n".join(lines)
        + f'\n  condition "services" {{\n    names = [{quoted}]\n  }}\n}}\n'
    )


def write_atomic(path: Path, text: str) -> None:
    """Write the way editors do: a temp file, then rename over the target."""
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def fresh_load(root: Path) -> dict[str, TaskSpec]:
    """What a fresh load of the directory gives (files with problems contribute nothing)."""
    out: dict[str, TaskSpec] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if (
            not path.is_file()
            or not is_task_file(rel)
            or any(p.startswith(".") for p in rel.split("/"))
        ):
            continue
        loaded = load_task_file(path.read_bytes(), rel)
        for t in loaded.tasks if not loaded.problems else []:
            out.setdefault(t.spec.name, t.spec)
    return out


# When the running test must end (its pytest-timeout), set by tests/conftest.py. A wait
# whose own deadline lies past it would be cut off by the hang guard, without saying what
# it waited for: such a wait is refused at once, so that deadlines are sized to fit.
TEST_DEADLINE: float | None = None


def _deadline(timeout: float, what: str) -> float:
    deadline = time.monotonic() + timeout
    if TEST_DEADLINE is not None and deadline > TEST_DEADLINE:
        raise AssertionError(
            f"waiting {timeout}s for {what} would outlast the test's timeout: give the "
            "test a longer @pytest.mark.timeout"
        )
    return deadline


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = _deadline(timeout, what)
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.005)


async def async_wait_for(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = "condition"
) -> None:
    deadline = _deadline(timeout, what)
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def without_consul(config_dir: Path) -> None:
    """An empty embedded catalog next to the configuration file in `config_dir` (its
    default place): tasks with Consul conditions then run with no services, instead of
    waiting for a Consul agent at CTS's default address, localhost:8500."""
    (config_dir / "catalog").mkdir(parents=True, exist_ok=True)
