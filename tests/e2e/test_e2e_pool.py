"""End to end, the session pool: prefill, concurrency bounded by conversations, first come first
served, keep-alives while queued, faults (401, 429, a cut stream, a closed page, clients leaving
while queued and while streaming), a fresh conversation for an empty model, healing, identity change.

Real parts: the tool (mitmdump -s addons/bridge.py), the simulator, headless Chromium, the openai SDK.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.answers import answer_for
from simulator.stack import ROOT, Stack
from tests.conftest import open_arena_page, running_stack, wait_until

pytestmark = pytest.mark.e2e

GEMINI = "gemini-2.5-pro"
GEMINI_ID = "e2d9d353-6dbe-4414-bf87-bd289d523726"
GPT = "gpt-5-high"
PER_MODEL = 4


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("pool", "retry-honoured", cadence_ms=30, arena_prefill="off", arena_prefill_interval=0.2,
                       arena_keepalive=1, arena_queue_timeout=60, arena_sessions_per_model=PER_MODEL) as st:
        yield st


@pytest.fixture(scope="module")
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context()
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def page(stack: Stack, context: Any) -> Any:
    return open_arena_page(stack, context)


def api(stack: Stack, method: str, path: str, **kw: Any) -> Any:
    response = httpx.request(method, stack.api_base + path, timeout=30, **kw)
    return response.json()


def sim(stack: Stack, method: str, path: str, **kw: Any) -> Any:
    return httpx.request(method, stack.sim_base + path, timeout=30, **kw).json()


def sdk(stack: Stack, timeout: float = 60) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_base + "/v1", api_key="x", max_retries=0, timeout=timeout)


def pool_rows(stack: Stack, model: str) -> list[dict[str, Any]]:
    return api(stack, "GET", f"/api/pool?model={model}")["conversations"]


def states(stack: Stack, model: str) -> dict[str, str]:
    return {c["session_id"]: c["state"] for c in pool_rows(stack, model)}


def ask(stack: Stack, text: str, model: str = GEMINI) -> str:
    result = sdk(stack).chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return result.choices[0].message.content or ""


def expected(text: str, model: str = GEMINI) -> str:
    return answer_for(model, "chat", [("user", text)])[1]


@pytest.fixture(scope="module")
def prefilled(stack: Stack, page: Any) -> dict[str, Any]:
    started = httpx.post(stack.api_base + "/api/prefill", timeout=30,
                         json={"models": f"{GEMINI},{GPT}", "per_model": PER_MODEL})
    assert started.status_code == 202, started.text
    run = wait_until(lambda: (r := api(stack, "GET", "/api/prefill")["run"]) and not r["running"] and r,
                     timeout=60, what="the prefill to finish")
    return run


def test_prefill_creates_the_conversations(stack, prefilled):
    assert prefilled["created"] == 2 * PER_MODEL and prefilled["failed"] == 0
    for model in (GEMINI, GPT):
        rows = pool_rows(stack, model)
        assert len(rows) == PER_MODEL and all(c["state"] == "ready" and c["source"] == "tool" for c in rows)
    creates = [e for e in sim(stack, "GET", "/__sim/log") if e["path"].endswith("create-evaluation")]
    assert len(creates) == 2 * PER_MODEL
    assert all(e["body"]["userMessage"]["content"] == "Hi" for e in creates)
    assert all(e["body"]["recaptchaV3Token"] == "REDACTED" for e in creates), "each with its own token"


def test_the_prefill_script_lists_and_fills_through_the_api(stack, prefilled):
    script = [sys.executable, str(ROOT / "scripts" / "prefill_pool.py"), "--api", stack.api_base, "--lang", "en"]
    listing = subprocess.run(script + ["--list"], capture_output=True, text=True, timeout=60)
    assert listing.returncode == 0, listing.stderr
    assert GEMINI in listing.stderr and "Session pool" in listing.stderr
    model = "gemini-2.5-flash"
    fill = subprocess.run(script + ["--models", model, "--per-model", "2", "--message", "Hello there", "--yes"],
                          capture_output=True, text=True, timeout=120)
    assert fill.returncode == 0, fill.stderr
    assert fill.stderr.count(f"{model}: ok ") == 2 and "Prefill done: 2 created" in fill.stderr
    assert len(pool_rows(stack, model)) == 2
    creates = [e for e in sim(stack, "GET", "/__sim/log") if e["path"].endswith("create-evaluation")]
    assert [e["body"]["userMessage"]["content"] for e in creates[-2:]] == ["Hello there"] * 2
    refused = subprocess.run(script + ["--models", "no-such-model", "--yes"], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 1 and "unknown models: no-such-model" in refused.stderr


def test_twenty_concurrent_streams_use_at_most_four_conversations_first_come_first_served(stack, prefilled):
    sim(stack, "POST", "/__sim/reset")
    slow_sim(stack, 60)  # five rounds of answers: the last requests wait several keep-alive intervals
    results: dict[int, str] = {}
    comments: list[str] = []

    def one(i: int) -> None:
        text = f"request number {i}"
        if i == 19:  # the last one, read raw, to see the keep-alive comments while it waits
            with httpx.stream("POST", stack.api_base + "/v1/chat/completions", timeout=60,
                              json={"model": GEMINI, "stream": True,
                                    "messages": [{"role": "user", "content": text}]}) as response:
                lines = list(response.iter_lines())
            comments.extend(line for line in lines if line.startswith(":"))
            data = [json.loads(line[5:]) for line in lines if line.startswith("data:") and "[DONE]" not in line]
            results[i] = "".join(d["choices"][0]["delta"].get("content") or "" for d in data if d.get("choices"))
            return
        stream = sdk(stack).chat.completions.create(
            model=GEMINI, stream=True, messages=[{"role": "user", "content": text}]
        )
        results[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    threads = []
    for i in range(20):
        threads.append(threading.Thread(target=one, args=(i,)))
        threads[-1].start()
        time.sleep(0.03)  # a known order of arrival
    for t in threads:
        t.join(120)
    slow_sim(stack, 30)
    assert sorted(results) == list(range(20))
    for i, text in results.items():
        assert text == expected(f"request number {i}"), i
    stats = sim(stack, "GET", "/__sim/stats")
    assert stats["max_by_model"][GEMINI_ID] == PER_MODEL, "all four conversations worked at once, never more"
    assert max(stats["max_by_session"].values()) == 1, "never two requests on one conversation"
    rows = [r for r in api(stack, "GET", f"/api/requests?model={GEMINI}&limit=20")["requests"]]
    assert len(rows) == 20 and all(r["status"] == 200 for r in rows)
    by_arrival = sorted(rows, key=lambda r: r["queued_at"])
    leased = [r["leased_at"] for r in by_arrival]
    assert leased == sorted(leased), "served in the order they came"
    assert any(c.startswith(": waiting for a conversation") for c in comments), comments
    assert any(c.startswith(": ping") for c in comments), "periodic keep-alives while it waited"
    assert api(stack, "GET", "/healthz")["pool"][GEMINI]["busy"] == 0


def leased_conversation(stack: Stack) -> str:
    return api(stack, "GET", f"/api/requests?model={GEMINI}&limit=1")["requests"][-1]["conversation"]


def test_a_foreign_session_401_is_retired_and_the_client_still_gets_its_answer(stack, prefilled):
    target = pool_rows(stack, GEMINI)[0]["session_id"]
    body = json.dumps({"error": f"User u does not have access to evaluation session {target}"})
    sim(stack, "POST", "/__sim/fault", json={"session": target, "status": 401, "body": body})
    for i in range(PER_MODEL):
        assert ask(stack, f"after a 401, {i}") == expected(f"after a 401, {i}")
    row = next(c for c in pool_rows(stack, GEMINI) if c["session_id"] == target)
    assert row["state"] == "retired" and "401" in row["retired_reason"]
    # healing: the model is back to its target by itself
    wait_until(lambda: sum(1 for s in states(stack, GEMINI).values() if s == "ready") == PER_MODEL,
               timeout=30, what="healing back to four conversations")


def test_a_recaptcha_refusal_is_retried_with_a_fresh_token(stack, prefilled):
    sim(stack, "POST", "/__sim/reset")
    sim(stack, "POST", "/__sim/fault", json={"session": None, "status": 403,
                                            "body": '{"error":"recaptcha validation failed"}'})
    assert ask(stack, "after a token refusal") == expected("after a token refusal")
    retries = [e for e in sim(stack, "GET", "/__sim/log") if e["method"] == "PUT"]
    assert len(retries) == 2 and retries[0]["path"] == retries[1]["path"], "the same conversation, twice"
    assert all(s in ("ready", "retired") for s in states(stack, GEMINI).values())


def test_a_429_cools_the_conversation_and_is_a_429_for_the_client(stack, prefilled):
    ready = [c["session_id"] for c in pool_rows(stack, GEMINI) if c["state"] == "ready"]
    lru = min((c for c in pool_rows(stack, GEMINI) if c["session_id"] in ready), key=lambda c: c["last_used"])
    sim(stack, "POST", "/__sim/fault", json={
        "session": lru["session_id"], "status": 429, "body": '{"error":"Too many requests"}',
        "headers": {"ratelimit": "limit=3000, remaining=0, reset=20"}})
    with pytest.raises(openai.RateLimitError) as caught:
        ask(stack, "this one meets a 429")
    assert int(caught.value.response.headers["retry-after"]) >= 1
    assert states(stack, GEMINI)[lru["session_id"]] == "cooling"
    assert ask(stack, "a follow-up") == expected("a follow-up")
    assert leased_conversation(stack) != lru["session_id"]


def test_a_stream_cut_mid_way_is_an_in_band_error_and_the_conversation_stays(stack, prefilled):
    sim(stack, "POST", "/__sim/fault", json={"session": None, "cut_after": 3})
    stream = sdk(stack).chat.completions.create(
        model=GEMINI, stream=True, messages=[{"role": "user", "content": "cut me off"}])
    got = []
    with pytest.raises(openai.APIError):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                got.append(chunk.choices[0].delta.content)
    assert got, "the first tokens arrived before the cut"
    used = leased_conversation(stack)
    wait_until(lambda: states(stack, GEMINI)[used] == "ready", what="the conversation to be free again")
    assert ask(stack, "after the cut") == expected("after the cut")


def slow_sim(stack: Stack, cadence_ms: float) -> None:
    sim(stack, "POST", "/__sim/config", json={"cadence_ms": cadence_ms})


def test_a_client_leaving_the_queue_leaves_at_once(stack, prefilled):
    slow_sim(stack, 150)
    try:
        free = api(stack, "GET", "/healthz")["pool"][GEMINI]["ready"]  # one may still be cooling down
        pool = ThreadPoolExecutor(free)
        busy = [pool.submit(ask, stack, f"occupy {i}") for i in range(free)]
        wait_until(lambda: (row := api(stack, "GET", "/healthz")["pool"][GEMINI])["busy"] == free
                   and row["ready"] == 0, what="all free conversations busy")
        before = len(sim(stack, "GET", "/__sim/log"))
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", stack.api_base + "/v1/chat/completions",
                               json={"model": GEMINI, "stream": True,
                                     "messages": [{"role": "user", "content": "I will not wait"}]}):
                wait_until(lambda: api(stack, "GET", "/healthz")["pool"][GEMINI]["waiting"] == 1,
                           what="the request to be queued")
        wait_until(lambda: api(stack, "GET", "/healthz")["pool"][GEMINI]["waiting"] == 0, timeout=3,
                   what="the queue to let it go")
        for f in busy:
            assert f.result(60).startswith(f"[{GEMINI}]")
        gone = api(stack, "GET", f"/api/requests?model={GEMINI}&limit=10")["requests"]
        assert any(r["status"] == 499 and r["leased_at"] is None for r in gone)
        log = sim(stack, "GET", "/__sim/log")[before:]
        assert not any("I will not wait" in json.dumps(e["body"]) for e in log), "it never reached the site"
    finally:
        slow_sim(stack, 30)
    assert api(stack, "GET", "/healthz")["pool"][GEMINI]["busy"] == 0


def test_a_client_leaving_mid_stream_aborts_upstream_and_frees_the_conversation(stack, prefilled):
    slow_sim(stack, 150)
    try:
        with httpx.Client(timeout=30) as client:
            with client.stream("POST", stack.api_base + "/v1/chat/completions",
                               json={"model": GEMINI, "stream": True,
                                     "messages": [{"role": "user", "content": "a long answer, then I leave"}]}
                               ) as response:
                for line in response.iter_lines():
                    if line.startswith("data:") and '"content":"[' in line:
                        break  # the first token is here: leave
        wait_until(lambda: api(stack, "GET", "/healthz")["pool"][GEMINI]["busy"] == 0, timeout=5,
                   what="the conversation to be freed")
        wait_until(lambda: sim(stack, "GET", "/__sim/stats")["active_by_model"].get(GEMINI_ID, 0) == 0,
                   timeout=5, what="the upstream request to be aborted")
        assert "aborted" in stack.tool_output() or "connection ended" in stack.tool_output()
    finally:
        slow_sim(stack, 30)
    assert ask(stack, "after leaving") == expected("after leaving")


def test_a_page_closed_mid_request(stack, prefilled, context, page):
    slow_sim(stack, 150)
    try:
        stream = sdk(stack).chat.completions.create(
            model=GEMINI, stream=True, messages=[{"role": "user", "content": "the page will close"}])
        iterator = iter(stream)
        next(c for c in iterator if c.choices and c.choices[0].delta.content)
        page.close()
        with pytest.raises(openai.APIError, match="page went away|stopped|connection"):
            for _ in iterator:
                pass
    finally:
        slow_sim(stack, 30)
    wait_until(lambda: api(stack, "GET", "/healthz")["pool"][GEMINI]["busy"] == 0, timeout=5,
               what="the conversation to be free")
    open_arena_page(stack, context)
    assert ask(stack, "on the new page") == expected("on the new page")


def test_a_model_without_conversations_gets_a_new_one_that_joins_the_pool(stack, prefilled):
    model = "claude-opus-4-20250514"
    assert not pool_rows(stack, model)
    assert ask(stack, "a first question for a new model", model) == expected(
        "a first question for a new model", model)
    rows = pool_rows(stack, model)
    assert len(rows) >= 1 and rows[0]["source"] == "tool"
    create = [e for e in sim(stack, "GET", "/__sim/log") if e["path"].endswith("create-evaluation")][-1]
    assert create["body"]["userMessage"]["content"] == "a first question for a new model"


def test_identity_change_retires_the_old_identity_s_conversations(stack, prefilled, context):
    page = context.pages[-1]
    old = {c["identity"] for c in pool_rows(stack, GEMINI)}
    context.clear_cookies()
    page.reload()  # the site signs the browser in as a new anonymous user
    stack.wait_page_connected()
    wait_until(lambda: all(s == "retired" for sid, s in states(stack, GPT).items()), timeout=10,
               what="the old identity's conversations to retire")
    retired = pool_rows(stack, GPT)[0]
    assert retired["identity"] in old and "identity changed" in retired["retired_reason"]
