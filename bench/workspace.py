"""Scratch space shared by the benchmarks of one run: corpora are generated once."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.gen import Corpus, generate


@dataclass
class Settings:
    """Sizes for a run; `quick` shrinks everything for a smoke check."""

    quick: bool
    load_sizes: tuple[int, ...]
    hcl2_size: int  # python-hcl2 runs on the corpus of this size
    repeats: int
    target_size: int  # the size the performance targets are stated for
    latency_size: int
    edits: int
    edit_gap_s: float  # idle time after each edit lands, so edits never coalesce

    @classmethod
    def full(cls) -> Settings:
        return cls(False, (1_000, 10_000), 1_000, 3, 10_000, 10_000, 200, 0.05)

    @classmethod
    def small(cls) -> Settings:
        return cls(True, (300, 1_000), 300, 1, 10_000, 1_000, 30, 0.03)


@dataclass
class Workspace:
    root: Path
    settings: Settings
    _corpora: dict[int, Corpus] = field(default_factory=dict)
    generate_s: dict[int, float] = field(default_factory=dict)

    def corpus(self, count: int) -> Corpus:
        if count not in self._corpora:
            started = time.perf_counter()
            self._corpora[count] = generate(self.root / f"tasks-{count}", count)
            self.generate_s[count] = time.perf_counter() - started
        return self._corpora[count]

    def cache_path(self, count: int) -> Path:
        """Where the parse cache of a corpus is persisted between child processes."""
        return self.root / f"tasks-{count}" / "parse-cache.json"
