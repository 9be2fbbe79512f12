"""End to end, the real site's defences and several browsers: a Cloudflare check that clears by itself,
one that does not (one reload, never a loop), a visible reCAPTCHA v2 box that needs a click, a browser
without a session, and two browser identities that double the capacity without ever cross-using
conversations."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.stack import Stack, chat_in_page, wait_js
from tests.conftest import running_stack, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("checks", "retry-honoured", cadence_ms=5, arena_prefill="off", arena_challenge_reload=3,
                       arena_page_wait=10) as st:
        yield st


def sim_config(stack: Stack, **values: Any) -> None:
    httpx.post(stack.sim_base + "/__sim/config", json=values, timeout=10)


def pages(stack: Stack) -> list[dict[str, Any]]:
    return httpx.get(stack.api_base + "/api/pages", timeout=10).json()["pages"]


class Background:
    """An SDK request in a thread, started while the page is not ready."""

    def __init__(self, stack: Stack, text: str) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        client = openai.OpenAI(base_url=stack.api_base + "/v1", api_key="x", max_retries=0, timeout=90)

        def run() -> None:
            try:
                self.result = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
            except BaseException as e:  # noqa: BLE001 - handed to the test
                self.error = e

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def answer(self) -> str:
        self.thread.join(90)
        if self.error is not None:
            raise self.error
        return self.result.choices[0].message.content


def test_a_cloudflare_check_that_clears_by_itself(stack, browser):
    sim_config(stack, cloudflare_seconds=3)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto("https://lmarena.ai/?mode=direct")
        states = wait_until(lambda: [p["state"] for p in pages(stack)], what="the challenge page to connect")
        assert states == ["challenge"]
        assert "Cloudflare" in pages(stack)[0]["advice"]
        request = Background(stack, "asked during the check")
        answer = request.answer()  # waits for the check to clear, then is answered
        assert "You said: asked during the check" in answer
        assert time.monotonic() - request.started > 1.5, "it waited for the page"
        assert [p["state"] for p in pages(stack)] == ["ready"]
    finally:
        context.close()
        sim_config(stack, cloudflare_seconds=0)


def test_a_check_that_does_not_clear_reloads_once_and_never_loops(stack, browser):
    sim_config(stack, cloudflare_seconds=1000)
    context = browser.new_context()
    try:
        before = httpx.get(stack.sim_base + "/__sim/stats", timeout=10).json()["page_loads"]
        page = context.new_page()
        page.goto("https://lmarena.ai/?mode=direct")
        time.sleep(10)  # arena_challenge_reload is 3 s: without the guard it would have reloaded ~3 times
        loads = httpx.get(stack.sim_base + "/__sim/stats", timeout=10).json()["page_loads"] - before
        assert loads == 2, f"one automatic reload, then no more ({loads} loads)"
        response = httpx.post(stack.api_base + "/v1/chat/completions", timeout=60, json={
            "model": MODEL, "messages": [{"role": "user", "content": "x"}]})
        assert response.status_code == 503 and int(response.headers["retry-after"]) > 0
        assert "Cloudflare" in response.json()["error"]["message"]
    finally:
        context.close()
        sim_config(stack, cloudflare_seconds=0)


def test_a_recaptcha_v2_box_waits_for_a_person(stack, browser):
    sim_config(stack, v2_challenge=True)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto("https://lmarena.ai/?mode=direct")
        wait_until(lambda: [p["state"] for p in pages(stack)] == ["needs_human_check"], what="the v2 box")
        request = Background(stack, "asked during the v2 check")
        time.sleep(1.5)
        assert request.thread.is_alive(), "the request waits, it does not fail"
        page.click("#v2-solve")  # the person ticks the box
        assert "You said: asked during the v2 check" in request.answer()
    finally:
        context.close()
        sim_config(stack, v2_challenge=False)


def test_a_browser_without_a_session_is_told_to_sign_in(stack, browser):
    sim_config(stack, anonymous_signin=False)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto("https://lmarena.ai/?mode=direct")
        wait_until(lambda: [p["state"] for p in pages(stack)] == ["signed_out"], what="the signed-out page")
        assert "sign in" in pages(stack)[0]["advice"]
        request = Background(stack, "asked while signed out")
        page.click("#sign-in")
        assert "You said: asked while signed out" in request.answer()
        assert [p["state"] for p in pages(stack)] == ["ready"]
    finally:
        context.close()
        sim_config(stack, anonymous_signin=True)


def test_two_identities_double_the_capacity_and_never_cross_use(stack, browser):
    contexts = [browser.new_context(), browser.new_context()]
    try:
        tabs = []
        for context in contexts:
            tab = context.new_page()
            tab.goto("https://lmarena.ai/?mode=direct")
            wait_js(tab, "window.__lmarenaBridge && window.__lmarenaBridge.connected")
            tabs.append(tab)
        for i, tab in enumerate(tabs):
            chat_in_page(tab, "gpt-5-high", f"hello from browser {i}")
        pool = httpx.get(stack.api_base + "/api/pool?model=gpt-5-high", timeout=10).json()["conversations"]
        assert len({c["identity"] for c in pool}) == 2
        httpx.post(stack.sim_base + "/__sim/reset", timeout=10)
        sim_config(stack, cadence_ms=150)
        client = openai.OpenAI(base_url=stack.api_base + "/v1", api_key="x", max_retries=0, timeout=60)
        results: list[str] = []

        def ask(i: int) -> None:
            answer = client.chat.completions.create(
                model="gpt-5-high", messages=[{"role": "user", "content": f"both at once {i}"}])
            results.append(answer.choices[0].message.content or "")

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 2
        stats = httpx.get(stack.sim_base + "/__sim/stats", timeout=10).json()
        assert max(stats["max_by_model"].values()) == 2, "both identities served at the same time"
        after = httpx.get(stack.api_base + "/api/pool?model=gpt-5-high", timeout=10).json()["conversations"]
        assert all(c["state"] == "ready" for c in after), "no 401: each conversation went to its own browser"
    finally:
        sim_config(stack, cadence_ms=5)
        for context in contexts:
            context.close()


def test_the_move_to_arena_ai(stack, browser):
    """lmarena.ai answers 301 to arena.ai (2026): the page there works the same, nothing to change."""
    sim_config(stack, redirect_to_arena=True)
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto("https://lmarena.ai/?mode=direct")
        assert page.url.startswith("https://arena.ai/")
        wait_js(page, "window.__lmarenaBridge && window.__lmarenaBridge.connected")
        model = "o3-2025-04-16"
        answer = chat_in_page(page, model, "hello from arena.ai")
        pooled = httpx.get(stack.api_base + f"/api/pool?model={model}", timeout=10).json()["conversations"]
        conv = next(c for c in pooled if c["session_id"] == answer["sessionId"])
        assert conv["host"] == "arena.ai"
        client = openai.OpenAI(base_url=stack.api_base + "/v1", api_key="x", max_retries=0, timeout=60)
        content = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "served from arena.ai"}]).choices[0].message.content
        assert "You said: served from arena.ai" in (content or "")
        assert any(p["url"].startswith("https://arena.ai/") for p in pages(stack))
    finally:
        context.close()
        sim_config(stack, redirect_to_arena=False)
