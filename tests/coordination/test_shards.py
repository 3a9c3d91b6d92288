"""Rendezvous hashing: every member computes the same owner, the tasks spread about
evenly, and a member that leaves (or joins) moves only its own tasks."""

from __future__ import annotations

from collections import Counter

from reconciler.coordination.shards import owner

TASKS = [f"task-{i}" for i in range(3000)]


def test_the_same_owner_whatever_the_order_and_none_without_members() -> None:
    assert all(owner(t, ["a", "b", "c"]) == owner(t, ["c", "a", "b"]) for t in TASKS)
    assert owner("x", []) is None
    assert owner("x", ["only"]) == "only"


def test_spread_and_minimal_moves() -> None:
    three = {t: owner(t, ["a", "b", "c"]) for t in TASKS}
    counts = Counter(three.values())
    assert all(800 <= counts[m] <= 1200 for m in "abc"), counts  # 1000 each expected
    two = {t: owner(t, ["a", "c"]) for t in TASKS}
    moved = [t for t in TASKS if two[t] != three[t]]
    assert all(three[t] == "b" for t in moved)  # only b's tasks move
    assert len(moved) == counts["b"]
    four = {t: owner(t, ["a", "b", "c", "d"]) for t in TASKS}
    assert all(four[t] in (three[t], "d") for t in TASKS)  # a newcomer only takes
