"""End to end, conversation mirroring on the generations that keep the history on the server
(`history-kept`, and `2026`): browser, proxy, API and simulator.

The canary picks `mirror` there; a 10-turn conversation from the openai SDK and a SillyTavern-style one
(system prompt, character card, a chat opened mid-way, a regenerate, an edit) are answered with the site
holding each turn once; no text of one client conversation ever reaches the site conversation of another;
eight conversations on a model with four pooled conversations never put more than four requests at the
site at once.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.stack import Stack, sign_in
from tests.conftest import ARTIFACTS, open_arena_page, running_stack, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"
GEMINI_ID = "e2d9d353-6dbe-4414-bf87-bd289d523726"
PER_MODEL = 4


@pytest.fixture(scope="module", params=["history-kept", "2026"])
def stack(request: Any) -> Iterator[Stack]:
    with running_stack(f"mirror-{request.param}", request.param, cadence_ms=5, arena_prefill="off",
                       arena_prefill_interval=0, arena_sessions_per_model=PER_MODEL) as st:
        yield st


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = open_arena_page(stack, context, "https://arena.ai/text/direct")
    if tab.query_selector("#sign-in"):  # 2026: Direct needs an account
        sign_in(tab)
    stack.wait_page_connected()
    yield tab
    context.close()


def api(stack: Stack, method: str, path: str, body: Any = None) -> Any:
    return httpx.request(method, stack.api_base + path, json=body, timeout=30).json()


def sim(stack: Stack, path: str) -> Any:
    return httpx.get(stack.sim_base + path, timeout=10).json()


def free(stack: Stack) -> list[str]:
    return [c["session_id"] for c in api(stack, "GET", "/api/pool")["conversations"]
            if c["model"] == MODEL and c["free"] and c["state"] == "ready"]


def ask(stack: Stack, messages: list[dict[str, str]]) -> str:
    client = openai.OpenAI(base_url=stack.api_base + "/v1", api_key="unused", max_retries=0, timeout=60)
    result = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    return result.choices[0].message.content or ""


def site_users(stack: Stack, session_id: str) -> list[str]:
    return [m["content"] for m in sim(stack, f"/__sim/sessions/{session_id}")["messages"] if m["role"] == "user"]


def sessions_of(stack: Stack, since: int, marker: str) -> list[str]:
    """The site conversations that the creates and posts since log entry `since` carrying `marker` went to
    (the keeper's background "Hi" conversations are not the test's)."""
    out = []
    for entry in sim(stack, "/__sim/log")[since:]:
        if entry["method"] != "POST" or marker not in json.dumps(entry["body"], ensure_ascii=False):
            continue
        out.append(entry["body"]["id"] if entry["path"].endswith("create-evaluation") else entry["path"].split("/")[-1])
    return out


def test_prefill_then_the_canary_chooses_mirror(stack, page):
    run = api(stack, "POST", "/api/prefill", {"models": [MODEL], "per_model": PER_MODEL})["run"]
    assert run["total"] == PER_MODEL
    wait_until(lambda: not api(stack, "GET", "/api/prefill")["run"]["running"], 60, "the prefill")
    assert len(free(stack)) == PER_MODEL
    verdict = api(stack, "POST", "/api/canary")
    assert verdict["current"] == "mirror"
    assert [(p["strategy"], p["ok"]) for p in verdict["canary"]["probes"]] == [("retry", False), ("mirror", True)]
    # the probe's conversation holds its nonce: retired, and the keeper makes another one
    wait_until(lambda: len(free(stack)) == PER_MODEL, 30, "the pool topped up again")


def test_a_ten_turn_conversation_is_held_by_the_site_once(stack, page):
    since = len(sim(stack, "/__sim/log"))
    messages: list[dict[str, str]] = []
    for turn in range(1, 11):
        messages.append({"role": "user", "content": f"turn {turn}: what comes after {turn}?"})
        answer = ask(stack, messages)
        assert f"You said: turn {turn}: what comes after {turn}?" in answer
        messages.append({"role": "assistant", "content": answer})
    [session] = set(sessions_of(stack, since, "what comes after"))
    assert site_users(stack, session) == ["Hi"] + [f"turn {n}: what comes after {n}?" for n in range(1, 11)]
    record = next(r for r in api(stack, "GET", "/api/mirrors")["client_conversations"] if r["session_id"] == session)
    assert record["turns"] == 10 and record["model"] == MODEL


def test_a_sillytavern_chat_with_a_card_a_regenerate_and_an_edit(stack, page):
    card = [{"role": "system", "content": "You are Seraphina, a kind guardian of the forest."},
            {"role": "system", "content": "[Character card] Seraphina: gentle, wise, speaks softly."},
            {"role": "assistant", "content": "*Seraphina smiles.* Welcome, traveller."},
            {"role": "user", "content": "Where am I?"}]
    since = len(sim(stack, "/__sim/log"))
    first = ask(stack, card)  # opened mid-way: history written once, in the documented format
    [session] = set(sessions_of(stack, since, "Where am I?"))
    written = site_users(stack, session)[1]
    assert written.startswith("[The conversation so far.") and "=== Assistant ===" in written
    chat = card + [{"role": "assistant", "content": first}, {"role": "user", "content": "Who are you?"}]
    second = ask(stack, chat)
    regenerated = ask(stack, chat)  # the client's regenerate
    retry = sim(stack, "/__sim/log")[-1]
    assert retry["method"] == "PUT" and set(retry["body"]) == {"recaptchaV3Token"}, "the site's own retry"
    assert session in retry["path"] and regenerated.split("(turns=")[0] == second.split("(turns=")[0]
    chat += [{"role": "assistant", "content": regenerated}, {"role": "user", "content": "Tell me of the forest."}]
    ask(stack, chat)
    assert site_users(stack, session) == ["Hi", written, "Who are you?", "Tell me of the forest."]
    edited = [dict(m) for m in chat]
    edited[3]["content"] = "Where am I, really?"  # the person edits an earlier message
    since = len(sim(stack, "/__sim/log"))
    ask(stack, edited)
    [other] = set(sessions_of(stack, since, "Where am I, really?"))
    assert other != session and "Where am I, really?" in site_users(stack, other)[-1]
    assert site_users(stack, session)[-1] == "Tell me of the forest.", "the first conversation is left as it was"


def test_no_text_of_one_client_conversation_reaches_another(stack, page):
    x: list[dict[str, str]] = []
    y: list[dict[str, str]] = [{"role": "system", "content": "You are terse."}]
    for turn in range(3):
        for chat, nonce in ((x, "nonce-x-7781"), (y, "nonce-y-4402")):
            chat.append({"role": "user", "content": f"{nonce} turn {turn}"})
            chat.append({"role": "assistant", "content": ask(stack, chat)})
    mirrors = api(stack, "GET", "/api/mirrors")["client_conversations"]
    held = {r["session_id"]: json.dumps(sim(stack, f"/__sim/sessions/{r['session_id']}")) for r in mirrors}
    with_x = [s for s, text in held.items() if "nonce-x-7781" in text]
    with_y = [s for s, text in held.items() if "nonce-y-4402" in text]
    assert len(with_x) == 1 and len(with_y) == 1 and with_x != with_y
    assert "nonce-y-4402" not in held[with_x[0]] and "nonce-x-7781" not in held[with_y[0]]
    pool = {c["session_id"]: c for c in api(stack, "GET", "/api/pool")["conversations"]}
    assert pool[with_x[0]]["owner"] != pool[with_y[0]]["owner"] and not pool[with_x[0]]["free"]


def test_eight_conversations_on_four_pooled_ones_put_at_most_four_at_the_site(stack, page):
    wait_until(lambda: len(free(stack)) == PER_MODEL, 30, "four free conversations")
    httpx.post(stack.sim_base + "/__sim/reset", timeout=10)
    httpx.post(stack.sim_base + "/__sim/config", json={"cadence_ms": 40}, timeout=10)
    try:
        with ThreadPoolExecutor(8) as workers:
            answers = list(workers.map(lambda i: ask(stack, [{"role": "user", "content": f"parallel {i}"}]),
                                       range(8)))
    finally:
        httpx.post(stack.sim_base + "/__sim/config", json={"cadence_ms": 5}, timeout=10)
    assert all(f"You said: parallel {i}" in a for i, a in enumerate(answers))
    stats = sim(stack, "/__sim/stats")
    assert stats["max_by_model"][GEMINI_ID] <= PER_MODEL
    assert max(stats["max_by_session"].values()) == 1, "never two requests on one conversation"
    sessions = {s for s in sessions_of(stack, 0, "parallel ")}
    assert len(sessions) == 8, "a site conversation each"


def test_the_dashboard_shows_client_conversations_and_which_conversation_each_has(stack, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1400})
    tab = context.new_page()
    tab.goto(stack.api_base + "/dashboard")
    mirrors = api(stack, "GET", "/api/mirrors")["client_conversations"]
    assert mirrors
    tab.wait_for_selector("#clients tr")
    rows = tab.locator("#clients tr")
    wait_until(lambda: rows.count() == min(50, len(mirrors)), 10, "a row per client conversation")
    first = rows.nth(0).inner_text()
    assert mirrors[0]["key"] in first and mirrors[0]["session_id"][:13] in first
    model_row = tab.locator(f'#models tr[data-model="{MODEL}"]')
    owned = int(model_row.locator("td.owned").inner_text())
    clients = int(model_row.locator("td.clients").inner_text())
    assert clients == sum(1 for m in mirrors if m["model"] == MODEL) and owned >= 1
    tab.screenshot(path=str(ARTIFACTS / f"dashboard-mirror-{stack.generation}.png"), full_page=True)
    context.close()


def test_a_client_conversation_goes_on_in_its_own_site_conversation_after_a_restart(stack, page):
    chat = [{"role": "user", "content": "before the restart: keep 31337 in mind"}]
    since = len(sim(stack, "/__sim/log"))
    chat.append({"role": "assistant", "content": ask(stack, chat)})
    [session] = set(sessions_of(stack, since, "31337"))
    stack.restart_tool()
    stack.wait_page_connected(timeout=30)
    chat.append({"role": "user", "content": "after the restart: which number?"})
    since = len(sim(stack, "/__sim/log"))
    ask(stack, chat)
    assert sessions_of(stack, since, "which number?") == [session]
    assert site_users(stack, session)[-2:] == ["before the restart: keep 31337 in mind",
                                               "after the restart: which number?"]
