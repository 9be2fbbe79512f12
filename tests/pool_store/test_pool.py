"""SessionPool: leasing, first-come-first-served waiting, no leaked lease, persistence."""

from __future__ import annotations

import asyncio
import json

import pytest

from pool_store.pool import Conversation, NoConversation, PoolTimeout, SessionPool
from pool_store.storage import TinyPoolStore


def conv(sid: str, model: str = "m", **kw) -> Conversation:
    return Conversation(session_id=sid, message_id="msg-" + sid, model=model, **kw)


class Clock:
    """The pool's time, moved by the test."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_least_recently_used_conversation_first():
    clock = Clock()
    pool = SessionPool(clock=clock)
    for sid in ("a", "b", "c"):
        pool.upsert(conv(sid, created_at=clock.now))
    order = []
    for _ in range(6):
        lease = await pool.lease("m", timeout=1)
        order.append(lease.conversation.session_id)
        pool.release(lease)
        clock.now += 1
    assert order == ["a", "b", "c", "a", "b", "c"]


async def test_concurrency_is_the_number_of_conversations_and_waiters_are_served_in_order():
    pool = SessionPool()
    pool.upsert(conv("a"))
    pool.upsert(conv("b"))
    first = await pool.lease("m", timeout=1)
    second = await pool.lease("m", timeout=1)
    assert pool.stats()["m"]["busy"] == 2
    served: list[int] = []

    async def waiter(n: int) -> None:
        lease = await pool.lease("m", timeout=5)
        served.append(n)
        await asyncio.sleep(0.01)
        pool.release(lease)

    tasks = [asyncio.create_task(waiter(n)) for n in range(5)]
    await asyncio.sleep(0.01)
    assert pool.waiting("m") == 5
    pool.release(first)
    pool.release(second)
    await asyncio.gather(*tasks)
    assert served == [0, 1, 2, 3, 4]
    assert pool.stats()["m"] == {"total": 2, "ready": 2, "busy": 0, "cooling": 0, "retired": 0, "owned": 0,
                                 "waiting": 0}


async def test_a_waiter_that_times_out_leaves_the_queue():
    pool = SessionPool()
    pool.upsert(conv("a"))
    held = await pool.lease("m", timeout=1)
    with pytest.raises(PoolTimeout):
        await pool.lease("m", timeout=0.05)
    assert pool.waiting("m") == 0
    pool.release(held)
    again = await pool.lease("m", timeout=0.1)
    assert again.conversation.session_id == "a"


async def test_a_cancelled_waiter_leaves_the_queue_and_leaks_nothing():
    pool = SessionPool()
    pool.upsert(conv("a"))
    held = await pool.lease("m", timeout=1)
    task = asyncio.create_task(pool.lease("m", timeout=5))
    await asyncio.sleep(0.01)
    assert pool.waiting("m") == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.waiting("m") == 0
    pool.release(held)
    assert pool.stats()["m"]["ready"] == 1


async def test_cancelled_in_the_same_instant_it_was_served_passes_the_conversation_on():
    pool = SessionPool()
    pool.upsert(conv("a"))
    held = await pool.lease("m", timeout=1)
    loser = asyncio.create_task(pool.lease("m", timeout=5))
    winner = asyncio.create_task(pool.lease("m", timeout=5))
    await asyncio.sleep(0.01)
    pool.release(held)  # hands "a" to the first waiter ...
    loser.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await loser
    lease = await asyncio.wait_for(winner, 1)
    assert lease.conversation.session_id == "a"


async def test_release_twice_is_harmless():
    pool = SessionPool()
    pool.upsert(conv("a"))
    lease = await pool.lease("m", timeout=1)
    pool.release(lease)
    pool.release(lease)
    other = await pool.lease("m", timeout=1)
    with pytest.raises(PoolTimeout):
        await pool.lease("m", timeout=0.02)
    pool.release(other)


async def test_no_usable_conversation_fails_at_once():
    pool = SessionPool()
    with pytest.raises(NoConversation):
        await pool.lease("m", timeout=5)
    pool.upsert(conv("a"))
    pool.retire("a", "401 foreign session")
    with pytest.raises(NoConversation):
        await pool.lease("m", timeout=5)


async def test_only_conversations_a_page_can_serve_are_leased():
    pool = SessionPool(can_serve=lambda c: c.identity == "user:1")
    pool.upsert(conv("mine", identity="user:1"))
    pool.upsert(conv("theirs", identity="user:2"))
    lease = await pool.lease("m", timeout=1)
    assert lease.conversation.session_id == "mine"
    assert pool.servable_count("m") == 1


async def test_a_cooling_conversation_serves_again_once_its_time_has_passed():
    clock = Clock()
    pool = SessionPool(clock=clock)
    pool.upsert(conv("a"))
    pool.cool_down("a", 30)
    assert pool.stats()["m"]["cooling"] == 1
    waiter = asyncio.create_task(pool.lease("m", timeout=5))
    await asyncio.sleep(0)
    assert pool.waiting("m") == 1, "a cooling conversation is not handed out"
    clock.now += 29
    pool.wake("m")
    await asyncio.sleep(0)
    assert not waiter.done()
    clock.now += 2
    pool.wake("m")  # what the timer the pool set for the end of the cooling does
    lease = await asyncio.wait_for(waiter, 1)
    assert lease.conversation.session_id == "a" and pool.stats()["m"]["busy"] == 1


async def test_cooling_sets_a_timer_that_wakes_the_waiters():
    pool = SessionPool()
    pool.upsert(conv("a"))
    pool.cool_down("a", 0.05)
    lease = await pool.lease("m", timeout=2)
    assert lease.conversation.session_id == "a" and lease.waited >= 0.04


async def test_a_new_turn_moves_the_retry_target():
    pool = SessionPool()
    pool.upsert(conv("a"))
    pool.upsert(Conversation(session_id="a", message_id="msg-2", model="m"))
    assert len(pool) == 1 and pool.get("a").message_id == "msg-2"


def test_store_on_memory_and_file(tmp_path):
    for store in (TinyPoolStore(None), TinyPoolStore(str(tmp_path / "pool.json"))):
        pool = SessionPool(store=store)
        pool.upsert(conv("a", identity="user:1"))
        pool.upsert(conv("b"))
        pool.retire("b", "gone")
        reopened = SessionPool(store=store)
        assert {c.session_id: c.state for c in reopened} == {"a": "ready", "b": "retired"}
        assert reopened.get("a").identity == "user:1"
        pool.remove("a")
        assert [c.session_id for c in SessionPool(store=store)] == ["b"]
    data = json.loads((tmp_path / "pool.json").read_text())
    assert list(data["conversations"].values())[0]["session_id"] == "b"


def test_a_file_of_an_earlier_version_is_read(tmp_path):
    """Records written when the replayed side was called `position`."""
    record = conv("a").to_record()
    record["position"] = record.pop("side")
    record["position"] = "b"
    assert Conversation.from_record(record).side == "b"


def test_a_restarted_pool_reads_the_file(tmp_path):
    path = str(tmp_path / "pool.json")
    store = TinyPoolStore(path)
    SessionPool(store=store).upsert(conv("a"))
    store.close()
    assert SessionPool(store=TinyPoolStore(path)).get("a").message_id == "msg-a"
