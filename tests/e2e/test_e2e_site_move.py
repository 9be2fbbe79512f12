"""End to end, the move to arena.ai (2026 generation): while lmarena.ai still serves its pages but answers
its stream calls with a 301 to arena.ai, a tab on lmarena.ai is never used for a job once the tool has seen
the redirect, the redirect is never followed (a browser re-sends a redirected POST as a GET, which the site
refuses with 405), and a tab on arena.ai serves."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.stack import Stack, sign_in
from tests.conftest import open_arena_page, running_stack, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("move", "2026", cadence_ms=5, arena_prefill="off", arena_page_wait=1) as st:
        httpx.post(st.sim_base + "/__sim/config", json={"redirect_to_arena": False, "redirect_streams_only": True},
                   timeout=10)
        yield st


def hits(stack: Stack) -> list[dict[str, Any]]:
    return httpx.get(stack.sim_base + "/__sim/stream-hits", timeout=10).json()


def ask(stack: Stack) -> str:
    client = openai.OpenAI(base_url=stack.api_base + "/v1", api_key="unused", max_retries=0, timeout=60)
    result = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Where are you?"}])
    return result.choices[0].message.content or ""


def test_a_tab_on_a_host_that_redirects_is_not_used_and_no_post_becomes_a_get(stack, browser):
    context = browser.new_context()
    old = open_arena_page(stack, context, "https://lmarena.ai/text/direct")
    sign_in(old)
    before = len(hits(stack))
    with pytest.raises(openai.APIStatusError) as caught:  # the only tab is on lmarena.ai
        ask(stack)
    assert caught.value.status_code == 503 and "https://arena.ai/text/direct" in caught.value.message
    assert [(h["host"], h["method"], h["answer"]) for h in hits(stack)[before:]] == [("lmarena.ai", "POST", "301")]
    pages = httpx.get(stack.api_base + "/api/pages", timeout=10).json()["pages"]
    assert [p["state"] for p in pages] == ["moved"] and "arena.ai" in pages[0]["advice"]

    with pytest.raises(openai.APIStatusError):  # learned: nothing more is sent through that host
        ask(stack)
    assert len(hits(stack)) == before + 1

    arena = open_arena_page(stack, context, "https://arena.ai/text/direct")
    sign_in(arena)
    wait_until(lambda: any(p["state"] == "ready" for p in
                           httpx.get(stack.api_base + "/api/pages", timeout=10).json()["pages"]), 10, "the arena tab")
    assert ask(stack).startswith(f"[{MODEL}] You said: Where are you?")
    assert not [h for h in hits(stack) if h["method"] == "GET"], "no redirected POST ever came back as a GET"
    context.close()
