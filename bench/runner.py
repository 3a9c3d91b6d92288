"""Running one measurement in a fresh child process, and summarising repeated runs."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


class ChildFailed(RuntimeError):
    pass


def run_child(command: str, args: dict[str, Any], *, cwd: Path, timeout: float = 300) -> Any:
    """Run `python -m bench.child COMMAND ARGS` and return its JSON result.

    The child runs in `cwd` (the generated data's directory, so that display paths and
    parse-cache keys stay short and equal across runs) with the repository on sys.path.
    """
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.child", command, json.dumps(args)],
        cwd=cwd,
        env=_child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise ChildFailed(f"bench.child {command} failed ({proc.returncode}):\n{proc.stderr}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    return env


@dataclass(frozen=True)
class Spread:
    """The median of repeated runs, with the lowest and highest value."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values), len(values))

    def fmt(self, digits: int = 2, scale: float = 1.0) -> str:
        med = f"{self.median * scale:.{digits}f}"
        if self.n == 1:
            return med
        return f"{med} ({self.low * scale:.{digits}f}-{self.high * scale:.{digits}f})"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (pct in 0..100): an observed value, never interpolated."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]
