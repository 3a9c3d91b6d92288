"""Benchmark 1: start-up with N task files, cold (empty parse cache) and warm (persisted).

Per size and repetition, each in a fresh child process:
  floor  walk + read + `json.loads` of the equivalent JSON documents
  hcl2   walk + read + `hcl2.loads` of the HCL files (library baseline, one size only)
  cold   what the daemon does with no parse cache: Reconciler + SourceLoop.initial_load()
         on a DirectorySource, registry filled, then the parse cache saved
  warm   the same with the parse cache from the cold run loaded first (a restart)
and, at the largest size only, a what-if for a suggested change to the package:
  cold/warm with the garbage collector paused during start-up
  (`reconciler.taskfiles.load.gc_paused()`, which the daemon does not use yet)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.gen import Corpus
from bench.report import Section, Target, table
from bench.runner import Spread, run_child
from bench.workspace import Workspace

WARM_LIMIT_S = 3.0
COLD_LIMIT_S = 10.0
RSS_LIMIT_MB = 250.0

KINDS = {
    "floor": "floor: read + `json.loads` of the JSON twins",
    "hcl2": "python-hcl2: read + `hcl2.loads`",
    "cold": "**cold**: empty parse cache",
    "warm": "**warm restart**: persisted parse cache",
    "cold-gc": "what-if: cold, GC paused during start-up",
    "warm-gc": "what-if: warm, GC paused during start-up",
}


@dataclass
class Runs:
    """Child results of one kind at one size, one per repetition."""

    kind: str
    count: int
    results: list[dict[str, Any]]

    def spread(self, key: str) -> Spread:
        return Spread.of([float(r[key]) for r in self.results])


def measure(ws: Workspace, count: int) -> dict[str, Runs]:
    corpus = ws.corpus(count)
    cwd = corpus.hcl_root.parent
    cache = ws.cache_path(count)
    runs = {kind: Runs(kind, count, []) for kind in KINDS}
    with_hcl2 = count == ws.settings.hcl2_size
    what_if = count == max(ws.settings.load_sizes)
    for _ in range(ws.settings.repeats):
        # Interleaved, so that a noisy neighbour slows floor and reconciler alike.
        runs["floor"].results.append(run_child("floor", {"root": str(corpus.json_root)}, cwd=cwd))
        cache.unlink(missing_ok=True)
        load_args = {"root": str(corpus.hcl_root), "cache": str(cache)}
        runs["cold"].results.append(run_child("load", load_args, cwd=cwd))
        runs["warm"].results.append(run_child("load", load_args, cwd=cwd))
        if with_hcl2:
            runs["hcl2"].results.append(run_child("hcl2", {"root": str(corpus.hcl_root)}, cwd=cwd))
        if what_if:
            gc_cache = cache.with_suffix(".gc-paused.json")
            gc_cache.unlink(missing_ok=True)
            gc_args = {**load_args, "cache": str(gc_cache), "gc_paused": True}
            runs["cold-gc"].results.append(run_child("load", gc_args, cwd=cwd))
            runs["warm-gc"].results.append(run_child("load", gc_args, cwd=cwd))
    for kind in ("cold", "warm", "cold-gc", "warm-gc"):
        for r in runs[kind].results:
            _check(r, count, warm=kind.startswith("warm"))
    return {k: v for k, v in runs.items() if v.results}


def _check(result: dict[str, Any], count: int, warm: bool) -> None:
    """A benchmark that loaded the wrong thing measures nothing: fail loudly."""
    expected = {
        "tasks": count,
        "problem_files": 0,
        "cache_hits": count if warm else 0,
        "cache_misses": 0 if warm else count,
    }
    got = {k: result[k] for k in expected}
    if got != expected:
        raise AssertionError(f"load benchmark sanity check failed: expected {expected}, got {got}")


def _row(runs: Runs, floor: Runs) -> list[str]:
    ready = runs.spread("ready_s")
    rss = runs.spread("rss_mb")
    if runs.kind not in ("floor", "hcl2"):
        phases = " / ".join(
            f"{runs.spread(k).median:.2f}"
            for k in ("import_s", "cache_read_s", "initial_load_s", "cache_save_s")
        )
    elif runs.kind == "hcl2":
        phases = f"import {runs.spread('import_s').median:.2f}"
    else:
        phases = ""
    return [
        f"{runs.count:,}",
        KINDS[runs.kind],
        ready.fmt(2),
        f"{ready.median / runs.count * 1000:.3f}",
        phases,
        rss.fmt(0),
        f"{ready.median / floor.spread('ready_s').median:.1f}x",
        f"{rss.median / floor.spread('rss_mb').median:.1f}x",
    ]


def bench_load(ws: Workspace) -> Section:
    settings = ws.settings
    section = Section("load", "1. Start-up: loading N task files")
    rows: list[list[str]] = []
    by_size: dict[int, dict[str, Runs]] = {}
    for count in settings.load_sizes:
        by_size[count] = measured = measure(ws, count)
        rows += [_row(measured[k], measured["floor"]) for k in KINDS if k in measured]
    example = ws.corpus(settings.load_sizes[0])
    section.lines += [
        f"One `task` block per file (about {_lines(example)} lines: description, module, "
        "version, providers, a `variables` map, a condition (services by names or regexp, "
        "catalog-services, consul-kv or schedule), mostly a `module_input`, a "
        "`buffer_period`, comments), in 100 nested directories (`team-NN/ENV/`). "
        "Every JSON twin holds the same task in CTS's JSON syntax and loads to the same "
        f"`TaskSpec`. {_repeats(settings.repeats)}",
        "",
        "- *ready s*: from the child's first line (before importing the measured code) to "
        "the registry holding every task and the parse cache saved: what a daemon restart "
        "costs, without the interpreter's own start-up (~20 ms).",
        "- *phases*: import / parse-cache read / `initial_load()` (walk, read, hash, parse, "
        "validate, reconcile into the registry) / parse-cache save, in seconds.",
        "- *x floor*: ready time and peak RSS divided by the floor's of the same size and run.",
        "",
        *table(
            [
                "tasks",
                "run",
                "ready s",
                "ms/task",
                "phases (s)",
                "peak RSS MB",
                "time x floor",
                "RSS x floor",
            ],
            rows,
            align="llrrlrrr",
        ),
    ]
    section.lines += ["", *stages_table(ws, max(settings.load_sizes))]
    target = by_size.get(settings.target_size)
    if target is not None:
        section.targets += _targets(target)
    else:
        size = f"{settings.target_size:,}"
        section.targets += [
            Target(f"warm restart, {size} tasks", f"<= {WARM_LIMIT_S:g} s", "-", None),
            Target(f"first start (empty cache), {size} tasks", f"<= {COLD_LIMIT_S:g} s", "-", None),
            Target(f"peak RSS, {size} tasks", f"<= {RSS_LIMIT_MB:g} MB", "-", None),
        ]
    return section


def _targets(runs: dict[str, Runs]) -> list[Target]:
    count = f"{runs['cold'].count:,}"
    warm, cold = runs["warm"].spread("ready_s"), runs["cold"].spread("ready_s")
    rss = max(runs["warm"].spread("rss_mb").high, runs["cold"].spread("rss_mb").high)
    return [
        Target(
            f"warm restart, {count} tasks",
            f"<= {WARM_LIMIT_S:g} s",
            f"{warm.median:.2f} s (slowest {warm.high:.2f})",
            warm.high <= WARM_LIMIT_S,
        ),
        Target(
            f"first start (empty cache), {count} tasks",
            f"<= {COLD_LIMIT_S:g} s",
            f"{cold.median:.2f} s (slowest {cold.high:.2f})",
            cold.high <= COLD_LIMIT_S,
        ),
        Target(
            f"peak RSS, {count} tasks (highest run)",
            f"<= {RSS_LIMIT_MB:g} MB",
            f"{rss:.0f} MB",
            rss <= RSS_LIMIT_MB,
        ),
    ]


def _lines(corpus: Corpus) -> int:
    lengths = [(corpus.hcl_root / p).read_text().count("\n") for p in corpus.paths[:200]]
    return round(sum(lengths) / len(lengths))


def _repeats(n: int) -> str:
    if n == 1:
        return "Each cell is one fresh child process."
    return f"Each cell is the median of {n} fresh child processes (range in brackets)."


STAGES = (
    ("scan_s", "walk + stat + read + sha256 (`DirectorySource.full_scan`)"),
    ("display_s", "`DirectorySource.display_path` once per file (a load calls it twice)"),
    ("treesitter_s", "tree-sitter `Parser.parse` alone"),
    ("hcl_parse_s", "`config.hcl.parse`: tree-sitter + conversion to `Body`"),
    (
        "reconciler_parse_s",
        "`Reconciler.parse`, empty cache: display path + `load_task_file` "
        "(`hcl.parse` + decode + validate)",
    ),
    ("apply_s", "`Reconciler.apply`: diff + registry"),
    ("cache_save_s", "`ParseCache.save` (JSON encode + atomic write)"),
    ("cache_load_s", "`ParseCache.load` (what a warm restart reads)"),
)


def stages_table(ws: Workspace, count: int) -> list[str]:
    """Where a cold start goes, stage by stage, in one child process."""
    corpus = ws.corpus(count)
    cache = corpus.hcl_root.parent / "stages-cache.json"
    cache.unlink(missing_ok=True)
    result = run_child(
        "stages", {"root": str(corpus.hcl_root), "cache": str(cache)}, cwd=corpus.hcl_root.parent
    )
    files = int(result["files"])
    rows = [
        [label, f"{result[key]:.2f}", f"{result[key] / files * 1000:.3f}"] for key, label in STAGES
    ]
    return [
        f"Where a cold start of {files:,} files goes: each stage run over all files, one after "
        "the other, in one child process (GC on, single run, so +-20% noise on this shared "
        "machine). The three parse rows are cumulative. Parse-cache file: "
        f"{result['cache_bytes'] / 1e6:.1f} MB.",
        "",
        *table(["stage", "s", "ms/file"], rows, align="lrr"),
    ]
