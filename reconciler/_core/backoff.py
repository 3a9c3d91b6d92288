"""How long to wait before trying something that failed again: the daemon's one backoff.

Every retry in the daemon grows the same way: a first wait, multiplied by `factor` after
each failure in a row, up to a cap, with random jitter so that many retriers that failed
at the same moment spread out. What differs per caller is only the parameters:

- a source that is unavailable (reconcile.loop): 1 s doubling to 5 min, up to 20% shorter
  (as kopf's `error_delays` and Flux's per-object rate limiter), forever;
- a triggered apply that failed (runs.execute): 1 s, then 2 s, up to 50% longer, twice
  (CTS controller/daemon.go);
- a Consul watch whose request failed (consul.retry): CTS retry.WaitTime, 2^n s up to 50%
  longer, 15 min once 2^n reaches it, 9 retries before the error is reported;
- the daemon's own Consul service registration (consul.registration): 1 s doubling to 60 s,
  no jitter, forever.

Jitter spreads waits to one side of the nominal delay (`Spread`). BELOW shortens a wait
(by up to `jitter` of it) after the cap: the cap stays a true cap, and each wait is still
longer than the one before it until the cap is reached (with jitter < 0.5 and factor 2).
ABOVE lengthens it, as CTS does; a wait whose nominal delay reaches the cap is then the
cap itself, without jitter (CTS's rule, kept so that a Consul cluster sees the same
pacing from a reconciler as from CTS).
"""

from __future__ import annotations

import enum
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

# Beyond this many doublings every realistic first delay is past any cap; it also keeps
# factor ** n from overflowing after days of failures.
_MAX_DOUBLINGS = 64

# `retries` for a caller that never gives up.
FOREVER = sys.maxsize


class Spread(enum.Enum):
    """Which side of the nominal delay the jitter puts a wait on."""

    BELOW = "below"
    ABOVE = "above"


@dataclass(frozen=True)
class Backoff:
    """The wait after the n-th failure in a row is `first * factor ** (n - 1)`, capped at
    `cap`, moved by a random fraction of up to `jitter` to the `spread` side; after
    `retries` failures in a row the caller stops retrying (or, for a Consul watch, reports
    the error and goes on). `uniform` is the randomness, [0, 1): injectable for tests,
    or a seeded generator's."""

    first: float = 1.0
    cap: float = 300.0
    factor: float = 2.0
    jitter: float = 0.2
    spread: Spread = Spread.BELOW
    retries: int = FOREVER
    uniform: Callable[[], float] = field(default=random.random, compare=False)

    def __post_init__(self) -> None:
        if not (
            0 < self.first <= self.cap
            and self.factor >= 1
            and 0 <= self.jitter < 1
            and self.retries >= 0
        ):
            raise ValueError(f"invalid backoff {self!r}")

    def delay(self, failures: int) -> float:
        """The wait after `failures` failed attempts in a row (1 for the first failure)."""
        doublings = min(max(failures - 1, 0), _MAX_DOUBLINGS)
        nominal = self.first * self.factor**doublings
        if self.spread is Spread.ABOVE:
            if nominal >= self.cap:
                return self.cap
            # No draw without jitter: a seeded generator shared with others keeps its
            # sequence.
            return nominal * (1 + self.jitter * self.uniform()) if self.jitter else nominal
        base = min(self.cap, nominal)
        return base * (1 - self.jitter * self.uniform()) if self.jitter else base

    def retrying(self, failures: int) -> bool:
        """Whether another attempt follows `failures` failed attempts in a row."""
        return failures <= self.retries
