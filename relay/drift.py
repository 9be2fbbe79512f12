"""What the site did that the site module does not know, recorded by shape (never content): a stream
line code not in its table, an error it could not classify. Each shape is counted, with the first and
last time it was seen, and logged once."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Shape:
    kind: str  # stream_line | error_status | ...
    shape: str
    count: int
    first_seen: float
    last_seen: float


class DriftLog:
    def __init__(self, limit: int = 500) -> None:
        self.shapes: dict[tuple[str, str], Shape] = {}
        self.limit = limit  # a site gone mad must not fill the memory

    def note(self, kind: str, shape: str) -> None:
        now = time.time()
        key = (kind, shape[:300])
        known = self.shapes.get(key)
        if known is not None:
            known.count += 1
            known.last_seen = now
            return
        if len(self.shapes) >= self.limit:
            return
        self.shapes[key] = Shape(kind, key[1], 1, now, now)
        log.warning("the site sent something this tool does not know (%s): %s", kind, key[1])

    def describe(self) -> list[dict[str, Any]]:
        return [asdict(s) for s in sorted(self.shapes.values(), key=lambda s: -s.last_seen)]
