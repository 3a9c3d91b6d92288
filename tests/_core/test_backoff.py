"""The one backoff, and the exact waits each of its callers gets from it.

The reference formulas below are the ones each caller computed on its own before they
shared `Backoff`; the waits must stay equal to them, draw for draw."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler._core.backoff import FOREVER, Backoff, Spread
from reconciler.consul import registration
from reconciler.consul.retry import MAX_RETRIES, MAX_WAIT, Pacing, retry_policy
from reconciler.reconcile.engine import Reconciler
from reconciler.reconcile.loop import SourceLoop
from reconciler.registry.store import Registry
from reconciler.runs.execute import APPLY_RETRY
from reconciler.sources.directory import DirectorySource


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """The module-level generator seeded, and put back as it was afterwards."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


def never() -> float:
    raise AssertionError("no random draw expected")


# --- the type ------------------------------------------------------------------------------


def test_below_shortens_after_the_cap() -> None:
    backoff = Backoff(first=1.0, cap=10.0, factor=3.0, jitter=0.5, uniform=lambda: 0.5)
    assert [backoff.delay(n) for n in range(1, 5)] == [0.75, 2.25, 6.75, 7.5]


def test_above_lengthens_and_the_cap_is_waited_exactly() -> None:
    backoff = Backoff(first=1.0, cap=5.0, jitter=0.5, spread=Spread.ABOVE, uniform=lambda: 0.5)
    # 4 s nominal, 5 s waited: below the cap the jitter may pass it (CTS's rule).
    assert [backoff.delay(n) for n in range(1, 4)] == [1.25, 2.5, 5.0]
    assert dataclasses.replace(backoff, uniform=never).delay(4) == 5.0  # no draw at the cap


def test_no_jitter_draws_nothing() -> None:
    for spread in Spread:
        backoff = Backoff(first=2.0, cap=20.0, jitter=0.0, spread=spread, uniform=never)
        assert [backoff.delay(n) for n in range(1, 6)] == [2, 4, 8, 16, 20]


def test_no_failures_yet_waits_the_first_delay_and_days_of_failures_do_not_overflow() -> None:
    backoff = Backoff(first=1.5, cap=math.inf, jitter=0.0, spread=Spread.ABOVE)
    assert backoff.delay(0) == backoff.delay(1) == 1.5
    assert backoff.delay(10**6) == 1.5 * 2.0**64


def test_retries() -> None:
    limited = Backoff(retries=2)
    assert [limited.retrying(n) for n in range(1, 5)] == [True, True, False, False]
    assert Backoff().retries == FOREVER and Backoff().retrying(10**9)
    assert Backoff(retries=0).retrying(1) is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"first": 0},
        {"first": 10, "cap": 1},
        {"factor": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
        {"retries": -1},
    ],
)
def test_invalid_backoff_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]


# --- an unavailable source: 1 s doubling to 5 min, up to 20% shorter, forever ---------------


def old_source_delay(failures: int, u: float, first: float = 1.0, cap: float = 300.0) -> float:
    doublings = min(max(failures - 1, 0), 64)
    return min(cap, first * 2.0**doublings) * (1 - 0.2 * u)


def test_source_loop_waits(tmp_path: Path) -> None:
    loop = SourceLoop(DirectorySource(tmp_path), Reconciler(Registry()))
    assert loop.backoff == Backoff(first=1.0, cap=300.0, factor=2.0, jitter=0.2)
    assert loop.backoff.retries == FOREVER
    pinned = dataclasses.replace(loop.backoff, uniform=lambda: 0.5)
    assert [pinned.delay(n) for n in range(1, 12)] == [
        0.9, 1.8, 3.6, 7.2, 14.4, 28.8, 57.6, 115.2, 230.4, 270.0, 270.0,
    ]  # fmt: skip
    rnd = random.Random(5)
    draws = [rnd.random() for _ in range(40)]
    it = iter(draws)
    drawn = dataclasses.replace(loop.backoff, uniform=lambda: next(it))
    assert [drawn.delay(n) for n in range(1, 41)] == [
        old_source_delay(n, u) for n, u in enumerate(draws, 1)
    ]
    custom = SourceLoop(
        DirectorySource(tmp_path),
        Reconciler(Registry()),
        retry_interval=0.5,
        retry_max=0.2,
    )
    assert custom.backoff == Backoff(first=0.5, cap=0.5)  # the cap is never below the first


# --- a failed triggered apply: 1 s, then 2 s, up to 50% longer, twice -------------------------


def test_apply_retries() -> None:
    assert APPLY_RETRY.retries == 2
    assert [APPLY_RETRY.retrying(n) for n in (1, 2, 3)] == [True, True, False]
    pinned = dataclasses.replace(APPLY_RETRY, uniform=lambda: 0.5)
    assert [pinned.delay(n) for n in (1, 2, 3)] == [1.25, 2.5, 5.0]
    # The module-level generator, as random.uniform(1.0, 1.5) drew it: the same waits.
    with seeded(11):
        old = [float(2**attempt) * random.uniform(1.0, 1.5) for attempt in range(6)]
    with seeded(11):
        new = [APPLY_RETRY.delay(n) for n in range(1, 7)]
    assert new == old


# --- a Consul watch: CTS retry.WaitTime, 9 retries before the error is reported ------------


def old_wait_time(attempt: int, rnd: random.Random, max_wait: float = MAX_WAIT) -> float:
    if attempt >= math.log2(max_wait):
        return max_wait
    base = 2.0**attempt
    return base + rnd.random() * (2.0 ** (attempt + 1) - base) / 2


def test_consul_watch_waits_are_ctss_draw_for_draw() -> None:
    policy = retry_policy(rnd=random.Random(3))
    reference = random.Random(3)
    retries = [*range(0, 20), 8, 9, 10, 40, 2000, 3, 0]  # out of order: the draws still match
    assert [policy.delay(r + 1) for r in retries] == [old_wait_time(r, reference) for r in retries]
    pinned = dataclasses.replace(policy, uniform=lambda: 0.5)
    assert [pinned.delay(n) for n in range(1, 13)] == [
        1.25, 2.5, 5, 10, 20, 40, 80, 160, 320, 640, 900, 900,
    ]  # fmt: skip


def test_consul_watch_retry_budget() -> None:
    policy = retry_policy()
    assert MAX_RETRIES == 8
    # Retry count 0..8 retries (9 retries); the 10th failure in a row is reported.
    assert [policy.retrying(n) for n in (1, 9, 10)] == [True, True, False]
    assert [retry_policy(max_retries=2).retrying(n) for n in (3, 4)] == [True, False]
    assert retry_policy(max_retries=-1).retrying(10**9)
    assert Pacing().retry == policy  # the watchers' default


# --- the daemon's Consul service registration: 1 s doubling to 60 s, forever ----------------


def test_registration_waits() -> None:
    backoff = dataclasses.replace(registration.RETRY, uniform=never)
    assert [backoff.delay(n) for n in range(1, 10)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert backoff.retrying(10**9)
