"""What the dashboard, /metrics and the console show: built from the request log, the pool, the pages
and the strategy. Views over the services, a compact history of finished requests (a day), and the
Prometheus registry (counters and histograms fed as requests end; gauges read when scraped)."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from pool_store.pool import SHOWN_STATES, empty_stats
from relay.pages import ADVICE
from relay.requestlog import RequestRecord
from relay.services import Services
from relay.settings import Strategy
from relay.stats import percentile

DAY = 86400.0
HOUR = 3600.0
POOL_SAMPLE = 30.0  # seconds between two samples of the pool for its plot
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


class Monitor:
    def __init__(self, services: Services, clock: Callable[[], float] = time.time) -> None:
        self.services = services
        self.clock = clock
        self.history: deque[Finished] = deque()
        self.started = clock()
        self.registry = CollectorRegistry()
        self.requests_total = Counter(
            "lmarena_requests", "Finished requests by model and HTTP status.", ["model", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "lmarena_request_duration_seconds", "Request time, from arrival to the last byte.", ["model"],
            buckets=BUCKETS, registry=self.registry,
        )
        self.ttft = Histogram(
            "lmarena_time_to_first_token_seconds", "Time from arrival to the first answer token.", ["model"],
            buckets=BUCKETS, registry=self.registry,
        )
        self.registry.register(_StateCollector(services))
        # the pool per model over the last hour, sampled at most every POOL_SAMPLE seconds (when requests end
        # and when a dashboard looks): time, {model: (ready, busy)}
        self.pool_samples: deque[tuple[float, dict[str, tuple[int, int]]]] = deque()

    def record(self, r: RequestRecord) -> None:
        """A request ended (a listener of the request log)."""
        if r.canary or r.ended_at is None:
            return
        total = r.ended_at - r.queued_at
        ttft = r.first_token_at - r.queued_at if r.first_token_at else None
        waited = (r.leased_at - r.queued_at) if r.leased_at else total
        self.history.append(Finished(r.ended_at, r.model, r.status or 0, ttft, total, waited))
        self._prune()
        self._sample_pool(self.clock())
        self.requests_total.labels(r.model, str(r.status or 0)).inc()
        self.duration.labels(r.model).observe(total)
        if ttft is not None:
            self.ttft.labels(r.model).observe(ttft)

    def _prune(self) -> None:
        cutoff = self.clock() - DAY
        while self.history and self.history[0].at < cutoff:
            self.history.popleft()

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        self._prune()
        services = self.services
        in_flight = [
            {"id": r.id, "model": r.model, "age": now - r.queued_at, "stream": r.stream,
             "waiting": r.leased_at is None, "waited": (r.leased_at or now) - r.queued_at,
             "conversation": r.conversation, "strategy": r.strategy}
            for r in services.requests.in_flight() if not r.canary
        ]
        return {
            "time": now,
            "uptime": now - self.started,
            "health": services.health()["status"],
            "lang": services.settings.lang,
            "pages": [p.describe() for p in services.pages.pages.values()],
            "strategy": services.strategy.describe(),
            "models": self._models(),
            "totals": self._totals(now),
            "in_flight": in_flight,
            "clients": services.mirrors.describe()[:50],  # the client conversations mirroring serves, newest first
            "series": self.series(now),
            "drift": services.drift.describe()[:50],
        }

    def _sample_pool(self, now: float) -> None:
        if self.pool_samples and now - self.pool_samples[-1][0] < POOL_SAMPLE:
            return
        stats = self.services.pool.stats()
        self.pool_samples.append((now, {m: (r["ready"], r["busy"]) for m, r in stats.items() if r["total"]}))
        while self.pool_samples and self.pool_samples[0][0] < now - HOUR:
            self.pool_samples.popleft()

    def series(self, now: float) -> dict[str, Any]:
        """The last hour minute by minute, for the dashboard's plots: requests, errors, time to first token
        (p50, p95), and the pool per model (ready and busy conversations) as sampled."""
        self._sample_pool(now)
        start = int(now // 60) * 60 - 59 * 60
        buckets: list[list[Finished]] = [[] for _ in range(60)]
        for f in self.history:
            index = int((f.at - start) // 60)
            if 0 <= index < 60:
                buckets[index].append(f)
        ttfts = [[f.ttft for f in b if f.status == 200 and f.ttft is not None] for b in buckets]
        return {
            "start": start,
            "requests": [len(b) for b in buckets],
            "errors": [sum(1 for f in b if f.status != 200) for b in buckets],
            "ttft_p50": [percentile(t, 0.5) for t in ttfts],
            "ttft_p95": [percentile(t, 0.95) for t in ttfts],
            "pool": [{"at": at, "models": {m: {"ready": r, "busy": b} for m, (r, b) in models.items()}}
                     for at, models in self.pool_samples],
        }

    def _models(self) -> dict[str, dict[str, Any]]:
        """Per model: the pool's counts, its client conversations, and what was served in the last day with
        its latencies."""
        models: dict[str, dict[str, Any]] = {}

        def row(name: str) -> dict[str, Any]:
            return models.setdefault(name, {**empty_stats(), "clients": 0, "served": 0, "errors": 0,
                                            "ttft_p50": None, "ttft_p95": None, "total_p50": None, "total_p95": None})

        for name, counts in self.services.pool.stats().items():
            row(name).update(counts)
        for client in self.services.mirrors.records.values():
            row(client.model)["clients"] += 1
        by_model: dict[str, list[Finished]] = {}
        for f in self.history:
            by_model.setdefault(f.model, []).append(f)
        for name, done in by_model.items():
            ok = [f for f in done if f.status == 200]
            ttfts = [f.ttft for f in ok if f.ttft is not None]
            row(name).update(
                served=len(ok),
                errors=len(done) - len(ok),
                ttft_p50=percentile(ttfts, 0.5),
                ttft_p95=percentile(ttfts, 0.95),
                total_p50=percentile([f.total for f in ok], 0.5),
                total_p95=percentile([f.total for f in ok], 0.95),
            )
        return dict(sorted(models.items()))

    def _totals(self, now: float) -> dict[str, dict[str, int]]:
        totals = {}
        for label, span in (("hour", HOUR), ("day", DAY)):
            recent = [f for f in self.history if f.at >= now - span]
            totals[label] = {"requests": len(recent), "errors": sum(1 for f in recent if f.status != 200)}
        return totals

    # ------------------------------------------------------------------ prometheus

    def prometheus(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector:
    """Gauges read from the services at scrape time: the pool, the queue, pages, the strategy."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        services = self.services
        pool = GaugeMetricFamily("lmarena_pool_conversations", "Pooled conversations by model and state.",
                                 labels=["model", "state"])
        waiting = GaugeMetricFamily("lmarena_queue_waiting", "Requests waiting for a conversation, by model.",
                                    labels=["model"])
        for model, row in sorted(services.pool.stats().items()):
            for state in SHOWN_STATES:
                pool.add_metric([model, state], row[state])
            waiting.add_metric([model], row["waiting"])
        yield pool
        yield waiting
        clients = GaugeMetricFamily("lmarena_client_conversations",
                                    "Client conversations mirroring serves, by model.", labels=["model"])
        per_model: dict[str, int] = {}
        for client in services.mirrors.records.values():
            per_model[client.model] = per_model.get(client.model, 0) + 1
        for model, count in sorted(per_model.items()):
            clients.add_metric([model], count)
        yield clients
        pages = GaugeMetricFamily("lmarena_pages", "Connected LMArena pages by state.", labels=["state"])
        states: dict[str, int] = {s: 0 for s in ADVICE}
        for page in services.pages.pages.values():
            states[page.state] = states.get(page.state, 0) + 1
        for state, count in sorted(states.items()):
            pages.add_metric([state], count)
        yield pages
        yield GaugeMetricFamily("lmarena_requests_in_flight", "Requests being served or waiting.",
                                value=sum(1 for r in services.requests.in_flight() if not r.canary))
        canary = services.strategy.canary
        yield GaugeMetricFamily("lmarena_canary_ok",
                                "1 when the last canary found a working strategy, 0 when not, -1 before any.",
                                value=-1 if canary is None else int(bool(canary.get("ok"))))
        strategy = GaugeMetricFamily("lmarena_strategy", "The strategy requests use now (1).", labels=["strategy"])
        for name in Strategy:
            strategy.add_metric([str(name)], int(services.strategy.current == name))
        yield strategy
