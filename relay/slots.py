"""How many requests of one model may reach the site at once, when requests do not each hold a pooled
conversation (mirroring: every client conversation has its own). The user's rule is the same as the
pool's: at most `sessions_per_model` at once; the rest wait first come, first served, and take the next
slot that frees up. Every slot comes back, whatever happens to its holder.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Callable

from pool_store.pool import queue_up, wait_turn


class SlotTimeout(Exception):
    """No slot of the model freed up within the wait limit."""


class Slot:
    def __init__(self, model: str) -> None:
        self.model = model
        self.released = False


class ModelSlots:
    def __init__(self, capacity: Callable[[], int]) -> None:
        self.capacity = capacity  # read on every decision, so a new setting applies at once
        self._held: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[Slot]]] = {}
        self._background: set[asyncio.Future[Any]] = set()

    def held(self, model: str) -> int:
        return self._held.get(model, 0)

    def waiting(self, model: str) -> int:
        return sum(1 for f in self._waiters.get(model, ()) if not f.done())

    def free_now(self, model: str) -> bool:
        """A request of `model` arriving now would get a slot at once."""
        return not self.waiting(model) and self.held(model) < max(1, self.capacity())

    async def acquire(self, model: str, timeout: float, background: bool = False) -> Slot:
        """A slot of `model`, first come first served; `background` (a side call) lets every other go first."""
        queue = self._waiters.setdefault(model, deque())
        if not any(not f.done() for f in queue) and self.held(model) < max(1, self.capacity()):
            return self._grant(model)
        fut: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        queue_up(queue, fut, background, self._background)
        try:
            return await wait_turn(queue, fut, timeout, self.release, self._background)
        except asyncio.TimeoutError:
            raise SlotTimeout(model) from None

    def release(self, slot: Slot) -> None:
        """Give a slot back (safe to call twice) and hand it to the oldest waiter."""
        if slot.released:
            return
        slot.released = True
        self._held[slot.model] = max(0, self.held(slot.model) - 1)
        queue = self._waiters.get(slot.model)
        while queue and self.held(slot.model) < max(1, self.capacity()):
            fut = queue.popleft()
            if not fut.done():
                fut.set_result(self._grant(slot.model))

    def _grant(self, model: str) -> Slot:
        self._held[model] = self.held(model) + 1
        return Slot(model)
