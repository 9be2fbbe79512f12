"""The bug report (relay/report.py): what it keeps, and that no id, token, cookie, key or message text
planted anywhere in the tool's state survives into it."""

from __future__ import annotations

import json
import time

from relay import report
from relay.pages import Page
from relay.services import Services
from relay.settings import Settings

SESSION = "019a5c4d-0173-7d1e-9a4b-0d1b2c3d4e5f"
TOKEN = "03AFcWeA6bXtW0_planted-recaptcha-token-0123456789abcdefABCDEF"
COOKIE = "base64-eyJhY2Nlc3NfdG9rZW4iOiJwbGFudGVkIn0"
KEY = "sk-planted-api-key-9f8e7d6c"
TEXT = "PLANTED MESSAGE TEXT about my secret plans"
EMAIL = "person@example.org"


def planted() -> Services:
    services = Services(Settings())
    services.pages.pages["p1"] = Page("p1", f"user:{SESSION}", f"https://arena.ai/c/{SESSION}", "ready",
                                      sitekey="6LeTGMcsAAAAALuIlkVwIxaAuZA8VledA6d3Nnb0", sitekey_source="script")
    failed = services.requests.start("gemini-2.5-pro", True)
    failed.conversation, failed.strategy, failed.codes = SESSION, "mirror/continue", ["a2", "a0", "a3"]
    failed.close(502, f"LMArena: the answer failed: provider said '{TEXT}' for {EMAIL} token {TOKEN}", "upstream")
    ok = services.requests.start("gemini-2.5-pro", False)
    ok.first_token_at = ok.queued_at + 0.4
    ok.close(200)
    services.drift.note("stream_line", f"a9 with a list of 3 (session {SESSION})")
    services.drift.note("error_status", f'418 {{"detail": "{TEXT}"}} cookie: arena-auth-prod-v1={COOKIE}')
    return services


def test_nothing_secret_or_written_by_a_person_survives():
    services = planted()
    doctor = {"ok": False, "checks": [{"link": "page", "status": "broken",
                                       "detail": f"the page https://arena.ai/c/{SESSION} sent cookie: {COOKIE}"}]}
    options = {"arena_api_key": KEY, "arena_strategy": "auto", "arena_store": "data/pool.json",
               "arena_recaptcha_sitekey": ""}
    text = json.dumps(report.build(services, doctor, options), ensure_ascii=False)
    for secret in (SESSION, TOKEN, COOKIE, KEY, "PLANTED", "secret plans", EMAIL):
        assert secret not in text, f"{secret!r} is in the report"


def test_what_a_bug_report_needs_is_kept():
    services = planted()
    built = report.build(services, {"ok": True, "checks": []}, {"arena_api_key": KEY, "arena_strategy": "auto"})
    assert built["options"] == {"arena_api_key": "(set)", "arena_strategy": "auto"}
    assert built["versions"]["python"] and built["versions"]["mitmproxy"] != "(not installed)"
    assert {d["kind"] for d in built["drift"]} == {"stream_line", "error_status"}
    failed, ok = built["requests"]
    assert (failed["status"], failed["error_source"], failed["strategy"]) == (502, "upstream", "mirror/continue")
    assert failed["error"] == "LMArena: the answer failed: …"
    assert ok["status"] == 200 and ok["ttft"] == 0.4
    assert built["failures"] == [{"id": failed["id"], "status": 502, "error_source": "upstream",
                                  "codes": ["a2", "a0", "a3"]}]
    assert built["pages"] == [{"state": "ready", "host": "arena.ai", "guest": None, "sitekey_source": "script",
                               "jobs": 0}]
    assert time.strptime(built["generated_at"], "%Y-%m-%dT%H:%M:%SZ")
