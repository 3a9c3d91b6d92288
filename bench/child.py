"""Measurements that run in a fresh child process: `python -m bench.child COMMAND ARGS_JSON`.

Each command prints one JSON object on its last stdout line. Peak RSS is read inside the
child with getrusage(RUSAGE_SELF), so every number belongs to exactly one measurement.
Imports of the measured code happen inside the commands, after the clock has started.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import re
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

T_START = time.perf_counter()

Result = dict[str, Any]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def walk_files(root: Path, suffix: str) -> Iterator[Path]:
    """Every file with `suffix` under root, in a stable order, hidden paths skipped."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(suffix) and not name.startswith("."):
                yield Path(dirpath, name)


# --- floor and library baseline ------------------------------------------------------------


def floor_json(args: dict[str, Any]) -> Result:
    """Walk, read and json.loads the JSON twins: the least work any loader must do."""
    docs = 0
    for path in walk_files(Path(args["root"]), ".json"):
        json.loads(path.read_bytes())
        docs += 1
    return {"ready_s": time.perf_counter() - T_START, "docs": docs, "rss_mb": peak_rss_mb()}


def hcl2_baseline(args: dict[str, Any]) -> Result:
    """python-hcl2 (`hcl2.loads`) on the same HCL files: the library baseline."""
    import hcl2

    t_import = time.perf_counter()
    docs = 0
    for path in walk_files(Path(args["root"]), ".hcl"):
        hcl2.loads(path.read_text())
        docs += 1
    return {
        "ready_s": time.perf_counter() - T_START,
        "import_s": t_import - T_START,
        "docs": docs,
        "rss_mb": peak_rss_mb(),
    }


# --- the reconciler's own start-up ---------------------------------------------------------


def reconciler_load(args: dict[str, Any]) -> Result:
    """What the daemon does at start: read the parse cache, load the directory, save."""
    import asyncio

    from reconciler.reconcile.cache import ParseCache
    from reconciler.reconcile.engine import Reconciler
    from reconciler.reconcile.loop import SourceLoop
    from reconciler.registry.store import Registry
    from reconciler.sources.directory import DirectorySource
    from reconciler.taskfiles.load import gc_paused

    t_import = time.perf_counter()
    out: Result = {"import_s": t_import - T_START}
    # What-if: the collector paused for the whole start-up (the daemon does not do this).
    pause = gc_paused() if args.get("gc_paused") else contextlib.nullcontext()

    async def main() -> None:
        cache = ParseCache(Path(args["cache"]))
        cache.load()
        t_cache = time.perf_counter()
        registry = Registry()
        reconciler = Reconciler(registry, cache)
        loop = SourceLoop(DirectorySource(Path(args["root"])), reconciler)
        await loop.initial_load()
        t_loaded = time.perf_counter()
        await asyncio.to_thread(cache.save)
        t_saved = time.perf_counter()
        out.update(
            cache_read_s=t_cache - t_import,
            initial_load_s=t_loaded - t_cache,
            cache_save_s=t_saved - t_loaded,
            ready_s=t_saved - T_START,
            tasks=len(registry),
            problem_files=len(reconciler.problems()),
            cache_hits=cache.hits,
            cache_misses=cache.misses,
        )

    with pause:
        asyncio.run(main())
    out["rss_mb"] = peak_rss_mb()
    return out


def load_stages(args: dict[str, Any]) -> Result:
    """The cold start taken apart: each stage over all files, one after the other, in one
    process (GC on, as in the daemon). The parse stages are cumulative: tree-sitter alone,
    then `hcl.parse` (tree-sitter + conversion), then `Reconciler.parse` with an empty
    cache (display path + `load_task_file`: `hcl.parse` + decode + validate)."""
    from reconciler.reconcile.cache import ParseCache
    from reconciler.reconcile.engine import Reconciler
    from reconciler.registry.store import Registry
    from reconciler.sources.directory import DirectorySource
    from reconciler.taskfiles import hcl

    source = DirectorySource(Path(args["root"]))
    out: Result = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        value = fn()
        out[name] = time.perf_counter() - t0
        return value

    update = timed("scan_s", source.full_scan)
    items = [(rel, content.data) for rel, content in update.changed.items() if content]
    shown = timed("display_s", lambda: [source.display_path(rel) for rel, _ in items])
    parser = hcl._parser()
    timed("treesitter_s", lambda: [parser.parse(data) for _, data in items])
    timed(
        "hcl_parse_s",
        lambda: [hcl.parse(data, name) for name, (_, data) in zip(shown, items, strict=True)],
    )
    cache = ParseCache(Path(args["cache"]))
    reconciler = Reconciler(Registry(), cache)
    reconciler.add_source(source.name)
    parsed = timed("reconciler_parse_s", lambda: reconciler.parse(update, source.display_path))
    timed(
        "apply_s",
        lambda: reconciler.apply(source.name, update, parsed, source.display_path),
    )
    timed("cache_save_s", cache.save)
    timed("cache_load_s", ParseCache(Path(args["cache"])).load)
    out["files"] = len(items)
    out["cache_bytes"] = Path(args["cache"]).stat().st_size
    return out


# --- edit-to-live latency ------------------------------------------------------------------

_DESCRIPTION = re.compile(r'^(\s*description\s*=\s*)".*"$', re.MULTILINE)


def _edited(text: str, description: str) -> str:
    new, count = _DESCRIPTION.subn(lambda m: f'{m.group(1)}"{description}"', text, count=1)
    if count != 1:
        raise ValueError("generated task file has no description line")
    return new


def _replace_atomically(target: Path, text: str) -> Callable[[], None]:
    """Write a hidden temp file next to target; return the rename that publishes it."""
    tmp = target.with_name(f".{target.name}.bench-tmp")
    tmp.write_text(text)
    return lambda: os.rename(tmp, target)


def watchdog_baseline(targets: list[Path], gap_s: float, root: Path) -> list[float]:
    """Seconds from rename() to a bare watchdog handler seeing the move, per edit."""
    import threading

    from watchdog.events import FileSystemEvent, FileSystemEventHandler
    from watchdog.observers import Observer

    arrived = threading.Event()
    want: list[str] = [""]
    seen_at: list[float] = [0.0]

    class Handler(FileSystemEventHandler):
        def on_moved(self, event: FileSystemEvent) -> None:
            if os.fsdecode(event.dest_path) == want[0]:
                seen_at[0] = time.perf_counter()
                arrived.set()

    observer = Observer()
    observer.daemon = True
    observer.schedule(Handler(), str(root), recursive=True)
    observer.start()
    samples = []
    try:
        for target in targets:
            publish = _replace_atomically(target, target.read_text())  # same bytes: no change
            want[0] = str(target)
            arrived.clear()
            t0 = time.perf_counter()
            publish()
            if not arrived.wait(5.0):
                raise TimeoutError(f"watchdog reported no move onto {target}")
            samples.append(seen_at[0] - t0)
            time.sleep(gap_s)
    finally:
        observer.stop()
        observer.join(5.0)
    return samples


def edit_latency(args: dict[str, Any]) -> Result:
    """Rename edited files into a live SourceLoop; time until the registry has them."""
    import asyncio

    from reconciler.reconcile.cache import ParseCache
    from reconciler.reconcile.engine import Reconciler
    from reconciler.reconcile.loop import SourceLoop
    from reconciler.registry.store import Registry, RegistryChange
    from reconciler.sources.directory import DirectorySource

    root = Path(args["root"])
    edits: int = args["edits"]
    gap_s: float = args["gap_s"]
    files = list(walk_files(root, ".hcl"))
    step = max(1, len(files) // edits)
    targets = [files[(i * step) % len(files)] for i in range(edits)]
    out: Result = {}

    async def main() -> None:
        cache = ParseCache(Path(args["cache"]))
        cache.load()
        registry = Registry()
        source = DirectorySource(root)
        loop = SourceLoop(source, Reconciler(registry, cache))
        t0 = time.perf_counter()
        await loop.initial_load()
        out["initial_load_s"] = time.perf_counter() - t0
        out["tasks"] = len(registry)
        out["debounce_ms"] = loop.debounce * 1000

        # Same process, same heap, same files, before our observer exists.
        out["watchdog_s"] = await asyncio.to_thread(watchdog_baseline, targets, gap_s, root)

        runner = asyncio.create_task(loop.run())
        deadline = time.monotonic() + 10
        while not source.watching:
            if time.monotonic() > deadline:
                raise TimeoutError("the source loop did not start watching")
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)  # let the observer settle before the first edit

        want: tuple[str, str] = ("", "")
        landed: asyncio.Future[float] | None = None

        def on_change(change: RegistryChange) -> None:
            now = time.perf_counter()
            for _, new in change.updated:
                if (new.spec.name, new.spec.description) == want and landed and not landed.done():
                    landed.set_result(now)

        registry.subscribe(on_change)
        gen2_before = gc.get_stats()[2]["collections"]
        samples = []
        event_loop = asyncio.get_running_loop()
        for i, target in enumerate(targets):
            description = f"edited by the benchmark, edit {i}"
            publish = _replace_atomically(target, _edited(target.read_text(), description))
            name = _task_name(target)
            want, landed = (name, description), event_loop.create_future()
            t0 = time.perf_counter()
            publish()
            samples.append(await asyncio.wait_for(landed, 5.0) - t0)
            await asyncio.sleep(gap_s)
        out["loop_s"] = samples
        out["gen2_collections_during_edits"] = gc.get_stats()[2]["collections"] - gen2_before
        out["reconciles"] = loop.reconciles
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        loop.close()
        out.update(full_gc_pauses(registry))

    asyncio.run(main())
    out["rss_mb"] = peak_rss_mb()
    return out


def full_gc_pauses(keep_alive: object) -> Result:
    """How long a full (generation 2) collection stalls the process with the tasks loaded,
    and how long after `gc.freeze()` has moved everything alive into the permanent
    generation."""

    def pause_ms() -> float:
        t0 = time.perf_counter()
        gc.collect()
        return (time.perf_counter() - t0) * 1000

    before = sorted(pause_ms() for _ in range(3))[1]
    tracked = len(gc.get_objects())
    gc.freeze()
    try:
        after = sorted(pause_ms() for _ in range(3))[1]
    finally:
        gc.unfreeze()
    del keep_alive
    return {"full_gc_ms": before, "full_gc_frozen_ms": after, "gc_tracked_objects": tracked}


_NAME = re.compile(r'^\s*name\s*=\s*"([^"]+)"$', re.MULTILINE)


def _task_name(path: Path) -> str:
    match = _NAME.search(path.read_text())
    if match is None:
        raise ValueError(f"{path} has no name line")
    return match.group(1)


COMMANDS: dict[str, Callable[[dict[str, Any]], Result]] = {
    "floor": floor_json,
    "hcl2": hcl2_baseline,
    "load": reconciler_load,
    "stages": load_stages,
    "latency": edit_latency,
}


def main() -> None:
    command, raw = sys.argv[1], sys.argv[2]
    result = COMMANDS[command](json.loads(raw))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
