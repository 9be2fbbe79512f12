"""The simulator behaves as the site is known to: tokens, ownership, generations, faults."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from simulator.answers import answer_for
from simulator.server import Generation, SimConfig, Simulator
from sites import lmarena as site

GEMINI_ID = "e2d9d353-6dbe-4414-bf87-bd289d523726"


def client(generation: Generation = Generation.RETRY_HONOURED) -> TestClient:
    c = TestClient(Simulator(SimConfig(generation=generation, cadence_ms=0)).app())
    c.get("/")  # the anonymous session cookie
    return c


def token(c: TestClient, action: str) -> str:
    return c.post("/__sim/recaptcha", json={"action": action}).json()["token"]


def create(c: TestClient, text: str = "hello") -> tuple[str, str, str]:
    sid, uid, aid = site.uuid7(), site.uuid7(), site.uuid7()
    body = {"id": sid, "mode": "direct", "modelAId": GEMINI_ID, "userMessageId": uid, "modelAMessageId": aid,
            "userMessage": {"content": text, "experimental_attachments": []}, "modality": "chat",
            "recaptchaV3Token": token(c, site.ACTION_SUBMIT)}
    r = c.post("/nextjs-api/stream/create-evaluation", content=json.dumps(body))
    assert r.status_code == 200, r.text
    return sid, aid, r.text


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
    sid, aid, _ = create(c)
    stale = token(c, site.ACTION_RETRY)
    action, _expires = sim.tokens[stale]
    sim.tokens[stale] = (action, 0.0)  # minted long ago
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
