"""End to end against the simulator's 2026 generation: arena.ai as it is now.

A signed-in browser on https://arena.ai/text/direct, the tool with no option set that changes what it
does (the start-up canary runs as it does for a user): a Direct chat made in the page (sent as
`direct-battle`) is captured and serves requests; tokens are minted with the page's own reCAPTCHA key,
also after the key changes under the running page; the login gate, the battle-turn trap, heartbeats,
provider and platform errors, unknown line codes, empty answers, refusals, the clock check and the Stop
call each behave as the site's 2026 evidence says they must.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.stack import Stack, chat_in_page, sign_in, wait_js
from sites import lmarena as site
from tests.conftest import open_arena_page, running_stack, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"
GEMINI_ID = "e2d9d353-6dbe-4414-bf87-bd289d523726"
ARENA = "https://arena.ai/text/direct"
NEW_KEY = "6LeNEWKEYAAAAAnewDeploymentKeyForTests0001"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # the canary as a user has it (the stack's default turns it off for the other modules)
    with running_stack("site2026", "2026", cadence_ms=5, arena_prefill="off", arena_canary_interval=900,
                       arena_page_wait=2) as st:
        yield st


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = open_arena_page(stack, context, ARENA)
    sign_in(tab)
    stack.wait_page_connected()
    yield tab
    context.close()


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_base + "/v1", api_key="unused", max_retries=0, timeout=60)


def api(stack: Stack, path: str) -> Any:
    return httpx.get(stack.api_base + path, timeout=10).json()


def sim(stack: Stack, path: str, body: dict[str, Any] | None = None) -> Any:
    if body is None:
        return httpx.get(stack.sim_base + path, timeout=10).json()
    return httpx.post(stack.sim_base + path, json=body, timeout=10).json()


def conversation(stack: Stack, session_id: str) -> dict[str, Any]:
    return next(c for c in api(stack, "/api/pool")["conversations"] if c["session_id"] == session_id)


def ask_chat(stack: Stack, messages: list[dict[str, str]]) -> str:
    result = sdk(stack).chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    return result.choices[0].message.content or ""


def ask(stack: Stack, text: str, **kw: Any) -> str:
    result = sdk(stack).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": text}], **kw)
    return result.choices[0].message.content or ""


def test_a_chat_in_the_2026_page_is_captured_and_serves_requests_with_no_option_set(stack, page):
    answer = chat_in_page(page, MODEL, "Hello from a person")
    assert answer["text"].startswith(f"[{MODEL}] You said: Hello from a person")
    created = next(e for e in sim(stack, "/__sim/log") if e["path"].endswith("create-evaluation"))
    assert created["body"]["mode"] == "direct-battle" and created["body"]["modelBMessageId"]
    conv = conversation(stack, answer["sessionId"])
    assert (conv["model"], conv["mode"]) == (MODEL, "direct-battle")
    assert conv["state"] in ("ready", "busy"), "busy: the start-up canary starts on it at once"
    # the tokens were minted with the key the page found the site using (the simulator takes no other)
    [tab] = api(stack, "/api/pages")["pages"]
    assert tab["sitekey"] == site.RECAPTCHA_SITE_KEY and tab["sitekey_source"] in ("script", "execute")

    stream = sdk(stack).chat.completions.create(
        model=MODEL, stream=True, stream_options={"include_usage": True},
        messages=[{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "What is the capital of France?"}])
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # the site ignores a retry's messages: the start-up canary found that (the request waited for it), and
    # the client conversation got a site conversation of its own, its history written once
    assert content.startswith(f"[{MODEL}] You said: [The conversation so far.")
    assert "=== System ===\nBe brief." in content and "What is the capital of France?" in content
    strategy = api(stack, "/api/strategy")
    assert strategy["current"] == "mirror" and not strategy["canary"]["probes"][0]["ok"]
    # heartbeat lines never become content; the usage is the site's own count, not an estimate
    assert "heartbeat" not in content
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == len(content) // 4
    created = [e for e in sim(stack, "/__sim/log")
               if e["path"].endswith("create-evaluation") and "capital of France" in json.dumps(e["body"])][-1]
    assert created["body"]["modelAId"] == GEMINI_ID and created["body"]["mode"] == "direct-battle"
    assert created["body"]["id"] != answer["sessionId"], "the person's own chat is never given to a client"


def test_models_of_the_2026_page_name_the_selectable_entry_and_the_router(stack, page):
    models = {m["id"]: m for m in api(stack, "/v1/models")["data"]}
    assert list(models).count(MODEL) == 1 and models[MODEL]["router"] is False
    assert models["Max"]["router"] is True and "router" in models["Max"]["description"]
    # a request for the name goes to the entry a person can pick, not its hidden twin
    assert all(e["body"].get("modelAId") in (None, GEMINI_ID) for e in sim(stack, "/__sim/log")
               if e["method"] == "POST")


def test_a_direct_battle_conversation_on_a_battle_turn_is_retired_and_the_request_fails_over(stack, page):
    chat = [{"role": "user", "content": "Are you the model I asked for?"}]
    chat.append({"role": "assistant", "content": ask_chat(stack, chat)})
    trapped = api(stack, "/api/requests?limit=1")["requests"][-1]["conversation"]  # the client's own
    sim(stack, "/__sim/fault", {"session": trapped, "battle_turn": True})
    chat.append({"role": "user", "content": "Still you?"})
    content = ask_chat(stack, chat)
    assert content.startswith(f"[{MODEL}] You said:"), "the answer of the model asked for, not a hidden one"
    conv = conversation(stack, trapped)
    assert conv["state"] == "retired" and "battle_turn" in conv["retired_reason"]
    record = api(stack, "/api/requests?limit=1")["requests"][-1]
    assert record["attempts"] == 2 and record["conversation"] != trapped and record["status"] == 200
    moved = sim(stack, f"/__sim/sessions/{record['conversation']}")["messages"]
    assert "Still you?" in moved[0]["content"], "the whole conversation went to the new one, written once"


def test_unknown_line_codes_and_heartbeats_are_ignored_and_logged_once_by_shape(stack, page):
    for _ in range(2):
        sim(stack, "/__sim/fault", {"session": None, "insert": {"at": 2, "lines": ['ax:{"secret":"do not log me"}',
                                                                                  'a2:[{"type":"heartbeat"}]']}})
        assert ask(stack, "Anything new?").startswith(f"[{MODEL}] You said: Anything new?")
    output = stack.tool_output()
    assert output.count("does not know (stream_line): x:{secret:str}") == 1
    assert "do not log me" not in output


def test_a_provider_error_before_the_first_token_is_a_real_status(stack, page):
    before = len(sim(stack, "/__sim/log"))
    sim(stack, "/__sim/fault", {"session": None, "insert": {"at": 1, "lines": [
        'a3:"{\\"error\\":{\\"code\\":\\"moderation_blocked\\",\\"message\\":\\"blocked by the provider\\"}}"']}})
    with pytest.raises(openai.BadRequestError) as caught:
        ask(stack, "Something the provider refuses")
    assert caught.value.status_code == 400 and caught.value.body["code"] == "content_filter"
    assert len(sim(stack, "/__sim/log")) == before + 1, "a refusal is not tried again elsewhere"


def test_a_platform_error_after_the_first_token_is_in_band_and_never_a_clean_stop(stack, page):
    platform_error = 'ae:{"message":"Arena platform error"}'
    sim(stack, "/__sim/fault", {"session": None, "insert": {"at": 5, "lines": [platform_error]}})
    stream = sdk(stack).chat.completions.create(model=MODEL, stream=True,
                                                 messages=[{"role": "user", "content": "Tell me a long story"}])
    received = ""
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            assert not (chunk.choices and chunk.choices[0].finish_reason == "stop"), "never a clean stop"
            received += (chunk.choices[0].delta.content or "") if chunk.choices else ""
    assert received and "Arena platform error" in str(caught.value)


def test_an_empty_answer_is_never_a_success(stack, page):
    empty = ['a2:[{"type":"heartbeat"}]', 'ad:{"finishReason":"stop"}']
    for _ in range(3):  # every conversation tried answers nothing
        sim(stack, "/__sim/fault", {"session": None, "replace_lines": empty})
    with pytest.raises(openai.APIStatusError) as caught:
        ask(stack, "Say nothing")
    assert caught.value.status_code == 502 and "empty" in caught.value.message
    sim(stack, "/__sim/fault", {"session": None, "replace_lines": empty})
    assert ask(stack, "Now say something").startswith(f"[{MODEL}]"), "one empty answer: failed over"


def test_a_prompt_the_site_refuses_is_a_clear_4xx_and_not_retried(stack, page):
    before = len(sim(stack, "/__sim/log"))
    sim(stack, "/__sim/fault", {"session": None, "status": 429, "body": '{"error":"prompt failed"}'})
    with pytest.raises(openai.BadRequestError) as caught:
        ask(stack, "A prompt the site will not take")
    assert caught.value.body["code"] == "prompt_refused"
    assert len(sim(stack, "/__sim/log")) == before + 1


def test_ids_the_site_calls_spoofed_say_the_clock_is_off(stack, page):
    sim(stack, "/__sim/config", {"clock_offset": 2 * 3600})
    try:
        with pytest.raises(openai.APIStatusError) as caught:
            ask(stack, "What time is it?")
        assert caught.value.body["code"] == "clock_off" and "clock" in caught.value.message
    finally:
        sim(stack, "/__sim/config", {"clock_offset": 0})


def test_a_client_that_goes_away_presses_the_site_s_stop(stack, page):
    sim(stack, "/__sim/config", {"cadence_ms": 150})
    try:
        stops = len(sim(stack, "/__sim/stops"))
        with httpx.stream("POST", stack.api_base + "/v1/chat/completions", timeout=30, json={
                "model": MODEL, "stream": True, "messages": [{"role": "user", "content": "A very long answer"}]}) as r:
            for line in r.iter_lines():
                if '"content": "[' in line or '"content":"[' in line:
                    break  # the first words arrived: the client leaves
        wait_until(lambda: len(sim(stack, "/__sim/stops")) > stops, 10, "the site's Stop call")
        stop = sim(stack, "/__sim/stops")[-1]
        posted = [e for e in sim(stack, "/__sim/log")
                  if e["path"].endswith(stop["session"]) or e["body"].get("id") == stop["session"]][-1]
        assert stop["message"] == posted["body"]["userMessageId"] and "stoppedAt" in stop["body"]
    finally:
        sim(stack, "/__sim/config", {"cadence_ms": 5})


def test_a_new_recaptcha_key_under_the_running_page_is_used_from_the_next_token(stack, page):
    sim(stack, "/__sim/config", {"sitekey": NEW_KEY})  # the site deploys a new key ...
    try:
        page.evaluate("""key => {  // ... and its new code in the running page loads it, as a new bundle does
            const s = document.createElement('script');
            s.src = '/recaptcha/enterprise.js?render=' + key;
            document.head.appendChild(s);
            document.getElementById('chat').dataset.sitekey = key;
        }""", NEW_KEY)
        wait_until(lambda: api(stack, "/api/pages")["pages"][0]["sitekey"] == NEW_KEY, 10, "the page to see the key")
        assert ask(stack, "Does the new key work?").startswith(f"[{MODEL}]")
    finally:
        sim(stack, "/__sim/config", {"sitekey": site.RECAPTCHA_SITE_KEY})
        page.reload()
        wait_js(page, "window.__lmarenaBridge && window.__lmarenaBridge.connected")


def test_the_login_gate_is_a_state_of_the_browser_and_lifts_when_the_person_chats_signed_in(stack, page):
    pooled = [c["session_id"] for c in api(stack, "/api/pool")["conversations"] if c["state"] == "ready"]
    sim(stack, "/__sim/fault", {"session": None, "status": 401, "body": json.dumps({"error": "LOGIN_GATE"})})
    with pytest.raises(openai.APIStatusError) as caught:
        ask(stack, "Am I signed in?")
    assert caught.value.status_code == 503 and caught.value.body["code"] == "login_required"
    assert "sign in" in caught.value.message
    [tab] = api(stack, "/api/pages")["pages"]
    assert tab["state"] == "needs_account" and "登录" in tab["advice_zh"]
    still = {c["session_id"]: c["state"] for c in api(stack, "/api/pool")["conversations"]}
    assert all(still[sid] == "ready" for sid in pooled), "never a silent retire of pooled conversations"
    chat_in_page(page, MODEL, "I am signed in, really")  # the person's own Direct chat goes through
    wait_until(lambda: api(stack, "/api/pages")["pages"][0]["state"] == "ready", 10, "the gate to lift")
    assert ask(stack, "And now?").startswith(f"[{MODEL}]")


def test_a_guest_can_still_battle_and_the_battle_carries_the_client_s_messages(stack, browser):
    guest_context = browser.new_context()
    guest = open_arena_page(stack, guest_context, ARENA)
    guest.select_option("#mode", "battle")
    guest.select_option("#model", label=MODEL)
    guest.fill("#input", "Which of you is better?")
    before = guest.evaluate("window.__simAnswers.length")
    guest.click("#send")
    wait_js(guest, f"window.__simAnswers.length >= {before + 2}")
    session = guest.evaluate("window.__simAnswers[window.__simAnswers.length - 1].sessionId")
    assert conversation(stack, session)["model"] == "battle"
    result = sdk(stack).chat.completions.create(model="battle", messages=[{"role": "user", "content": "A battle!"}])
    content = result.choices[0].message.content or ""
    # a new battle turn carrying the client's message (a retry would answer the old question again)
    assert "You said: A battle!" in content and "Which of you" not in content
    guest_context.close()


def test_a_refused_token_says_why_a_key_the_site_does_not_use(stack, page):
    stack.restart_tool(arena_recaptcha_sitekey=site.RECAPTCHA_OLD_KEYS[0])
    try:
        stack.wait_page_connected(timeout=30)
        with pytest.raises(openai.APIStatusError) as caught:
            ask(stack, "Is my key right?")
        assert caught.value.status_code == 503 and "wrong_key" in caught.value.message
        assert "arena_recaptcha_sitekey" in caught.value.message
    finally:
        stack.restart_tool(arena_recaptcha_sitekey="")
        stack.wait_page_connected(timeout=30)
