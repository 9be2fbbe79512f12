"""Request and error logs as JSON lines, rotated by size (`requests.jsonl`, `requests.jsonl.1`, ...).

The lines are written by the standard library's RotatingFileHandler in a listener thread behind a
QueueHandler, so a slow disk never stalls the proxy's event loop. Records hold what locates a failure
(model, conversation, strategy, times, status, error and who failed), never a cookie, token or API key:
none of those ever enters a RequestRecord.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from logging.handlers import QueueHandler, QueueListener, RotatingFileHandler

from relay.requestlog import RequestRecord

ERROR_FLAG = "journal_error"


class _OnlyErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return bool(getattr(record, ERROR_FLAG, False))


class RequestJournal:
    """Every finished request in requests.jsonl; failed ones also in errors.jsonl."""

    def __init__(self, directory: str, max_bytes: int, backups: int = 5) -> None:
        os.makedirs(directory, exist_ok=True)
        handlers = []
        for name, only_errors in (("requests.jsonl", False), ("errors.jsonl", True)):
            handler = RotatingFileHandler(os.path.join(directory, name), maxBytes=max_bytes, backupCount=backups,
                                          encoding="utf-8", delay=True)
            handler.setFormatter(logging.Formatter("%(message)s"))
            if only_errors:
                handler.addFilter(_OnlyErrors())
            handlers.append(handler)
        self._queue: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        # a logger of its own, outside the logging tree: these lines never reach the console
        self._logger = logging.Logger("lmarena.journal", logging.INFO)
        self._logger.addHandler(QueueHandler(self._queue))
        self._listener = QueueListener(self._queue, *handlers, respect_handler_level=False)
        self._handlers = handlers
        self._listener.start()

    def __call__(self, record: RequestRecord) -> None:
        entry = record.to_dict()
        entry["logged_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if record.ended_at is not None:
            entry["duration"] = round(record.ended_at - record.queued_at, 4)
        line = json.dumps(entry, ensure_ascii=False)
        self._logger.info("%s", line, extra={ERROR_FLAG: record.status != 200})

    def close(self) -> None:
        """Write what is queued, then close the files."""
        self._listener.stop()
        for handler in self._handlers:
            handler.close()
