"""Benchmark results as Markdown: machine description, one section per benchmark, targets."""

from __future__ import annotations

import datetime
import os
import platform
from dataclasses import dataclass, field
from importlib import metadata

LIBRARIES = ("tree-sitter", "tree-sitter-hcl", "python-hcl2", "watchdog")


@dataclass(frozen=True)
class Target:
    what: str
    limit: str
    measured: str
    met: bool | None  # None: not measured at the target's size (e.g. a --quick run)

    @property
    def verdict(self) -> str:
        return {True: "**met**", False: "**missed**", None: "not evaluated (size)"}[self.met]


@dataclass
class Section:
    name: str
    title: str
    lines: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)


def table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A Markdown table; `align` has one of 'l'/'r' per column (default: left, then right)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines(load_before: tuple[float, float, float]) -> list[str]:
    versions = []
    for lib in LIBRARIES:
        try:
            versions.append(f"{lib} {metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{lib} (not installed)")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- Date: {now}",
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores (nproc)",
        f"- Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()}",
        f"- Libraries: {', '.join(versions)}",
        "- Load average (1/5/15 min) when the run started: "
        + " / ".join(f"{x:.2f}" for x in load_before)
        + ". The machine is shared, so absolute times wander; the ratios to baselines "
        "measured in the same run are the numbers to compare across runs.",
    ]


HOW_TO_RUN = [
    "```",
    "make bench                        # = .venv/bin/python -m bench: all benchmarks, rewrites",
    "                                  #   BENCHMARKS.md (about 2-3 minutes on 2 cores)",
    ".venv/bin/python -m bench --quick # smaller sizes, prints Markdown, leaves this file alone",
    ".venv/bin/python -m bench --only latency   # one benchmark (load | latency), prints only",
    "```",
    "",
    "Generated task files live in a temporary directory that is removed afterwards (`--keep` "
    "keeps it). Every measurement of the load benchmark runs in a fresh child process "
    "(`python -m bench.child ...`), which reads its own peak RSS with "
    '`getrusage(RUSAGE_SELF).ru_maxrss`. The OS page cache is warm in every run: "cold" '
    "means an empty parse cache, not a cold disk.",
]


def render(
    sections: list[Section],
    *,
    load_before: tuple[float, float, float],
    elapsed_s: float,
    quick: bool,
) -> str:
    lines = ["# Benchmarks", ""]
    if quick:
        lines += ["**Quick run (`--quick`): small sizes, targets not evaluated.**", ""]
    lines += ["## Machine", "", *machine_lines(load_before), f"- Whole run: {elapsed_s:.0f} s", ""]
    lines += ["## How to run", "", *HOW_TO_RUN, ""]
    targets = [t for s in sections for t in s.targets]
    if targets:
        lines += ["## Targets", ""]
        lines += table(
            ["target", "limit", "measured", "verdict"],
            [[t.what, t.limit, t.measured, t.verdict] for t in targets],
            align="lrrl",
        )
        lines.append("")
    for section in sections:
        lines += [f"## {section.title}", "", *section.lines, ""]
    return "\n".join(lines).rstrip() + "\n"
