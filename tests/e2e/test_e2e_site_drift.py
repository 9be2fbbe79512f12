"""End to end, site drift: the server generation that keeps history itself and ignores the messages a
retry carries. The canary notices, the tool switches strategy, and answers stay about what the client
asked; when retries are honoured again, it switches back. A strategy can also be pinned."""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import openai
import pytest

from relay.mirror_book import write_transcript
from simulator.answers import answer_for
from simulator.stack import Stack, chat_in_page
from sites import lmarena as site
from tests.conftest import open_arena_page, running_stack, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"
CONVERSATION = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "First?"},
                {"role": "assistant", "content": "Yes."}, {"role": "user", "content": "And the second question?"}]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("drift", cadence_ms=5, generation="history-kept", arena_prefill="off") as st:
        yield st


@pytest.fixture(scope="module")
def page(stack: Stack, playwright_instance: Any) -> Iterator[Any]:
    browser = playwright_instance.chromium.launch(**stack.launch_args())
    pg = open_arena_page(stack, browser)
    chat_in_page(pg, MODEL, "Hello, I am the person")
    yield pg
    browser.close()


def api(stack: Stack, method: str, path: str, **kw: Any) -> Any:
    return httpx.request(method, stack.api_base + path, timeout=120, **kw).json()


def sim_log(stack: Stack) -> list[dict[str, Any]]:
    return httpx.get(stack.sim_base + "/__sim/log", timeout=10).json()


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_base + "/v1", api_key="x", max_retries=0, timeout=60)


def test_the_canary_notices_ignored_retries_and_switches_to_mirror(stack, page):
    assert api(stack, "GET", "/api/strategy")["current"] == "retry"
    pooled = {c["session_id"]: c["state"] for c in api(stack, "GET", "/api/pool")["conversations"]}
    result = api(stack, "POST", "/api/canary")
    probes = result["canary"]["probes"]
    assert [(p["strategy"], p["ok"]) for p in probes] == [("retry", False), ("mirror", True)]
    assert "answered something else" in probes[0]["detail"]
    assert result["current"] == "mirror"
    assert api(stack, "GET", "/healthz")["strategy"]["current"] == "mirror"
    assert "strategy: retry → mirror" in stack.tool_output(), "said on the console"
    after = {c["session_id"]: c["state"] for c in api(stack, "GET", "/api/pool")["conversations"]}
    assert all(after[sid] == state for sid, state in pooled.items()), "the probe took nothing from the pool"


def test_answers_stay_about_the_client_s_conversation(stack, page):
    turns = [site.ChatTurn(m["role"], m["content"]) for m in CONVERSATION]
    content = sdk(stack).chat.completions.create(model=MODEL, messages=CONVERSATION).choices[0].message.content
    sent = sim_log(stack)[-1]
    # nothing pooled holds only a greeting (the person's own chat is never given to a client): a new
    # conversation carries the client's, written once
    assert sent["method"] == "POST" and sent["path"].endswith("/create-evaluation")
    assert sent["body"]["userMessage"]["content"] == write_transcript(turns).content
    assert content is not None and "You said: [The conversation so far." in content
    record = api(stack, "GET", "/api/requests?limit=1")["requests"][-1]
    assert record["strategy"].startswith("mirror/new") and record["status"] == 200


def test_the_canary_switches_back_when_retries_are_honoured_again(stack, page):
    httpx.post(stack.sim_base + "/__sim/config", json={"generation": "retry-honoured"}, timeout=10)
    result = api(stack, "POST", "/api/canary")
    assert [(p["strategy"], p["ok"]) for p in result["canary"]["probes"]] == [("retry", True)]
    assert result["current"] == "retry"
    content = sdk(stack).chat.completions.create(model=MODEL, messages=CONVERSATION).choices[0].message.content
    assert content == answer_for(MODEL, "chat", [(m["role"], m["content"]) for m in CONVERSATION])[1]
    assert sim_log(stack)[-1]["method"] == "PUT"


def test_a_pinned_strategy(stack, page):
    stack.restart_tool(arena_strategy="fresh")
    stack.wait_page_connected(timeout=30)
    assert api(stack, "GET", "/api/strategy")["mode"] == "fresh"
    sdk(stack).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "a fresh one"}])
    sent = sim_log(stack)[-1]
    assert sent["path"].endswith("/create-evaluation") and sent["body"]["userMessage"]["content"] == "a fresh one"
    assert api(stack, "GET", "/api/requests?limit=1")["requests"][-1]["strategy"] == "fresh"


def test_the_canary_runs_by_itself_at_start_up(stack, page):
    stack.restart_tool(arena_strategy="auto", arena_canary_interval=600)
    stack.wait_page_connected(timeout=30)
    state = wait_until(lambda: (s := api(stack, "GET", "/api/strategy"))["canary"] and s, timeout=30,
                       what="the start-up canary")
    assert state["canary"]["ok"], "nobody asked: it ran at start-up"
    assert state["current"] == "retry", "the simulator honours retries again by now"
