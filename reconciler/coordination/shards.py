"""Which member runs a task when runs are spread over a cluster: rendezvous hashing.

Every member computes the same owner from the same member list, and a member that leaves
or joins moves only the tasks it owned or now owns (about 1/n of them), never the rest.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _weight(member: str, task: str) -> bytes:
    return hashlib.sha256(f"{member}\0{task}".encode()).digest()


def owner(task: str, members: Iterable[str]) -> str | None:
    """The member with the highest weight for `task`; None without members."""
    best: tuple[bytes, str] | None = None
    for member in members:
        candidate = (_weight(member, task), member)
        if best is None or candidate > best:
            best = candidate
    return best[1] if best is not None else None
