"""Why a token was refused, from the page's report of it."""

from __future__ import annotations

from relay.recaptcha import diagnose

SITE_KEY = "6LeTGMcsAAAAALuIlkVwIxaAuZA8VledA6d3Nnb0"
OLD_KEY = "6Led_uYrAAAAAKjxDIF58fgFtX3t8loNAK85bW9I"


def test_each_reason():
    fresh = {"key": SITE_KEY, "source": "script", "mintedAt": 1_000, "sentAt": 1_200}
    assert diagnose(None, SITE_KEY)[0] == "unknown"
    assert diagnose({"key": SITE_KEY, "source": "script", "error": "timeout"}, SITE_KEY)[0] == "no_token"
    assert diagnose({**fresh, "key": OLD_KEY, "source": "option"}, SITE_KEY)[0] == "wrong_key"
    assert "arena_recaptcha_sitekey" in diagnose({**fresh, "key": OLD_KEY, "source": "option"}, SITE_KEY)[1]
    assert diagnose({**fresh, "source": "fallback"}, None)[0] == "wrong_key"
    assert diagnose({**fresh, "sentAt": 1_000 + 130_000}, SITE_KEY)[0] == "expired"
    reason, advice = diagnose(fresh, SITE_KEY)
    assert reason == "low_score" and "by hand" in advice
    assert diagnose({**fresh, "source": "option"}, SITE_KEY)[0] == "low_score", "the option agrees with the site"
