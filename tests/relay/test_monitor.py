"""The monitor's numbers and its Prometheus text."""

from __future__ import annotations

import pytest

from pool_store.pool import Conversation
from relay.core import assemble
from relay.monitor import Monitor
from relay.pages import Page
from relay.services import Services
from relay.stats import percentile


def finished(s: Services, model: str, status: int, ttft: float | None, total: float, at: float) -> None:
    record = s.requests.start(model, True)
    record.queued_at = record.leased_at = at
    record.first_token_at = at + ttft if ttft is not None else None
    record.close(status, at=at + total)


def test_snapshot_counts_percentiles_and_totals():
    now = [100_000.0]
    s = Services()
    monitor = Monitor(s, clock=lambda: now[0])
    s.requests.listeners.append(monitor.record)
    s.pages.pages["p"] = Page("p", "user:1", "https://lmarena.ai/", "ready")
    s.pool.upsert(Conversation("c1", "m1", "gemini-2.5-pro", identity="user:1"))
    for i, ttft in enumerate([0.1, 0.2, 0.3, 0.4]):
        finished(s, "gemini-2.5-pro", 200, ttft, 1.0 + i, now[0] - 10)
    finished(s, "gemini-2.5-pro", 502, None, 0.5, now[0] - 10)
    finished(s, "gpt-5-high", 200, 0.2, 1.0, now[0] - 7200)  # two hours ago: in the day, not the hour
    snap = monitor.snapshot()
    row = snap["models"]["gemini-2.5-pro"]
    assert (row["served"], row["errors"], row["ready"]) == (4, 1, 1)
    assert row["ttft_p50"] == pytest.approx(0.2) and row["ttft_p95"] == pytest.approx(0.4)
    assert row["total_p50"] == pytest.approx(2.0)
    assert snap["totals"] == {"hour": {"requests": 5, "errors": 1}, "day": {"requests": 6, "errors": 1}}
    assert snap["pages"][0]["state"] == "ready"
    now[0] += 86400  # a day later everything has aged out
    assert monitor.snapshot()["totals"]["day"]["requests"] == 0


def test_prometheus_text():
    core = assemble()
    s = core.services
    s.pool.upsert(Conversation("c1", "m1", "gemini-2.5-pro"))
    record = s.requests.start("gemini-2.5-pro", False)
    record.first_token_at = record.queued_at + 0.3
    record.close(200)
    text = core.monitor.prometheus().decode()
    assert 'lmarena_requests_total{model="gemini-2.5-pro",status="200"} 1.0' in text
    assert 'lmarena_time_to_first_token_seconds_bucket{le="0.5",model="gemini-2.5-pro"} 1.0' in text
    assert 'lmarena_time_to_first_token_seconds_bucket{le="0.25",model="gemini-2.5-pro"} 0.0' in text
    assert 'lmarena_pool_conversations{model="gemini-2.5-pro",state="ready"} 1.0' in text
    assert "lmarena_canary_ok -1.0" in text and 'lmarena_strategy{strategy="retry"} 1.0' in text
    assert "# TYPE lmarena_request_duration_seconds histogram" in text
    for line in text.splitlines():
        assert line.startswith("#") or line.startswith("lmarena_"), line


def test_percentile():
    assert percentile([], 0.5) is None
    assert percentile([3, 1, 2], 0.5) == 2 and percentile([1, 2, 3, 4], 0.95) == 4


def test_the_last_hour_minute_by_minute_for_the_plots():
    now = [36_000.0 + 30]  # half a minute into a minute
    s = Services()
    monitor = Monitor(s, clock=lambda: now[0])
    s.requests.listeners.append(monitor.record)
    s.pool.upsert(Conversation("c1", "m1", "gemini-2.5-pro", identity="user:1"))
    finished(s, "gemini-2.5-pro", 200, 0.1, 1.0, now[0] - 1)  # this minute
    finished(s, "gemini-2.5-pro", 200, 0.3, 1.0, now[0] - 2)
    finished(s, "gemini-2.5-pro", 502, None, 1.0, now[0] - 600)  # ten minutes ago
    finished(s, "gemini-2.5-pro", 200, 0.2, 1.0, now[0] - 7200)  # before the hour: not plotted
    series = monitor.snapshot()["series"]
    assert len(series["requests"]) == 60 and sum(series["requests"]) == 3
    assert series["requests"][-1] == 2 and series["errors"][-11] == 1
    assert series["ttft_p50"][-1] == pytest.approx(0.1) and series["ttft_p95"][-1] == pytest.approx(0.3)
    assert series["ttft_p50"][-11] is None, "a minute with only errors has no time to first token"
    assert series["pool"][-1]["models"] == {"gemini-2.5-pro": {"ready": 1, "busy": 0}}
    now[0] += 3600 * 2
    assert monitor.snapshot()["series"]["pool"][0]["at"] >= now[0] - 3600, "samples older than an hour go"
