"""Recent requests, in memory: what the dashboard, the API and the tests read."""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass, field, fields
from typing import Any, Callable

_ids = itertools.count(1)


@dataclass
class RequestRecord:
    model: str
    stream: bool
    id: int = field(default_factory=lambda: next(_ids))
    queued_at: float = field(default_factory=time.time)
    leased_at: float | None = None
    first_token_at: float | None = None
    ended_at: float | None = None
    status: int | None = None  # HTTP status, or the status of the in-band error
    error: str | None = None
    error_source: str | None = None
    conversation: str | None = None
    attempts: int = 0
    # how it was sent: retry | continue (pooled conversation) | fresh (new conversation) | mirror/...;
    # None while (and if) it never reached the site
    strategy: str | None = None
    canary: bool = False  # the tool's own check, not a client's request
    side_call: str | None = None  # a client's side call (a title, tags...): which kind (relay/sidecalls.py)
    codes: list[str] | None = None  # a failed request: its answer's last line codes (never their content)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "listeners"}

    listeners: list[Callable[[RequestRecord], None]] = field(default_factory=list, repr=False)

    def close(
        self, status: int, error: str | None = None, source: str | None = None, at: float | None = None
    ) -> None:
        """The request is over (once): its outcome goes to the listeners (monitor, JSON-lines log)."""
        if self.ended_at is not None:
            return
        self.ended_at = time.time() if at is None else at
        self.status = status
        self.error = error
        self.error_source = source
        for listener in self.listeners:
            listener(self)


class RequestLog:
    def __init__(self, size: int = 1000) -> None:
        self._recent: deque[RequestRecord] = deque(maxlen=size)
        self.listeners: list[Callable[[RequestRecord], None]] = []

    def start(self, model: str, stream: bool) -> RequestRecord:
        record = RequestRecord(model, stream, listeners=self.listeners)
        self._recent.append(record)
        return record

    def find(self, request_id: int) -> RequestRecord | None:
        return next((r for r in self._recent if r.id == request_id), None)

    def recent(self, limit: int = 100, model: str | None = None) -> list[dict[str, Any]]:
        rows = [r for r in self._recent if model is None or r.model == model]
        return [r.to_dict() for r in rows[-limit:]]

    def in_flight(self) -> list[RequestRecord]:
        return [r for r in self._recent if r.ended_at is None]
