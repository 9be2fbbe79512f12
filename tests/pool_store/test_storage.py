"""The pool file survives a crash in the middle of a write, and is written off the event loop."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pool_store.pool import Conversation, SessionPool
from pool_store.storage import AtomicJSONStorage, TinyPoolStore

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import asyncio, sys
sys.path.insert(0, {root!r})
from pool_store.pool import Conversation, SessionPool
from pool_store.storage import TinyPoolStore
pool = SessionPool(store=TinyPoolStore({path!r}))


def change(i):
    # sizes vary, so a torn write (new bytes over old) could not pass for valid JSON by chance
    size = 1000 + (i * 7919) % 4000
    pool.upsert(Conversation(session_id="s%d" % (i % 200), message_id="m" * size, model="m"))


async def on_a_loop():  # as in the tool: the writes happen in a worker thread, coalesced
    i = 0
    while True:
        i += 1
        change(i)
        if i % 7 == 0:
            await asyncio.sleep(0.001)


pool.upsert(Conversation(session_id="s0", message_id="m" * 1000, model="m"))
print("ready", flush=True)
if {threaded!r}:
    asyncio.run(on_a_loop())
i = 0
while True:  # no loop (a script): every change is written at once
    i += 1
    change(i)
"""


@pytest.mark.parametrize("threaded", [False, True], ids=["written-at-once", "written-behind"])
def test_killing_the_owner_mid_write_never_corrupts_the_file(tmp_path, threaded):
    path = tmp_path / "pool.json"
    rng = random.Random(7)
    sizes = set()
    for _ in range(12):
        code = WRITER.format(root=str(ROOT), path=str(path), threaded=threaded)
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)  # no chance to finish the write or clean up
        proc.wait(10)
        data = json.loads(path.read_text("utf-8"))  # a half-written file would not parse
        records = list(data["conversations"].values())
        assert records and all(set(r["message_id"]) == {"m"} for r in records)
        sizes.add(len(records))
        reopened = SessionPool(store=TinyPoolStore(str(path)))
        assert len(reopened) == len(records)
    assert not list(tmp_path.glob(".pool.json.tmp-*")), "leftover temporary files are cleaned up on open"


def test_storage_reads_nothing_from_a_missing_or_empty_file(tmp_path):
    storage = AtomicJSONStorage(str(tmp_path / "sub" / "pool.json"))
    assert storage.read() is None
    (tmp_path / "sub" / "pool.json").write_text("")
    assert storage.read() is None
    storage.write({"conversations": {"1": {"session_id": "a"}}})
    assert storage.read() == {"conversations": {"1": {"session_id": "a"}}}


def test_a_pool_on_the_file_keeps_targets(tmp_path):
    store = TinyPoolStore(str(tmp_path / "pool.json"))
    pool = SessionPool(store=store)
    pool.add_target("gemini-2.5-pro")
    pool.upsert(Conversation("s1", "m1", "gemini-2.5-pro"))
    store.close()
    again = SessionPool(store=TinyPoolStore(str(tmp_path / "pool.json")))
    assert again.targets() == {"gemini-2.5-pro"} and again.get("s1") is not None


def on_disk(path: Path) -> dict[str, str]:
    return {r["session_id"]: r["state"] for r in json.loads(path.read_text("utf-8"))["conversations"].values()}


async def test_changes_on_a_loop_are_coalesced_and_written_off_the_loop(tmp_path):
    path = tmp_path / "pool.json"
    store = TinyPoolStore(str(path), write_interval=0.2)
    pool = SessionPool(store=store)
    assert store.writer is not None
    for i in range(100):  # a burst of changes within one turn of the loop
        pool.upsert(Conversation(f"s{i}", "m", "gemini-2.5-pro"))
    assert store.writer.file_writes == 0, "nothing is written on the loop itself"
    for _ in range(100):
        if store.writer.file_writes:
            break
        await asyncio.sleep(0.01)
    assert store.writer.file_writes == 1 and len(on_disk(path)) == 100, "the burst is one write"
    for i in range(25):  # changes spread over half a second: one write per interval at most
        pool.retire(f"s{i}", "gone")
        await asyncio.sleep(0.02)
    await store.drain()
    assert 2 <= store.writer.file_writes <= 5, store.writer.file_writes
    assert sum(state == "retired" for state in on_disk(path).values()) == 25


async def test_a_late_older_write_never_replaces_a_newer_one(tmp_path):
    storage = AtomicJSONStorage(str(tmp_path / "pool.json"))
    assert storage.write_text('{"v": 2}', version=2)
    assert not storage.write_text('{"v": 1}', version=1), "the older snapshot is skipped"
    assert storage.read() == {"v": 2}


async def test_closing_writes_what_is_pending(tmp_path):
    store = TinyPoolStore(str(tmp_path / "pool.json"))
    SessionPool(store=store).upsert(Conversation("s1", "m1", "gemini-2.5-pro"))
    store.close()  # before the write-behind task ran
    assert SessionPool(store=TinyPoolStore(str(tmp_path / "pool.json"))).get("s1") is not None


def test_the_canary_s_verdict_is_kept_for_the_next_start(tmp_path):
    from relay.settings import Strategy, StrategyState

    store = TinyPoolStore(str(tmp_path / "pool.json"))
    state = StrategyState()
    state.use_store(store)
    assert state.current == Strategy.RETRY
    state.choose(Strategy.MIRROR)
    store.close()
    restarted = StrategyState()
    restarted.use_store(TinyPoolStore(str(tmp_path / "pool.json")))
    assert restarted.current == Strategy.MIRROR
