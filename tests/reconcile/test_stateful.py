"""Random sequences of file operations against the live loop: after the watcher settles,
the registry equals a fresh load of the directory, with last-known-good for broken files."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

from helpers import task_hcl, wait_for
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.registry.store import Registry
from reconciler.sources.base import content_digest
from reconciler.sources.directory import DirectorySource
from reconciler.taskfiles.load import load_task_file
from reconciler.taskfiles.model import TaskSpec

FILES = ["a.hcl", "b.hcl", "sub/c.hcl", "d.json", "sub/deep/e.hcl"]
CORRUPT = ['task {\n  name = "x"\n', "\x00\x01binary", 'task {\n  name = "bad"\n}\n', ""]


class LiveDirectory:
    """The real loop, in its own thread with its own event loop."""

    def __init__(self, root: Path) -> None:
        self.registry = Registry()
        self.loop = asyncio.new_event_loop()
        self.source_loop: SourceLoop | None = None
        ready = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)

            async def start() -> None:
                self.source_loop = SourceLoop(
                    DirectorySource(root), Reconciler(self.registry), allow_empty=True
                )
                await self.source_loop.initial_load()
                self.runner = asyncio.create_task(self.source_loop.run())
                ready.set()

            self.loop.run_until_complete(start())
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        ready.wait(10)

    def snapshot(self) -> dict[str, TaskSpec]:
        async def snap() -> dict[str, TaskSpec]:
            return {t.spec.name: t.spec for t in self.registry}

        return asyncio.run_coroutine_threadsafe(snap(), self.loop).result(10)

    def seen(self) -> dict[str, str]:
        """What the source has reported: path -> content digest."""

        async def known() -> dict[str, str]:
            assert self.source_loop is not None
            source = self.source_loop.source
            assert isinstance(source, DirectorySource)
            return {rel: digest for rel, (_, digest) in source._known.items()}

        return asyncio.run_coroutine_threadsafe(known(), self.loop).result(10)

    def close(self) -> None:
        async def stop() -> None:
            self.runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.runner
            assert self.source_loop is not None
            self.source_loop.close()

        # A deadline, not a timing: stopping the watcher joins its thread, which a loaded
        # machine may take a while to schedule.
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(60)
        self.loop.close()  # its self-pipe sockets, or they leak into a later test


def content_for(rel: str, name: str, marker: str) -> str:
    if rel.endswith(".json"):
        return (
            f'{{"task": {{"name": "{name}", "module": "m", "condition": {{"services": '
            f'{{"names": ["{marker}"]}}}}}}}}'
        )
    return task_hcl(name, names=(marker,))


@settings(
    max_examples=12,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
class FileOperations(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="reconciler-stateful-"))
        (self.root / "sub" / "deep").mkdir(parents=True)
        self.counter = 0
        # Per path: the content on disk, and the last content that loaded without problems.
        self.disk: dict[str, str] = {}
        self.last_good: dict[str, str] = {}
        self.live = LiveDirectory(self.root)

    def teardown(self) -> None:
        self.live.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def _fresh_name(self) -> str:
        self.counter += 1
        return f"t{self.counter}"

    def _write(self, rel: str, text: str, atomic: bool) -> None:
        path = self.root / rel
        if atomic:
            tmp = path.with_name(".tmp-" + path.name)
            tmp.write_text(text)
            os.replace(tmp, path)
        else:
            path.write_text(text)
        self.disk[rel] = text
        if not load_task_file(text.encode(), rel).problems:
            self.last_good[rel] = text

    @rule(
        rel=st.sampled_from(FILES),
        marker=st.sampled_from(["web", "api", "db"]),
        atomic=st.booleans(),
    )
    def write_task(self, rel: str, marker: str, atomic: bool) -> None:
        self._write(rel, content_for(rel, self._fresh_name(), marker), atomic)

    @rule(rel=st.sampled_from(FILES), garbage=st.sampled_from(CORRUPT), atomic=st.booleans())
    def corrupt(self, rel: str, garbage: str, atomic: bool) -> None:
        self._write(rel, garbage, atomic)

    @rule(rel=st.sampled_from(FILES))
    def delete(self, rel: str) -> None:
        if rel in self.disk:
            (self.root / rel).unlink()
            del self.disk[rel]
            self.last_good.pop(rel, None)

    @rule(src=st.sampled_from(FILES), dst=st.sampled_from(FILES))
    def rename(self, src: str, dst: str) -> None:
        if src not in self.disk or src == dst or src.endswith(".json") != dst.endswith(".json"):
            return
        os.replace(self.root / src, self.root / dst)
        text = self.disk.pop(src)
        self.last_good.pop(src, None)
        self.disk[dst] = text
        if not load_task_file(text.encode(), dst).problems:
            self.last_good[dst] = text

    def expected(self) -> dict[str, TaskSpec]:
        out: dict[str, TaskSpec] = {}
        for rel, text in self.last_good.items():
            for t in load_task_file(text.encode(), rel).tasks:
                out[t.spec.name] = t.spec
        return out

    @invariant()
    def registry_follows_files(self) -> None:
        if not hasattr(self, "live"):
            return
        # First wait until the loop has seen this step's files (a later step must not be
        # coalesced with this one: that would be a different, equally valid, history).
        on_disk = {rel: content_digest(text.encode()) for rel, text in self.disk.items()}
        deadline = time.monotonic() + 10
        wait_for(lambda: self.live.seen() == on_disk, 10, what="the source to see the files")
        expected = self.expected()
        try:
            wait_for(
                lambda: self.live.snapshot() == expected,
                max(0.0, deadline - time.monotonic()),
                what="the registry to follow the files",
            )
        except AssertionError:
            got = self.live.snapshot()
            raise AssertionError(f"registry {sorted(got)} != files {sorted(expected)}") from None


TestFileOperations = FileOperations.TestCase
