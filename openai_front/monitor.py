"""What the dashboard, /metrics and the console show: built from the request log, the pool, the pages
and the strategy. Pure views over the services, plus a compact history of finished requests (a day)."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from openai_front.pages import ADVICE
from openai_front.requestlog import RequestRecord
from openai_front.services import Services

DAY = 86400.0
HOUR = 3600.0
# Prometheus histogram buckets, seconds
BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@dataclass(frozen=True)
class Finished:
    at: float
    model: str
    status: int
    ttft: float | None
    total: float
    waited: float


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Monitor:
    def __init__(self, services: Services, clock: Callable[[], float] = time.time) -> None:
        self.s = services
        self.clock = clock
        self.history: deque[Finished] = deque()
        self.started = clock()
        # cumulative, for Prometheus counters and histograms
        self.counts: dict[tuple[str, int], int] = {}
        self.hist: dict[tuple[str, str], list[int]] = {}  # (metric, model) -> bucket counts + [count]
        self.sums: dict[tuple[str, str], float] = {}
        services.requests.listeners.append(self.record)

    def record(self, r: RequestRecord) -> None:
        if r.canary or r.ended_at is None:
            return
        total = r.ended_at - r.queued_at
        ttft = r.first_token_at - r.queued_at if r.first_token_at else None
        waited = (r.leased_at - r.queued_at) if r.leased_at else total
        self.history.append(Finished(r.ended_at, r.model, r.status or 0, ttft, total, waited))
        self._prune()
        key = (r.model, r.status or 0)
        self.counts[key] = self.counts.get(key, 0) + 1
        self._observe("request_duration_seconds", r.model, total)
        if ttft is not None:
            self._observe("time_to_first_token_seconds", r.model, ttft)

    def _observe(self, metric: str, model: str, value: float) -> None:
        counts = self.hist.setdefault((metric, model), [0] * (len(BUCKETS) + 1))
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                counts[i] += 1
        counts[-1] += 1
        self.sums[(metric, model)] = self.sums.get((metric, model), 0.0) + value

    def _prune(self) -> None:
        cutoff = self.clock() - DAY
        while self.history and self.history[0].at < cutoff:
            self.history.popleft()

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        self._prune()
        pool = self.s.pool.stats()
        models: dict[str, dict[str, Any]] = {}
        for name, counts in pool.items():
            models[name] = {**counts, "served": 0, "errors": 0, "ttft_p50": None, "ttft_p95": None,
                            "total_p50": None, "total_p95": None}
        by_model: dict[str, list[Finished]] = {}
        for f in self.history:
            by_model.setdefault(f.model, []).append(f)
        for name, done in by_model.items():
            empty: dict[str, Any] = {"total": 0, "idle": 0, "busy": 0, "cooling": 0, "retired": 0, "waiting": 0}
            row = models.setdefault(name, empty)
            ok = [f for f in done if f.status == 200]
            ttfts = [f.ttft for f in ok if f.ttft is not None]
            row.update(
                served=len(ok),
                errors=len(done) - len(ok),
                ttft_p50=percentile(ttfts, 0.5),
                ttft_p95=percentile(ttfts, 0.95),
                total_p50=percentile([f.total for f in ok], 0.5),
                total_p95=percentile([f.total for f in ok], 0.95),
            )
        totals = {}
        for label, span in (("hour", HOUR), ("day", DAY)):
            recent = [f for f in self.history if f.at >= now - span]
            totals[label] = {"requests": len(recent), "errors": sum(1 for f in recent if f.status != 200)}
        in_flight = [
            {"id": r.id, "model": r.model, "age": now - r.queued_at, "stream": r.stream,
             "waiting": r.leased_at is None, "waited": (r.leased_at or now) - r.queued_at,
             "conversation": r.conversation, "strategy": r.strategy}
            for r in self.s.requests.in_flight() if not r.canary
        ]
        return {
            "time": now,
            "uptime": now - self.started,
            "health": self.s.health()["status"],
            "lang": self.s.settings.lang,
            "pages": [p.describe() for p in self.s.pages.pages.values()],
            "strategy": self.s.strategy.describe(),
            "models": dict(sorted(models.items())),
            "totals": totals,
            "in_flight": in_flight,
        }

    # ------------------------------------------------------------------ prometheus

    def prometheus(self) -> str:
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            lines.append(f"# HELP lmarena_{name} {help_text}")
            lines.append(f"# TYPE lmarena_{name} {kind}")

        family("requests_total", "counter", "Finished requests by model and HTTP status.")
        for (model, status), count in sorted(self.counts.items()):
            lines.append(f'lmarena_requests_total{{model="{_esc(model)}",status="{status}"}} {count}')
        for metric, help_text in (("request_duration_seconds", "Request time, from arrival to the last byte."),
                                  ("time_to_first_token_seconds", "Time from arrival to the first answer token.")):
            family(metric, "histogram", help_text)
            for (name, model), counts in sorted(self.hist.items()):
                if name != metric:
                    continue
                label = f'model="{_esc(model)}"'
                for bound, count in zip(BUCKETS, counts):
                    lines.append(f'lmarena_{metric}_bucket{{{label},le="{bound}"}} {count}')
                lines.append(f'lmarena_{metric}_bucket{{{label},le="+Inf"}} {counts[-1]}')
                lines.append(f"lmarena_{metric}_sum{{{label}}} {self.sums[(metric, model)]:.6f}")
                lines.append(f"lmarena_{metric}_count{{{label}}} {counts[-1]}")
        family("pool_conversations", "gauge", "Pooled conversations by model and state.")
        family_waiting: list[str] = []
        for model, row in sorted(self.s.pool.stats().items()):
            for state in ("idle", "busy", "cooling", "retired"):
                shown = "ready" if state == "idle" else state
                lines.append(f'lmarena_pool_conversations{{model="{_esc(model)}",state="{shown}"}} {row[state]}')
            family_waiting.append(f'lmarena_queue_waiting{{model="{_esc(model)}"}} {row["waiting"]}')
        family("queue_waiting", "gauge", "Requests waiting for a conversation, by model.")
        lines.extend(family_waiting)
        family("pages", "gauge", "Connected LMArena pages by state.")
        states: dict[str, int] = {s: 0 for s in ADVICE}
        for page in self.s.pages.pages.values():
            states[page.state] = states.get(page.state, 0) + 1
        for state, count in sorted(states.items()):
            lines.append(f'lmarena_pages{{state="{state}"}} {count}')
        family("requests_in_flight", "gauge", "Requests being served or waiting.")
        lines.append(f"lmarena_requests_in_flight {sum(1 for r in self.s.requests.in_flight() if not r.canary)}")
        family("canary_ok", "gauge", "1 when the last canary found a working strategy, 0 when not, -1 before any.")
        canary = self.s.strategy.canary
        lines.append(f"lmarena_canary_ok {-1 if canary is None else int(bool(canary.get('ok')))}")
        family("strategy", "gauge", "The strategy requests use now (1) among retry, continue and fresh.")
        for name in ("retry", "continue", "fresh"):
            lines.append(f'lmarena_strategy{{strategy="{name}"}} {int(self.s.strategy.current == name)}')
        return "\n".join(lines) + "\n"


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
