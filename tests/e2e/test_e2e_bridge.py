"""End to end: a person chats once in the (simulated) site through the proxy; then the official
openai SDK gets answers for that model, with its own messages written into the replayed retry.

Real parts: mitmproxy running addons/bridge.py, the simulator behind lmarena.ai (map_remote),
Debian Chromium through the proxy trusting the tool's CA via an NSS database, the openai SDK.
"""

from __future__ import annotations

import json
import re
import statistics
from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.answers import answer_for
from simulator.server import PAGE_ONLY_MODEL
from simulator.stack import Stack, chat_in_page, wait_js
from tests.conftest import open_arena_page, running_stack

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"
CADENCE_MS = 40.0
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "First question?"},
    {"role": "assistant", "content": "First answer."},
    {"role": "user", "content": "Second question, and what is 2+2?"},
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("bridge", "retry-honoured", cadence_ms=CADENCE_MS) as st:
        yield st


@pytest.fixture(scope="module")
def page(stack: Stack, playwright_instance: Any) -> Iterator[Any]:
    browser = playwright_instance.chromium.launch(**stack.launch_args())
    yield open_arena_page(stack, browser.new_context())
    browser.close()


@pytest.fixture(scope="module")
def captured(stack: Stack, page: Any) -> dict[str, Any]:
    """The person's one chat, by clicking the simulated site's own interface."""
    page.evaluate("window.__simChunks.length = 0")
    answer = chat_in_page(page, MODEL, "Hello from a person 👋")
    chunks = page.evaluate("window.__simChunks")
    return {"answer": answer, "chunks": chunks}


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_base + "/v1", api_key="unused", max_retries=0, timeout=60)


def sim_log(stack: Stack) -> list[dict[str, Any]]:
    return httpx.get(stack.sim_base + "/__sim/log", timeout=10).json()


def last_retry(stack: Stack) -> dict[str, Any]:
    return [e for e in sim_log(stack) if e["method"] == "PUT"][-1]


def expected_answer(conversation: list[dict[str, str]]) -> str:
    _, text, _ = answer_for(MODEL, "chat", [(m["role"], m["content"]) for m in conversation])
    return text


def test_the_person_s_chat_is_captured_into_the_pool(stack, captured):
    answer = captured["answer"]
    assert answer["text"].startswith(f"[{MODEL}] You said: Hello from a person 👋")
    pool = httpx.get(stack.api_base + "/api/pool", timeout=10).json()
    conv = next(c for c in pool["conversations"] if c["session_id"] == answer["sessionId"])
    assert conv["model"] == MODEL and conv["message_id"] == answer["messageId"]
    assert conv["state"] == "ready" and conv["mode"] == "direct" and conv["identity"].startswith("user:")
    health = httpx.get(stack.api_base + "/healthz", timeout=10).json()
    assert health["pool"][MODEL]["total"] == 1 and health["pages"] == {"connected": 1, "ready": 1}


def test_the_person_s_own_stream_is_not_held_back(captured):
    """The page gets its answer chunk by chunk at the simulator's pace, not in one piece at the end."""
    chunks = captured["chunks"]
    assert len(chunks) >= 8, chunks
    gaps = [b["t"] - a["t"] for a, b in zip(chunks, chunks[1:])]
    # The simulator pauses CADENCE_MS between chunks. Had the proxy buffered the answer, the chunks
    # would arrive together at the end, with gaps near zero.
    assert statistics.median(gaps) >= CADENCE_MS * 0.5, gaps
    assert chunks[-1]["t"] - chunks[0]["t"] >= CADENCE_MS * (len(chunks) - 1) * 0.5


def test_non_streaming_sdk_call_writes_the_conversation_into_the_retry(stack, captured):
    result = sdk(stack).chat.completions.create(model=MODEL, messages=CONVERSATION)
    assert result.choices[0].message.content == expected_answer(CONVERSATION)
    assert result.choices[0].finish_reason == "stop"
    retry = last_retry(stack)
    assert retry["path"].endswith(f"/{captured['answer']['sessionId']}/messages/{captured['answer']['messageId']}")
    sent = [(m["role"], m["content"]) for m in retry["body"]["messages"]]
    assert sent == [(m["role"], m["content"]) for m in CONVERSATION], "exactly the SDK's conversation"
    assert retry["body"]["recaptchaV3Token"] == "REDACTED", "a fresh token was minted in the page"


def test_streaming_sdk_call(stack, captured):
    stream = sdk(stack).chat.completions.create(model=MODEL, messages=CONVERSATION, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected_answer(CONVERSATION)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 5, "streamed in pieces"
    assert sum(1 for c in chunks if c.choices and c.choices[0].finish_reason) == 1
    sent = [(m["role"], m["content"]) for m in last_retry(stack)["body"]["messages"]]
    assert sent == [(m["role"], m["content"]) for m in CONVERSATION]


def test_unicode_and_long_prompts_round_trip_exactly(stack, captured):
    tricky = 'Emoji 🧪🌏, quotes "double" \'single\', backslashes \\ \\n \\\\, 中文，日本語、한국어 ' + "x" * 120_000
    conversation = [{"role": "user", "content": tricky}]
    result = sdk(stack).chat.completions.create(model=MODEL, messages=conversation)
    assert result.choices[0].message.content == expected_answer(conversation)
    assert last_retry(stack)["body"]["messages"][0]["content"] == tricky


def test_models_merge_what_the_page_lists(stack, captured):
    ids = [m.id for m in sdk(stack).models.list().data]
    assert PAGE_ONLY_MODEL["publicName"] in ids and MODEL in ids
    with pytest.raises(openai.NotFoundError):
        sdk(stack).chat.completions.create(model="not-a-model", messages=CONVERSATION)


def test_the_channel_refuses_a_wrong_secret(page):
    code = page.evaluate(
        """() => new Promise(resolve => {
            const ws = new WebSocket('wss://' + location.host + '/__bridge/ws');
            ws.onopen = () => ws.send(JSON.stringify({type: 'hello', secret: 'guess', page: 'intruder'}));
            ws.onclose = ev => resolve(ev.code);
        })"""
    )
    assert code == 4401


def test_the_page_reconnects_after_a_restart_and_the_pool_survives(stack, page, captured):
    before = httpx.get(stack.api_base + "/healthz", timeout=10).json()["pool"][MODEL]["total"]
    stack.restart_tool()
    # a new process has no pages until the page script reconnects by itself
    stack.wait_page_connected(timeout=30)
    assert wait_js(page, "window.__lmarenaBridge.connected === true")
    health = httpx.get(stack.api_base + "/healthz", timeout=10).json()
    assert health["pool"][MODEL]["total"] == before
    result = sdk(stack).chat.completions.create(model=MODEL, messages=CONVERSATION)
    assert result.choices[0].message.content == expected_answer(CONVERSATION)
    served = httpx.get(stack.api_base + "/api/requests", timeout=10).json()["requests"][-1]
    assert served["conversation"] == captured["answer"]["sessionId"], "the saved conversation served it"
    assert served["strategy"] == "retry"


def test_no_secret_or_cookie_in_the_tool_output(stack, captured):
    output = stack.tool_output()
    assert "replaying conversation" in output
    assert f"set your browser's proxy to 127.0.0.1:{stack.proxy_port}" in output, "start-up steps, as plain lines"
    assert "Session pool" not in output, "no live panel when the output is not a terminal"
    assert not re.search(r"sim-[A-Za-z0-9_-]{32}", output), "a reCAPTCHA token reached the log"
    assert "base64-" not in output and "access_token" not in output, "a session cookie reached the log"
    secret = (stack.confdir / "lmarena-bridge-secret").read_text().strip()
    assert secret not in output
    assert json.dumps(secret) not in output
