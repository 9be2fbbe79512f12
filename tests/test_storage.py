"""The pool file survives a crash in the middle of a write."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from pool_store.pool import Conversation, SessionPool, TinyPoolStore
from pool_store.storage import AtomicJSONStorage

ROOT = Path(__file__).resolve().parent.parent

WRITER = """
import sys
sys.path.insert(0, {root!r})
from pool_store.pool import Conversation, SessionPool, TinyPoolStore
pool = SessionPool(store=TinyPoolStore({path!r}))
pool.upsert(Conversation(session_id="s0", message_id="m" * 1000, model="m"))
print("ready", flush=True)
i = 0
while True:
    i += 1
    # sizes vary, so a torn write (new bytes over old) could not pass for valid JSON by chance
    size = 1000 + (i * 7919) % 4000
    pool.upsert(Conversation(session_id="s%d" % (i % 200), message_id="m" * size, model="m"))
"""


def test_killing_the_owner_mid_write_never_corrupts_the_file(tmp_path):
    path = tmp_path / "pool.json"
    rng = random.Random(7)
    sizes = set()
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=str(ROOT), path=str(path))],
                                stdout=subprocess.PIPE, text=True)
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
