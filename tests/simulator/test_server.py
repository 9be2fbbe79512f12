"""The simulator behaves as the site is known to: tokens, ownership, generations, faults."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from simulator.answers import answer_for
from simulator.server import Generation, SimConfig, Simulator
from sites import lmarena as site

GEMINI_ID = "e2d9d353-6dbe-4414-bf87-bd289d523726"


def client(generation: Generation = Generation.RETRY_HONOURED, signed_in: bool = True, **config) -> TestClient:
    c = TestClient(Simulator(SimConfig(generation=generation, cadence_ms=0, **config)).app())
    c.get("/")  # a guest session on the first visit
    if signed_in:
        c.post("/__sim/sign-in")  # a registered account (Direct needs one from 2026 on)
    return c


def token(c: TestClient, action: str, sitekey: str = site.RECAPTCHA_SITE_KEY) -> str:
    return c.post("/__sim/recaptcha", json={"action": action, "sitekey": sitekey}).json()["token"]


def create_body(c: TestClient, text: str = "hello", mode: str = "direct", **extra) -> dict:
    body = {"id": site.uuid7(), "mode": mode, "modelAId": GEMINI_ID, "userMessageId": site.uuid7(),
            "modelAMessageId": site.uuid7(), "modelBMessageId": site.uuid7(), "modality": "chat",
            "userMessage": {"content": text, "experimental_attachments": [], "metadata": {}},
            "recaptchaV3Token": token(c, site.ACTION_SUBMIT)}
    return {**body, **extra}


def create(c: TestClient, text: str = "hello", mode: str = "direct") -> tuple[str, str, str]:
    body = create_body(c, text, mode)
    r = c.post("/nextjs-api/stream/create-evaluation", content=json.dumps(body))
    assert r.status_code == 200, r.text
    return body["id"], body["modelAMessageId"], r.text


def text_of(body: str) -> str:
    return "".join(e.text for e in site.parse_stream(body.encode()) if e.kind == "text")


def test_page_embeds_models_sets_a_cookie_and_a_nonce_csp():
    c = TestClient(Simulator(SimConfig()).app())
    r = c.get("/?mode=direct")
    assert site.AUTH_COOKIE in r.cookies
    assert "nonce-" in r.headers["content-security-policy"]
    models = site.extract_models(r.text)
    assert any(m["id"] == GEMINI_ID for m in models) and len(models) > 100


def test_expired_tokens_are_refused():
    sim = Simulator(SimConfig(cadence_ms=0))
    c = TestClient(sim.app())
    c.get("/")
    c.post("/__sim/sign-in")
    sid, aid, _ = create(c)
    stale = token(c, site.ACTION_RETRY)
    action, _expires, key = sim.tokens[stale]
    sim.tokens[stale] = (action, 0.0, key)  # minted long ago
    path = f"/nextjs-api/stream/retry-evaluation-session-message/{sid}/messages/{aid}"
    assert c.put(path, content=json.dumps({"recaptchaV3Token": stale})).status_code == 403


def test_tokens_are_single_use_and_bound_to_their_action():
    c = client()
    sid, aid, _ = create(c)
    path = f"/nextjs-api/stream/retry-evaluation-session-message/{sid}/messages/{aid}"
    wrong = token(c, site.ACTION_SUBMIT)
    assert c.put(path, content=json.dumps({"recaptchaV3Token": wrong})).status_code == 403
    good = token(c, site.ACTION_RETRY)
    assert c.put(path, content=json.dumps({"recaptchaV3Token": good})).status_code == 200
    assert c.put(path, content=json.dumps({"recaptchaV3Token": good})).status_code == 403, "reused"
    assert c.put(path, content=json.dumps({})).status_code == 403, "missing"


@pytest.mark.parametrize("generation", list(Generation))
def test_retry_generations(generation):
    c = client(generation)
    sid, aid, first = create(c, "the original question")
    assert text_of(first) == answer_for("gemini-2.5-pro", "chat", [("user", "the original question")])[1]
    chain = site.build_message_chain([site.ChatTurn("user", "a rewritten question")], sid)
    body = {"messages": chain, "modelId": GEMINI_ID, "recaptchaV3Token": token(c, site.ACTION_RETRY)}
    r = c.put(f"/nextjs-api/stream/retry-evaluation-session-message/{sid}/messages/{aid}", content=json.dumps(body))
    honoured = answer_for("gemini-2.5-pro", "chat", [("user", "a rewritten question")])[1]
    kept = answer_for("gemini-2.5-pro", "chat", [("user", "the original question")])[1]
    assert text_of(r.text) == (honoured if generation.retry_honours_messages else kept)


def test_another_identity_gets_401_and_unknown_models_404():
    owner = client()
    sid, aid, _ = create(owner)
    stranger = TestClient(owner.app)
    stranger.get("/")
    stranger.post("/__sim/sign-in")
    path = f"/nextjs-api/stream/retry-evaluation-session-message/{sid}/messages/{aid}"
    r = stranger.put(path, content=json.dumps({"recaptchaV3Token": token(stranger, site.ACTION_RETRY)}))
    assert r.status_code == 401 and "does not have access to evaluation session" in r.json()["error"]
    body = {"id": site.uuid7(), "mode": "direct", "modelAId": "nope", "userMessageId": site.uuid7(),
            "modelAMessageId": site.uuid7(), "userMessage": {"content": "x"}, "modality": "chat",
            "recaptchaV3Token": token(owner, site.ACTION_SUBMIT)}
    assert owner.post("/nextjs-api/stream/create-evaluation", content=json.dumps(body)).status_code == 404


def test_injected_faults_are_one_shot():
    c = client()
    sid, aid, _ = create(c)
    c.post("/__sim/fault", json={"session": sid, "status": 429, "body": "Too many", "headers": {"retry-after": "5"}})
    path = f"/nextjs-api/stream/retry-evaluation-session-message/{sid}/messages/{aid}"
    r = c.put(path, content=json.dumps({"recaptchaV3Token": token(c, site.ACTION_RETRY)}))
    assert r.status_code == 429 and r.headers["retry-after"] == "5"
    r = c.put(path, content=json.dumps({"recaptchaV3Token": token(c, site.ACTION_RETRY)}))
    assert r.status_code == 200


# ---------------------------------------------------------------- 2026


def test_2026_direct_needs_an_account_and_a_guest_may_battle():
    guest = client(Generation.SITE_2026, signed_in=False)
    for mode in ("direct", "direct-battle"):
        r = guest.post("/nextjs-api/stream/create-evaluation", content=json.dumps(create_body(guest, mode=mode)))
        assert r.status_code == 401 and r.json()["error"] == "LOGIN_GATE"
    battle = create_body(guest, mode="battle")
    del battle["modelAId"]
    r = guest.post("/nextjs-api/stream/create-evaluation", content=json.dumps(battle))
    assert r.status_code == 200 and any(e.side == "b" for e in site.parse_stream(r.content))
    signed_in = client(Generation.SITE_2026)
    sid, _, text = create(signed_in, "hello", mode="direct-battle")
    assert "You said: hello" in text_of(text)


def test_2026_tokens_must_be_minted_with_the_site_s_current_key():
    c = client(Generation.SITE_2026)
    stale_key = site.RECAPTCHA_OLD_KEYS[0]
    body = create_body(c, recaptchaV3Token=token(c, site.ACTION_SUBMIT, sitekey=stale_key))
    assert c.post("/nextjs-api/stream/create-evaluation", content=json.dumps(body)).status_code == 403
    page = c.get("/text/direct")
    assert f"enterprise.js?render={site.RECAPTCHA_SITE_KEY}" in page.text
    assert 'data-direct-mode="direct-battle"' in page.text


def test_2026_answers_carry_heartbeats_and_the_site_s_token_counts():
    c = client(Generation.SITE_2026, heartbeat_every=3)
    _, _, text = create(c, "count my tokens please", mode="direct-battle")
    events = site.parse_stream(text.encode())
    assert events[0].kind == "heartbeat" and sum(e.kind == "heartbeat" for e in events) >= 3
    finish = events[-1] if events[-1].kind == "finish" else events[-2]
    assert site.usage_of(finish) == {"prompt_tokens": len("count my tokens please") // 4,
                                     "completion_tokens": len(text_of(text)) // 4}


def test_2026_ids_far_from_the_site_s_clock_are_refused_as_spoofed():
    c = client(Generation.SITE_2026, clock_offset=2 * 3600)  # the site's clock two hours ahead of ours
    r = c.post("/nextjs-api/stream/create-evaluation", content=json.dumps(create_body(c)))
    assert r.status_code == 400 and "spoofed" in r.json()["error"]


def test_2026_a_direct_battle_chat_can_turn_into_a_battle_turn_and_then_refuses_direct_turns():
    c = client(Generation.SITE_2026)
    sid, _, _ = create(c, "first", mode="direct-battle")
    c.post("/__sim/fault", json={"session": sid, "battle_turn": True})
    follow = create_body(c, "second", mode="direct-battle", id=sid)
    r = c.post(f"/nextjs-api/stream/post-to-evaluation/{sid}", content=json.dumps(follow))
    assert r.status_code == 200 and {e.side for e in site.parse_stream(r.content) if e.kind == "text"} == {"a", "b"}
    third = create_body(c, "third", mode="direct-battle", id=sid)
    r = c.post(f"/nextjs-api/stream/post-to-evaluation/{sid}", content=json.dumps(third))
    assert r.status_code == 400 and "expected a BATTLE turn" in r.json()["error"]


def test_2026_lists_a_hidden_twin_and_the_router_but_offers_only_what_a_person_may_pick():
    c = client(Generation.SITE_2026)
    page = c.get("/text/direct").text
    models = site.extract_models(page)
    twins = [m for m in models if m["publicName"] == "gemini-2.5-pro"]
    assert len(twins) == 2 and sum(site.user_selectable(m) for m in twins) == 1
    assert any(site.is_router(m) for m in models)
    assert page.count(">gemini-2.5-pro</option>") == 1


def test_2026_lmarena_ai_answers_301_to_arena_ai():
    sim = Simulator(SimConfig(generation=Generation.SITE_2026, arena_port=1))  # any other port is lmarena.ai
    c = TestClient(sim.app())
    r = c.post("/nextjs-api/stream/create-evaluation", content=b"{}", follow_redirects=False)
    assert r.status_code == 301 and r.headers["location"] == "https://arena.ai/nextjs-api/stream/create-evaluation"
    sim.config.redirect_to_arena, sim.config.redirect_streams_only = False, True
    assert c.get("/text/direct", follow_redirects=False).status_code == 200, "pages still load"
    r = c.post("/nextjs-api/stream/create-evaluation", content=b"{}", follow_redirects=False)
    assert r.status_code == 301
