"""How long to wait before trying an unavailable source again.

Exponential with jitter, as kopf's `error_delays` and Flux's per-object rate limiter: the
first retry comes soon (a blip heals in a second), then each wait doubles up to a cap, so
a remote that is down for hours costs one fetch (and at most one fetch timeout) every few
minutes instead of one a second, with the source's lock free in between.

Jitter only shortens a wait (by up to `jitter` of it): daemons that lost the same remote at
the same moment spread out, the cap stays a true cap, and each wait is still longer than
the one before it until the cap is reached (with jitter < 0.5 and factor 2).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

# Beyond this many doublings every realistic first delay is past any cap; it also keeps
# factor ** n from overflowing after days of failures.
_MAX_DOUBLINGS = 64


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    cap: float = 300.0
    factor: float = 2.0
    jitter: float = 0.2
    uniform: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if not (0 < self.first <= self.cap and self.factor >= 1 and 0 <= self.jitter < 1):
            raise ValueError(f"invalid backoff {self!r}")

    def delay(self, failures: int) -> float:
        """The wait after `failures` failed attempts in a row (1 for the first failure)."""
        doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
        base = min(self.cap, self.first * self.factor**doublings)
        return base * (1 - self.jitter * self.uniform())
