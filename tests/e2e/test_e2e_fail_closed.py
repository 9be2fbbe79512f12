"""End to end: the tool's own requests fail closed, the person's fail open, odd input is handled at the edge.

A second mitmproxy script (tests/e2e/planted/faults.py) plants failures inside the running tool's hooks:
in the rewriter for a job whose conversation says PLANTED-REWRITE, in the capture for the person's
request that says PLANTED-CAPTURE, in the injector for a page at ?planted-inject. The simulator's own
record of the stream calls it received says what reached the site.

Real parts: the tool (mitmdump -s addons/bridge.py -s faults.py), the simulator (retry-honoured, so a
retry that left unrewritten would be accepted and answered with the conversation's old content),
headless Chromium, the openai SDK and raw HTTP for bodies the SDK cannot send.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.stack import Stack, chat_in_page
from tests.conftest import open_arena_page, running_stack, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"
FAULTS = Path(__file__).parent / "planted" / "faults.py"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("failclosed", "retry-honoured", cadence_ms=5, extra_scripts=(FAULTS,),
                       arena_prefill="off") as st:
        yield st


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = open_arena_page(stack, context)
    answer = chat_in_page(tab, MODEL, "Hello from a person")  # the one conversation the pool gets
    assert answer["text"].startswith(f"[{MODEL}] You said: Hello from a person")
    yield tab
    context.close()


def stream_hits(stack: Stack) -> list[dict[str, Any]]:
    return httpx.get(stack.sim_base + "/__sim/stream-hits", timeout=10).json()


def pool_row(stack: Stack) -> dict[str, int]:
    return httpx.get(stack.api_base + "/healthz", timeout=10).json()["pool"][MODEL]


def all_leases_back(stack: Stack) -> dict[str, int]:
    return wait_until(lambda: (row := pool_row(stack))["busy"] == 0 and row["ready"] == 1 and row,
                      timeout=10, what="the conversation back in the pool")


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_base + "/v1", api_key="unused", max_retries=0, timeout=60)


def ask(stack: Stack, text: str) -> str:
    result = sdk(stack).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}])
    return result.choices[0].message.content or ""


def post_raw(stack: Stack, body: bytes) -> httpx.Response:
    return httpx.post(stack.api_base + "/v1/chat/completions", content=body,
                      headers={"content-type": "application/json"}, timeout=60)


def test_a_request_the_rewriter_fails_on_never_reaches_the_site(stack, page):
    before = stream_hits(stack)
    with pytest.raises(openai.APIStatusError) as caught:
        ask(stack, "PLANTED-REWRITE: what is 2+2?")
    error = caught.value
    assert error.status_code == 500 and error.code == "tool_error" and error.type == "server_error"
    assert error.body["message"] == ("the proxy: could not write the tool's request: PlantedFailure: planted in the "
                             "rewriter (nothing was sent to the site)"), error.message
    assert stream_hits(stack) == before, "the site received nothing"
    all_leases_back(stack)
    # the tool goes on serving, and the conversation it kept back is as it was
    assert ask(stack, "And now 3+3?").startswith(f"[{MODEL}] You said: And now 3+3?")
    assert len(stream_hits(stack)) == len(before) + 1
    all_leases_back(stack)


def test_a_lone_surrogate_reaches_the_site_as_a_replacement_character(stack, page):
    # what a client sends when it cuts a string inside an emoji: valid JSON, not encodable as UTF-8
    body = b'{"model": "%s", "messages": [{"role": "user", "content": "cut \\ud83d here"}]}' % MODEL.encode()
    response = post_raw(stack, body)
    assert response.status_code == 200, response.text
    text = response.json()["choices"][0]["message"]["content"]
    assert text.startswith(f"[{MODEL}] You said: cut \ufffd here"), "the site got (and echoed) U+FFFD"
    all_leases_back(stack)


@pytest.mark.parametrize("body, found", [
    (b'{"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "\xff\xfe"}]}', "UTF-8"),
    (b'{"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "a\\u0000b"}], "n": "two"}', "n"),
    (b'{"model": "gemini-2.5-pro", "messages": ' + b"[" * 2000 + b"]" * 2000 + b"}", "nested"),
])
def test_bodies_the_api_refuses_get_a_400_and_nothing_leaves(stack, page, body, found):
    before = stream_hits(stack)
    response = post_raw(stack, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and found in error["message"] + str(error.get("param"))
    assert stream_hits(stack) == before
    all_leases_back(stack)


def test_the_person_s_request_passes_when_the_capture_fails(stack, page):
    answer = chat_in_page(page, MODEL, "PLANTED-CAPTURE: the person's own question")
    assert answer["text"].startswith(f"[{MODEL}] You said: PLANTED-CAPTURE: the person's own question")
    assert "read failed on the person's own request" in stack.tool_output()
    assert "PlantedFailure: planted in the capture" in stack.tool_output()


def test_the_page_is_shown_as_the_site_sent_it_when_the_injection_fails(stack, page):
    tab = page.context.new_page()
    try:
        response = tab.goto("https://lmarena.ai/?planted-inject")
        assert response is not None and response.status == 200
        assert tab.locator("#send").count() == 1, "the site's page, whole"
        assert tab.evaluate("typeof window.__lmarenaBridge") == "undefined", "without the tool's script"
        assert "inject into failed on the person's own request" in stack.tool_output()
    finally:
        tab.close()
    # the tool's own page still serves
    assert ask(stack, "still there?").startswith(f"[{MODEL}] You said: still there?")


def test_the_log_holds_no_secret_of_the_failed_requests(stack, page):
    output = stack.tool_output()
    assert "PlantedFailure" in output
    cookies = page.context.cookies()
    assert cookies, "the simulated site set its cookies"
    for cookie in cookies:
        if len(cookie["value"]) >= 8:
            assert cookie["value"] not in output, f"cookie {cookie['name']} reached the log"
