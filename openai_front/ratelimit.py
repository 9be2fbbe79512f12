"""An optional per-client request rate limit (lmarena2api users know it): N requests a minute."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable


class RateLimiter:
    WINDOW = 60.0

    def __init__(self, per_minute: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def check(self, client: str) -> float | None:
        """Count a request of `client`; None when allowed, else seconds until it would be."""
        if self.per_minute <= 0:
            return None
        now = self._clock()
        seen = self._seen.setdefault(client, deque())
        while seen and seen[0] <= now - self.WINDOW:
            seen.popleft()
        if len(seen) >= self.per_minute:
            return seen[0] + self.WINDOW - now
        seen.append(now)
        if len(self._seen) > 10_000:  # forget idle clients
            for key in [k for k, v in self._seen.items() if not v or v[-1] <= now - self.WINDOW]:
                del self._seen[key]
        return None
