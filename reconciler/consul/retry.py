"""How long a watcher waits: between errors, and between two answers.

The numbers are hcat's and CTS's, so that a reconciler talks to a Consul cluster exactly as
politely as CTS does. The clock and the randomness are injectable so that tests need no
real sleeps.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

# CTS retry/retry.go DefaultMaxWaitTime.
MAX_WAIT = 15 * 60.0
# CTS client/consul.go ConsulDefaultMaxRetry ("to be consistent with hcat retries").
MAX_RETRIES = 8
# hcat view.go minDelayBetweenUpdates and the 0-20 ms dither of rateLimiter.
MIN_GAP = 0.1
GAP_DITHER = 0.02

Sleep = Callable[[float], Awaitable[None]]


def wait_time(attempt: int, rnd: random.Random, max_wait: float = MAX_WAIT) -> float:
    """CTS retry.WaitTime: 2^n s plus a random [0, 2^n / 2) s, capped at `max_wait`
    (the cap applies, without jitter, once 2^n reaches it)."""
    if attempt >= math.log2(max_wait):
        return max_wait
    base = 2.0**attempt
    return base + rnd.random() * (2.0 ** (attempt + 1) - base) / 2


def min_gap_sleep(elapsed: float, rnd: random.Random) -> float:
    """hcat view.go rateLimiter: a fetch that answered in under 100 ms is followed by a
    sleep for the rest of the 100 ms plus 0-20 ms, so a flapping service cannot make a
    watcher hammer Consul."""
    remaining = MIN_GAP - elapsed
    return remaining + rnd.random() * GAP_DITHER if remaining > 0 else 0.0


@dataclass
class RetryPolicy:
    """CTS controller/watcher.go retryConsul: retry while the retry count (0 for the
    first retry) is at most `max_retries`; a success resets the count."""

    max_retries: int = MAX_RETRIES
    max_wait: float = MAX_WAIT
    rnd: random.Random = field(default_factory=random.Random)

    def next(self, retries: int) -> tuple[bool, float]:
        """(retry?, how long to wait first) after `retries` failed retries."""
        if self.max_retries >= 0 and retries > self.max_retries:
            return False, 0.0
        return True, wait_time(retries, self.rnd, self.max_wait)

    def max_wait_after(self, retries: int) -> float:
        """The wait once the retries ran out: the same growing backoff, up to its cap."""
        return wait_time(retries, self.rnd, self.max_wait)


@dataclass
class Pacing:
    """Everything time-related a watcher does, in one injectable object."""

    sleep: Sleep = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic  # measures how fast an answer came
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rnd: random.Random = field(default_factory=random.Random)
    # A Consul answer without X-Consul-Index cannot block; poll it this often.
    no_index_poll: float = 1.0
