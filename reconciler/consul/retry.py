"""How long a watcher waits: between errors, and between two answers.

The numbers are hcat's and CTS's, so that a reconciler talks to a Consul cluster exactly as
politely as CTS does. The clock and the randomness are injectable so that tests need no
real sleeps.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from reconciler._core.backoff import FOREVER, Backoff, Spread

# CTS retry/retry.go DefaultMaxWaitTime.
MAX_WAIT = 15 * 60.0
# CTS client/consul.go ConsulDefaultMaxRetry ("to be consistent with hcat retries").
MAX_RETRIES = 8
# hcat view.go minDelayBetweenUpdates and the 0-20 ms dither of rateLimiter.
MIN_GAP = 0.1
GAP_DITHER = 0.02

Sleep = Callable[[float], Awaitable[None]]


def retry_policy(
    *, max_retries: int = MAX_RETRIES, max_wait: float = MAX_WAIT, rnd: random.Random | None = None
) -> Backoff:
    """CTS controller/watcher.go retryConsul: retry while the retry count (0 for the first
    retry) is at most `max_retries` (a negative one: always); a success resets the count.
    Each wait is CTS retry.WaitTime: 2^n s plus a random [0, 2^n / 2) s for retry n, and
    `max_wait`, without jitter, once 2^n reaches it. The watcher goes on retrying with the
    same waits once the retries ran out: it only reports the error then."""
    return Backoff(
        first=1.0,
        cap=max_wait,
        factor=2.0,
        jitter=0.5,
        spread=Spread.ABOVE,
        retries=max_retries + 1 if max_retries >= 0 else FOREVER,
        uniform=(rnd if rnd is not None else random.Random()).random,
    )


def min_gap_sleep(elapsed: float, rnd: random.Random) -> float:
    """hcat view.go rateLimiter: a fetch that answered in under 100 ms is followed by a
    sleep for the rest of the 100 ms plus 0-20 ms, so a flapping service cannot make a
    watcher hammer Consul."""
    remaining = MIN_GAP - elapsed
    return remaining + rnd.random() * GAP_DITHER if remaining > 0 else 0.0


@dataclass
class Pacing:
    """Everything time-related a watcher does, in one injectable object."""

    sleep: Sleep = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic  # measures how fast an answer came
    retry: Backoff = field(default_factory=retry_policy)
    rnd: random.Random = field(default_factory=random.Random)
    # A Consul answer without X-Consul-Index cannot block; poll it this often.
    no_index_poll: float = 1.0
