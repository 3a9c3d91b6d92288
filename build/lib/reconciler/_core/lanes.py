"""A counting semaphore whose waiters are served by (priority, arrival), and whose number
of slots can change while it is in use (a reload changes the number of workers)."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class Lanes:
    def __init__(self, slots: int) -> None:
        self.slots = slots
        # Negative after a shrink while slots were taken: releases pay that back first.
        self._free = slots
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @property
    def waiting(self) -> int:
        return sum(1 for _, _, f in self._waiting if not f.done())

    async def acquire(self, priority: int = 0) -> None:
        """A slot; lower `priority` values are served first."""
        if self._free > 0 and not self.waiting:
            self._free -= 1
            return
        granted = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (int(priority), next(self._arrivals), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # granted just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        if self._free < 0:
            self._free += 1
            return
        while self._waiting:
            _, _, granted = heapq.heappop(self._waiting)
            if not granted.done():
                granted.set_result(None)
                return
        self._free += 1

    def resize(self, slots: int) -> None:
        """From now on at most `slots` are taken at once; slots taken beyond that are not
        taken back, they are not handed out again when released."""
        if slots < 1:
            raise ValueError("at least one slot")
        grow, self.slots = slots - self.slots, slots
        if grow < 0:
            self._free += grow
        for _ in range(grow):
            self.release()  # pays back a shrink's debt, or hands a slot to a waiter
