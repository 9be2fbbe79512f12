"""The pool's file: TinyDB on a storage that never leaves half a file behind and never blocks the
event loop.

- `AtomicJSONStorage` writes a temporary file beside the real one, fsyncs it and renames it over the
  old one, so a reader (or a restart after a crash) sees either the old content or the new, never a mix.
- `WriteBehind` keeps the data in memory and writes it back from a worker thread, at most once per
  `interval` (a second): every change made in between is coalesced into the next write, so a hundred
  changes a second cost one write, and the proxy's loop only pays for serialising one snapshot. Outside
  an event loop (scripts, tests) it writes at once. A crash can lose the last second of changes, never
  the file; closing writes what is pending.
- `TinyPoolStore` is what the pool keeps: conversations and the prefill targets. Only the running tool
  opens the file; scripts use the tool's API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import tempfile
import threading
import time
from typing import Any

from tinydb import Query, TinyDB
from tinydb.middlewares import Middleware
from tinydb.storages import MemoryStorage, Storage
from tinydb.table import Document

log = logging.getLogger(__name__)


class AtomicJSONStorage(Storage):
    def __init__(self, path: str, **kwargs: Any) -> None:
        self.path = os.path.abspath(path)
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        self._kwargs = kwargs
        self._tmp_prefix = "." + os.path.basename(self.path) + ".tmp-"
        self._lock = threading.Lock()  # one write at a time
        self._version = 0  # of what is in the file: an older snapshot never replaces a newer one
        # a crash between writing and renaming leaves a temporary file: the real file is intact
        for name in os.listdir(directory):
            if name.startswith(self._tmp_prefix):
                try:
                    os.unlink(os.path.join(directory, name))
                except OSError:
                    pass

    def read(self) -> dict[str, dict[str, Any]] | None:
        try:
            with open(self.path, encoding="utf-8") as fh:
                text = fh.read()
        except FileNotFoundError:
            return None
        if not text.strip():
            return None
        return json.loads(text)

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self.write_text(json.dumps(data, ensure_ascii=False, **self._kwargs))

    def write_text(self, text: str, version: int | None = None) -> bool:
        """The file's whole new content, atomically. Safe to call from any thread. With a version, a
        snapshot older than the one already written is skipped (False)."""
        directory = os.path.dirname(self.path)
        with self._lock:
            if version is not None:
                if version <= self._version:
                    return False
                self._version = version
            fd, tmp = tempfile.mkstemp(prefix=self._tmp_prefix, dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    fh.write(text)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
                raise
        return True

    def close(self) -> None:
        pass


class WriteBehind(Middleware):
    """TinyDB middleware: reads once, then serves from memory; writes go to a worker thread."""

    def __init__(self, storage_cls: type[Storage] = AtomicJSONStorage, interval: float = 1.0) -> None:
        super().__init__(storage_cls)
        self.interval = interval  # seconds between two writes of the file
        self._data: dict[str, dict[str, Any]] | None = None
        self._changes = 0  # how many changes were made
        self._saved = 0  # how many of them are in the file
        self._last_write = -math.inf
        self._task: asyncio.Task[None] | None = None
        self.file_writes = 0  # for tests and the benchmark: how many times the file was written

    def read(self) -> dict[str, dict[str, Any]] | None:
        if self._data is None:
            self._data = self.storage.read()
        return self._data

    def write(self, data: dict[str, dict[str, Any]]) -> None:
        self._data = data
        self._changes += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()  # no loop to hand the work to: write now
            return
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._write_back())

    async def _write_back(self) -> None:
        while self._saved < self._changes:
            wait = self._last_write + self.interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # changes made meanwhile go into the same write
            version, text = self._changes, self._snapshot()  # on the loop: no change interleaves
            try:
                await asyncio.to_thread(self._write_text, text, version)
            except OSError as e:  # a full disk must not break serving; the next change tries again
                log.warning("cannot write the pool file %s: %s", getattr(self.storage, "path", "?"), e)
                return

    def _snapshot(self) -> str:
        return json.dumps(self._data or {}, ensure_ascii=False)

    def _write_text(self, text: str, version: int) -> None:
        self._last_write = time.monotonic()
        write_text = getattr(self.storage, "write_text", None)
        if write_text is None:
            self.storage.write(json.loads(text))
        elif not write_text(text, version):
            return  # a newer snapshot is already in the file
        self._saved = max(self._saved, version)
        self.file_writes += 1

    def flush(self) -> None:
        """Write what is pending now, in this thread."""
        if self._saved < self._changes:
            self._write_text(self._snapshot(), self._changes)

    async def drain(self) -> None:
        """Stop waiting for the next write time and write what is pending now (at shutdown). A write
        still running in the worker thread finishes; being older, it cannot replace this one."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.flush()

    def close(self) -> None:
        self.flush()
        self.storage.close()


class TinyPoolStore:
    """The pool's records in a TinyDB file (or in memory with `path=None`)."""

    def __init__(self, path: str | None, write_interval: float = 1.0) -> None:
        self._query = Query()
        self.writer: WriteBehind | None = None
        if path:
            self.writer = WriteBehind(AtomicJSONStorage, interval=write_interval)
            self.db = TinyDB(path, storage=self.writer)
        else:
            self.db = TinyDB(storage=MemoryStorage)
        self.table = self.db.table("conversations")
        self.mirrors = self.db.table("mirrors")  # client conversations (hashes only)
        self._doc_ids: dict[str, int] = {}  # session id -> TinyDB document id, so a save needs no search
        self._mirror_ids: dict[str, int] = {}

    def load(self) -> list[dict[str, Any]]:
        docs = self.table.all()
        self._doc_ids = {str(d["session_id"]): d.doc_id for d in docs if "session_id" in d}
        return [dict(d) for d in docs]

    def save(self, record: dict[str, Any]) -> None:
        doc_id = self._doc_ids.get(record["session_id"])
        if doc_id is None:
            self._doc_ids[record["session_id"]] = self.table.insert(record)
        else:
            self.table.upsert(Document(record, doc_id=doc_id))

    def delete(self, session_id: str) -> None:
        doc_id = self._doc_ids.pop(session_id, None)
        if doc_id is not None:
            self.table.remove(doc_ids=[doc_id])

    def load_mirrors(self) -> list[dict[str, Any]]:
        docs = self.mirrors.all()
        self._mirror_ids = {str(d["key"]): d.doc_id for d in docs if "key" in d}
        return [dict(d) for d in docs]

    def save_mirror(self, record: dict[str, Any]) -> None:
        doc_id = self._mirror_ids.get(record["key"])
        if doc_id is None:
            self._mirror_ids[record["key"]] = self.mirrors.insert(record)
        else:
            self.mirrors.upsert(Document(record, doc_id=doc_id))

    def delete_mirror(self, key: str) -> None:
        doc_id = self._mirror_ids.pop(key, None)
        if doc_id is not None:
            self.mirrors.remove(doc_ids=[doc_id])

    def load_targets(self) -> list[str]:
        return list(self.load_setting("targets") or [])

    def save_targets(self, models: list[str]) -> None:
        self.save_setting("targets", models)

    def load_setting(self, key: str) -> Any:
        row = self.db.table("settings").get(self._query.key == key)
        return row.get("value", row.get("models")) if row else None  # type: ignore[union-attr]

    def save_setting(self, key: str, value: Any) -> None:
        self.db.table("settings").upsert({"key": key, "value": value}, self._query.key == key)

    async def drain(self) -> None:
        if self.writer is not None:
            await self.writer.drain()

    def close(self) -> None:
        self.db.close()
