"""`python -m bench [--quick] [--only NAME] [--output PATH] [--keep]`.

A full run (no --quick, no --only) rewrites BENCHMARKS.md; other runs print the Markdown
unless --output is given, so a smoke check never replaces the real numbers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.api_throughput import bench_api
from bench.consul_daemon import bench_consul_daemon
from bench.consul_scale import bench_consul_scale
from bench.daemon_edits import bench_daemon_edits
from bench.git_latency import bench_git
from bench.ha_takeover import bench_ha_takeover
from bench.hostile_names import bench_hostile_names
from bench.latency import bench_latency
from bench.load import bench_load
from bench.report import Section, render
from bench.runner import REPO
from bench.runner_overhead import bench_runner_overhead
from bench.soak import bench_soak
from bench.terraform_daemon import bench_terraform_daemon
from bench.workspace import Settings, Workspace
from bench.writers import bench_writers

BENCHMARKS: dict[str, Callable[[Workspace], Section]] = {
    "load": bench_load,
    "latency": bench_latency,
    "daemon-edits": bench_daemon_edits,
    "git": bench_git,
    "runner": bench_runner_overhead,
    "api": bench_api,
    "soak": bench_soak,
    "terraform": bench_terraform_daemon,
    "consul": bench_consul_daemon,
    "consul-scale": bench_consul_scale,
    "ha": bench_ha_takeover,
    "hostile": bench_hostile_names,
    "writers": bench_writers,
}
# Run only when asked for with --only (about 10 minutes; 60 s with --quick).
OPT_IN = frozenset({"soak"})


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument(
        "--only",
        choices=sorted(BENCHMARKS),
        action="append",
        metavar="NAME",
        help=f"run only this benchmark ({', '.join(BENCHMARKS)}; soak runs only when "
        "named); repeatable",
    )
    parser.add_argument("--output", type=Path, help="write the Markdown here")
    parser.add_argument("--keep", action="store_true", help="keep the generated files")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    names = args.only or [name for name in BENCHMARKS if name not in OPT_IN]
    settings = Settings.small() if args.quick else Settings.full()
    output = args.output
    if output is None and not args.quick and not args.only:
        output = REPO / "BENCHMARKS.md"

    load_before = os.getloadavg()
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="reconciler-bench-"))
    sections: list[Section] = []
    try:
        ws = Workspace(root, settings)
        for name in names:
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            sections.append(BENCHMARKS[name](ws))
            print(
                f"bench: {name} done in {time.perf_counter() - t0:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if args.keep:
            print(f"bench: generated files kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)

    text = render(
        sections,
        load_before=load_before,
        elapsed_s=time.perf_counter() - started,
        quick=settings.quick,
    )
    if output is None:
        print(text)
    else:
        output.write_text(text)
        print(f"bench: wrote {output}", file=sys.stderr)
        for section in sections:
            for target in section.targets:
                print(
                    f"  {target.what}: {target.measured} ({target.verdict.strip('*')})",
                    file=sys.stderr,
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
