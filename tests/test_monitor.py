"""The monitor's numbers, the Prometheus text, and the rotating JSON-lines logs."""

from __future__ import annotations

import json

import pytest

from openai_front.jsonlog import RequestJournal, RotatingJsonLines
from openai_front.monitor import Monitor, percentile
from openai_front.pages import Page
from openai_front.services import Services
from pool_store.pool import Conversation


def finished(s: Services, model: str, status: int, ttft: float | None, total: float, at: float) -> None:
    record = s.requests.start(model, True)
    record.queued_at = record.leased_at = at
    record.first_token_at = at + ttft if ttft is not None else None
    record.close(status, at=at + total)


def test_snapshot_counts_percentiles_and_totals():
    now = [100_000.0]
    s = Services()
    s.monitor = Monitor(s, clock=lambda: now[0])
    s.pages.pages["p"] = Page("p", "user:1", "https://lmarena.ai/", "ready")
    s.pool.upsert(Conversation("c1", "m1", "gemini-2.5-pro", identity="user:1"))
    for i, ttft in enumerate([0.1, 0.2, 0.3, 0.4]):
        finished(s, "gemini-2.5-pro", 200, ttft, 1.0 + i, now[0] - 10)
    finished(s, "gemini-2.5-pro", 502, None, 0.5, now[0] - 10)
    finished(s, "gpt-5-high", 200, 0.2, 1.0, now[0] - 7200)  # two hours ago: in the day, not the hour
    snap = s.monitor.snapshot()
    row = snap["models"]["gemini-2.5-pro"]
    assert (row["served"], row["errors"], row["idle"]) == (4, 1, 1)
    assert row["ttft_p50"] == pytest.approx(0.2) and row["ttft_p95"] == pytest.approx(0.4)
    assert row["total_p50"] == pytest.approx(2.0)
    assert snap["totals"] == {"hour": {"requests": 5, "errors": 1}, "day": {"requests": 6, "errors": 1}}
    assert snap["pages"][0]["state"] == "ready"
    now[0] += 86400  # a day later everything has aged out
    assert s.monitor.snapshot()["totals"]["day"]["requests"] == 0


def test_prometheus_text():
    s = Services()
    s.monitor = Monitor(s)
    s.pool.upsert(Conversation("c1", "m1", "gemini-2.5-pro"))
    record = s.requests.start("gemini-2.5-pro", False)
    record.first_token_at = record.queued_at + 0.3
    record.close(200)
    text = s.monitor.prometheus()
    assert 'lmarena_requests_total{model="gemini-2.5-pro",status="200"} 1' in text
    assert 'lmarena_time_to_first_token_seconds_bucket{model="gemini-2.5-pro",le="0.5"} 1' in text
    assert 'lmarena_time_to_first_token_seconds_bucket{model="gemini-2.5-pro",le="0.25"} 0' in text
    assert 'lmarena_pool_conversations{model="gemini-2.5-pro",state="ready"} 1' in text
    assert "lmarena_canary_ok -1" in text and 'lmarena_strategy{strategy="retry"} 1' in text
    for line in text.splitlines():
        assert line.startswith("#") or line.startswith("lmarena_"), line


def test_percentile():
    assert percentile([], 0.5) is None
    assert percentile([3, 1, 2], 0.5) == 2 and percentile([1, 2, 3, 4], 0.95) == 4


def test_logs_rotate_and_errors_go_to_their_own_file(tmp_path):
    lines = RotatingJsonLines(str(tmp_path / "x.jsonl"), max_bytes=200, backups=2)
    for i in range(30):
        lines.write({"i": i, "pad": "x" * 40})
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["x.jsonl", "x.jsonl.1", "x.jsonl.2"], "rotated, with two old files kept"
    assert json.loads((tmp_path / "x.jsonl").read_text().splitlines()[-1])["i"] == 29
    s = Services()
    s.requests.listeners.append(RequestJournal(str(tmp_path / "logs"), 1 << 20))
    s.requests.start("m", False).close(200)
    s.requests.start("m", False).close(503, "no page", "tool")
    requests = (tmp_path / "logs" / "requests.jsonl").read_text().splitlines()
    errors = [json.loads(line) for line in (tmp_path / "logs" / "errors.jsonl").read_text().splitlines()]
    assert len(requests) == 2 and [(e["status"], e["error_source"]) for e in errors] == [(503, "tool")]
