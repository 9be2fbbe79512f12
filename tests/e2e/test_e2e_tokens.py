"""End to end: reCAPTCHA tokens a step ahead (relay/tokens.py), counted by the simulator's site.

By default the page starts minting when a request arrives that will be sent at once; every token it mints
is spent (none minted for a request that waits, none wasted). With `arena_premint_tokens` on, the page
keeps one token ready after its first request, and the next request spends it.

Real parts: the tool, the simulator (retry-honoured), headless Chromium, the openai SDK.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.stack import Stack, chat_in_page
from tests.conftest import open_arena_page, running_stack, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("tokens", "retry-honoured", cadence_ms=5, arena_prefill="off",
                       arena_sessions_per_model=1) as st:
        yield st


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = open_arena_page(stack, context)
    chat_in_page(tab, MODEL, "Hello from a person")  # the one pooled conversation
    yield tab
    context.close()


def tokens(stack: Stack) -> tuple[int, int]:
    stats = httpx.get(stack.sim_base + "/__sim/stats", timeout=10).json()
    return stats["tokens_minted"], stats["tokens_spent"]


def ask(stack: Stack, text: str) -> str:
    client = openai.OpenAI(base_url=stack.api_base + "/v1", api_key="unused", max_retries=0, timeout=60)
    result = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
    return result.choices[0].message.content or ""


def test_every_token_minted_on_arrival_is_spent(stack, page):
    minted, spent = tokens(stack)
    for index in range(3):
        assert ask(stack, f"Question {index}").startswith(f"[{MODEL}] You said: Question {index}")
    after_minted, after_spent = tokens(stack)
    assert after_spent - spent == 3
    assert after_minted - minted == 3, "one token per request: none minted ahead was left unused"


def test_a_request_that_waits_is_not_minted_for_until_its_turn(stack, page):
    httpx.post(stack.sim_base + "/__sim/config", json={"cadence_ms": 100}, timeout=10)  # answers of ~2 s
    try:
        minted, spent = tokens(stack)
        with ThreadPoolExecutor(3) as pool:  # one conversation: two of the three wait in the queue
            futures = [pool.submit(ask, stack, f"Queued {i}") for i in range(3)]
            wait_until(lambda: httpx.get(stack.api_base + "/healthz", timeout=10).json()["pool"][MODEL]["waiting"] == 2,
                       timeout=10, what="two requests waiting")
            assert tokens(stack)[0] == minted + 1, "only the request being served has a token"
            answers = [f.result() for f in futures]
        assert all(a.startswith(f"[{MODEL}] You said: Queued") for a in answers)
        assert tokens(stack) == (minted + 3, spent + 3), "the waiting requests minted when their turn came"
    finally:
        httpx.post(stack.sim_base + "/__sim/config", json={"cadence_ms": 5}, timeout=10)


def test_with_premint_on_a_token_is_kept_ready_and_the_next_request_spends_it(stack, page):
    stack.restart_tool(arena_premint_tokens="true")
    try:
        stack.wait_page_connected()
        assert ask(stack, "First with premint").startswith(f"[{MODEL}] You said: First with premint")
        ready = wait_until(lambda: (t := tokens(stack))[0] - t[1] == 1 and t, timeout=10,
                           what="one token minted ahead")
        assert ask(stack, "Second with premint").startswith(f"[{MODEL}] You said: Second with premint")
        after = wait_until(lambda: (t := tokens(stack))[0] - t[1] == 1 and t, timeout=10,
                           what="the next token minted ahead")
        assert after == (ready[0] + 1, ready[1] + 1), "the second request spent the ready token; one more is kept"
    finally:
        stack.restart_tool(arena_premint_tokens="false")
        stack.wait_page_connected()
