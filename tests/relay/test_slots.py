"""ModelSlots: at most N at once per model, first come first served, every slot comes back."""

from __future__ import annotations

import asyncio

import pytest

from relay.slots import ModelSlots, SlotTimeout


async def test_waiters_are_served_in_order_and_models_are_counted_apart():
    slots = ModelSlots(lambda: 2)
    held = [await slots.acquire("m", 1), await slots.acquire("m", 1)]
    other = await slots.acquire("n", 1)
    order: list[int] = []

    async def waiter(i: int) -> None:
        slot = await slots.acquire("m", 5)
        order.append(i)
        await asyncio.sleep(0.01)
        slots.release(slot)

    tasks = [asyncio.create_task(waiter(i)) for i in range(4)]
    await asyncio.sleep(0.01)
    assert slots.waiting("m") == 4 and slots.held("m") == 2
    for slot in held:
        slots.release(slot)
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3] and slots.held("m") == 0
    slots.release(other)
    slots.release(other)  # twice is harmless
    assert slots.held("n") == 0


async def test_a_timeout_and_a_cancel_leave_the_queue_and_leak_nothing():
    slots = ModelSlots(lambda: 1)
    held = await slots.acquire("m", 1)
    with pytest.raises(SlotTimeout):
        await slots.acquire("m", 0.02)
    task = asyncio.create_task(slots.acquire("m", 5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slots.waiting("m") == 0
    slots.release(held)
    assert slots.held("m") == 0


async def test_a_slot_handed_over_in_the_instant_its_waiter_is_cancelled_goes_to_the_next():
    slots = ModelSlots(lambda: 1)
    held = await slots.acquire("m", 1)
    loser = asyncio.create_task(slots.acquire("m", 5))
    winner = asyncio.create_task(slots.acquire("m", 5))
    await asyncio.sleep(0.01)
    slots.release(held)  # handed to the first waiter ...
    loser.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await loser
    slot = await asyncio.wait_for(winner, 1)
    assert slots.held("m") == 1
    slots.release(slot)
    assert slots.held("m") == 0
