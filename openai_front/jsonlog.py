"""Request and error logs as JSON lines, rotated by size (`requests.jsonl`, `requests.jsonl.1`, ...).

Records hold what locates a failure (model, conversation, strategy, times, status, error and where it came
from), never a cookie, token or API key: none of those ever enters a RequestRecord.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from openai_front.requestlog import RequestRecord

log = logging.getLogger(__name__)


class RotatingJsonLines:
    def __init__(self, path: str, max_bytes: int = 20 * 1024 * 1024, backups: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        try:
            if os.path.exists(self.path) and os.path.getsize(self.path) + len(line) > self.max_bytes:
                self._rotate()
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError as e:  # a full disk must not break serving
            log.warning("cannot write %s: %s", self.path, e.strerror)

    def _rotate(self) -> None:
        for index in range(self.backups - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")


class RequestJournal:
    """Every finished request in requests.jsonl; failed ones also in errors.jsonl."""

    def __init__(self, directory: str, max_bytes: int, backups: int = 5) -> None:
        self.requests = RotatingJsonLines(os.path.join(directory, "requests.jsonl"), max_bytes, backups)
        self.errors = RotatingJsonLines(os.path.join(directory, "errors.jsonl"), max_bytes, backups)

    def __call__(self, record: RequestRecord) -> None:
        entry = record.to_dict()
        entry["logged_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if record.ended_at is not None:
            entry["duration"] = round(record.ended_at - record.queued_at, 4)
        self.requests.write(entry)
        if record.status != 200:
            self.errors.write(entry)
