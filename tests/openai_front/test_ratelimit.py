"""The per-client rate limit."""

from __future__ import annotations

import pytest

from openai_front.ratelimit import RateLimiter


def test_rate_limiter_window():
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.check("a") is None and limiter.check("a") is None
    assert limiter.check("a") == pytest.approx(60.0)
    assert limiter.check("b") is None, "clients are counted apart"
    now[0] = 60.5
    assert limiter.check("a") is None
