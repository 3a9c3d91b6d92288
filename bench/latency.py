"""Benchmark 2: edit-to-live latency with N tasks loaded.

One child process loads N tasks, then, in the same process and on the same files:
  baseline  a bare watchdog Observer; time from `os.rename()` to its handler's on_moved
  loop      the real SourceLoop (`initial_load()`, then `run()` as an asyncio task); time
            from `os.rename()` of an edited file to the registry listener seeing the new
            definition
Each edit writes a hidden temp file in the target's directory and renames it over the
target, the way editors and our own API writes do.
"""

from __future__ import annotations

import statistics

from bench.report import Section, Target, table
from bench.runner import percentile, run_child
from bench.workspace import Workspace

P99_LIMIT_MS = 100.0


def _stats(samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms),
        "mean": statistics.fmean(ms),
    }


def bench_latency(ws: Workspace) -> Section:
    settings = ws.settings
    count = settings.latency_size
    corpus = ws.corpus(count)
    # The parse cache left by the load benchmark (if it ran) makes the set-up faster;
    # the edits themselves are always parsed afresh (new content, new hash).
    result = run_child(
        "latency",
        {
            "root": str(corpus.hcl_root),
            "cache": str(ws.cache_path(count)),
            "edits": settings.edits,
            "gap_s": settings.edit_gap_s,
        },
        cwd=corpus.hcl_root.parent,
        timeout=600,
    )
    if result["tasks"] != count:
        raise AssertionError(f"latency benchmark loaded {result['tasks']} tasks, not {count}")
    base, loop = _stats(result["watchdog_s"]), _stats(result["loop_s"])
    debounce = float(result["debounce_ms"])
    keys = ("p50", "p90", "p99", "max", "mean")
    rows = [
        ["bare watchdog event (baseline)", *(f"{base[k]:.2f}" for k in keys)],
        ["rename -> registry updated (SourceLoop)", *(f"{loop[k]:.2f}" for k in keys)],
        ["ratio loop / baseline", *(f"{loop[k] / base[k]:.1f}x" for k in keys)],
    ]
    section = Section("latency", "2. Edit-to-live latency")
    section.lines += [
        f"{count:,} tasks loaded (initial load {result['initial_load_s']:.2f} s), "
        f"{settings.edits} edits, each to a different file spread over the tree, each "
        f"changing the task's `description`; {settings.edit_gap_s * 1000:g} ms pause after an "
        "edit has landed, so edits never coalesce. Times in ms from `os.rename()`; the "
        "loop's time is taken in the registry listener (`registry.subscribe`), i.e. when the "
        "registry holds the new definition. Same child process, same heap and same files "
        f"for both rows; peak RSS of that process {result['rss_mb']:.0f} MB.",
        "",
        "A rename into place is final (inotify's IN_MOVED_TO; a close after writing, "
        "IN_CLOSE_WRITE, is too), so the loop re-reads the file at once instead of waiting "
        f"for its {debounce:g} ms quiet period, which it keeps for the events that may be "
        "followed by more writes (a creation, a modification, a deletion, a rename away). "
        "What the loop adds to the watcher's delivery is its own work: scan of the hinted "
        "path, sha256, parse, validate, diff, registry apply, event-loop and worker-thread "
        'hops. Partial: no HTTP hop and no scheduler; see "Edit-to-live through the '
        'daemon" for the figure through `reconciler start`.',
        "",
        *table(["measurement (ms)", "p50", "p90", "p99", "max", "mean"], rows),
        "",
        "Garbage collector, same process: a full (generation 2) collection with "
        f"{count:,} tasks loaded ({result['gc_tracked_objects']:,} tracked objects) stalls "
        f"the event loop for **{result['full_gc_ms']:.0f} ms** (median of 3 `gc.collect()`); "
        f"after `gc.freeze()` it takes {result['full_gc_frozen_ms']:.2f} ms. Full collections "
        f"during the {settings.edits} edits above: {result['gen2_collections_during_edits']} "
        "(CPython runs one only when the objects that survived since the last one exceed 25% "
        "of the long-lived ones, so they are rare in a quiet daemon but not impossible).",
    ]
    section.targets.append(
        Target(
            f"edit-to-live p99, {count:,} tasks",
            f"<= {P99_LIMIT_MS:g} ms",
            f"{loop['p99']:.1f} ms (max {loop['max']:.1f})",
            loop["p99"] <= P99_LIMIT_MS if count == settings.target_size else None,
        )
    )
    return section
