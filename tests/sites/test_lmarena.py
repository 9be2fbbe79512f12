"""The site module's parsers on every real sample, split at every byte boundary."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from sites import lmarena as site

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "fixtures"
LOCAL_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def _fixture_dir() -> Path:
    return FIXTURES if FIXTURES.is_dir() else LOCAL_FIXTURES


def fixtures() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(_fixture_dir().glob("*.json")):
        for index, call in enumerate(json.loads(path.read_text("utf-8"))):
            out.append((f"{path.stem}[{index}]", call))
    return out


ALL = fixtures()
IDS = [name for name, _ in ALL]


def test_the_samples_are_there():
    assert len(ALL) >= 9, f"expected the nine real samples in {_fixture_dir()}"


@pytest.mark.parametrize("name,call", ALL, ids=IDS)
def test_stream_parse_is_the_same_at_every_split(name, call):
    body = call["response_body"].encode("utf-8")
    whole = site.parse_stream(body)
    assert whole, "every sample has at least one line"
    assert whole[-1].kind == "finish", "every sample ends with its finish line"
    for cut in range(1, len(body)):
        parser = site.StreamParser()
        events = parser.feed(body[:cut]) + parser.feed(body[cut:]) + parser.close()
        assert events == whole, f"split at byte {cut} changed the events"


@pytest.mark.parametrize("name,call", ALL, ids=IDS)
def test_stream_parse_byte_by_byte(name, call):
    body = call["response_body"].encode("utf-8")
    parser = site.StreamParser()
    events = []
    for i in range(len(body)):
        events += parser.feed(body[i : i + 1])
    events += parser.close()
    assert events == site.parse_stream(body)


def _text(events, pos="a"):
    return "".join(e.text for e in events if e.kind == "text" and e.side == pos)


def test_stream_contents_of_the_samples():
    by_name = dict(ALL)
    direct = site.parse_stream(by_name["era_a_direct_create[0]"]["response_body"].encode())
    assert _text(direct) == "Hello there! How can I help you today?"
    retry = site.parse_stream(by_name["era_b_retry[0]"]["response_body"].encode())
    assert _text(retry) == "Hey! What's up? 😊"
    battle = site.parse_stream(by_name["era_a_battle_create[0]"]["response_body"].encode())
    assert _text(battle, "a") == "hello" and _text(battle, "b") == "hello"
    assert [(e.side, e.text) for e in battle if e.kind == "finish"] == [("a", "unknown"), ("b", "stop")]
    thinking = site.parse_stream(by_name["era_b_thinking_create[0]"]["response_body"].encode())
    reasoning = "".join(e.text for e in thinking if e.kind == "reasoning")
    assert reasoning.startswith("哦，用户只发了一个简单的问候") and _text(thinking).startswith("你好！👋")
    kinds = [e.kind for e in thinking]
    assert kinds.index("text") > max(i for i, k in enumerate(kinds) if k == "reasoning")
    image = site.parse_stream(by_name["era_b_image_create[0]"]["response_body"].encode())
    assert image[0].kind == "image" and image[0].text.startswith("https://messages-prod.")
    search = site.parse_stream(by_name["era_b_search_create[0]"]["response_body"].encode())
    citations = [e.data for e in search if e.kind == "citation"]
    assert citations[0]["url"] == "https://blog.google/products/gemini/gemini-3/"
    assert isinstance(citations[-1], list) and len(citations[-1]) == 3


@pytest.mark.parametrize("name,call", ALL, ids=IDS)
def test_request_bodies_of_both_generations(name, call):
    parsed = site.classify_call(call["method"], call["url"])
    assert parsed is not None
    body = json.dumps(call["request_body"]).encode()
    turn = site.parse_request(parsed, body)
    req = call["request_body"]
    if parsed.kind == "retry":
        assert turn.session_id == call["url"].split("/")[-3]
        assert turn.message_ids == {"a": call["url"].split("/")[-1]}
        assert turn.body_format == site.BodyFormat.TOKEN_ONLY
        return
    assert turn.session_id == req["id"]
    assert turn.body_format == (site.BodyFormat.USER_MESSAGE if "userMessage" in req else site.BodyFormat.MESSAGES)
    assert turn.user_message_id == req["userMessageId"]
    assert turn.message_ids["a"] == req["modelAMessageId"]
    assert turn.modality == req["modality"]
    if req.get("mode") == "battle":
        assert turn.mode == "battle" and turn.model_a_id is None and turn.message_ids["b"] == req["modelBMessageId"]
    else:
        assert turn.model_a_id == req["modelAId"] and "b" not in turn.message_ids


def test_classify_call_paths():
    sid, mid = str(uuid.uuid4()), str(uuid.uuid4())
    assert site.classify_call("POST", "/nextjs-api/stream/create-evaluation").kind == "create"
    assert site.classify_call("POST", "/api/stream/create-evaluation").prefix == "/api/stream/"
    post = site.classify_call("POST", f"/nextjs-api/stream/post-to-evaluation/{sid}")
    assert post.kind == "post" and post.session_id == sid
    retry = site.classify_call("PUT", f"/nextjs-api/stream/retry-evaluation-session-message/{sid}/messages/{mid}")
    assert (retry.kind, retry.session_id, retry.message_id) == ("retry", sid, mid)
    assert site.classify_call("GET", "/nextjs-api/stream/create-evaluation") is None
    assert site.classify_call("POST", "/nextjs-api/sign-up") is None
    assert site.classify_call("POST", "/nextjs-api/stream/create-evaluation", ["/api/stream/"]) is None


def test_bad_bodies_are_reported_not_raised_as_anything_else():
    call = site.classify_call("POST", "/nextjs-api/stream/create-evaluation")
    for body in (b"not json", b"[1,2]", b'{"id": "x"}', b"\xff\xfe"):
        with pytest.raises(site.BodyError):
            site.parse_request(call, body)


def test_identity_from_cookie_is_the_user_id_and_never_the_cookie():
    user = str(uuid.uuid4())
    cookie = site.make_auth_cookie(user)
    assert site.identity_from_cookies({site.AUTH_COOKIE: cookie}) == f"user:{user}"
    # chunked cookies (.0, .1) as the site sets them for large sessions
    chunks = {f"{site.AUTH_COOKIE}.0": cookie[:40], f"{site.AUTH_COOKIE}.1": cookie[40:]}
    assert site.identity_from_cookies(chunks) == f"user:{user}"
    opaque = site.identity_from_cookies({site.AUTH_COOKIE: "garbage-value"})
    assert opaque.startswith("cookie:") and "garbage" not in opaque
    assert site.identity_from_cookies({}) is None
    assert site.identity_from_cookies({"provisional_user_id": "p1"}) == "provisional:p1"


def test_extract_models_from_flight_data():
    models = [{"id": "m-1", "publicName": "model-one", "capabilities": {}},
              {"id": "m-2", "publicName": "model-two", "capabilities": {}}]
    flight = "0:" + json.dumps({"initialModels": models, "initialModelAId": "m-1"})
    html = f'<script>self.__next_f.push([1,{json.dumps(flight)}])</script>'
    assert [m["publicName"] for m in site.extract_models(html)] == ["model-one", "model-two"]
    assert site.extract_models("<html>nothing</html>") == []


def test_capabilities_and_modality_of_builtin_models():
    by_name = {m["publicName"]: m for m in site.builtin_models()}
    assert site.modality_of(by_name["gpt-5-high"]) == "chat"
    assert site.capabilities(by_name["gpt-5-high"])["image_input"] is True
    assert site.modality_of(by_name["imagen-4.0-generate-preview-06-06"]) == "image"


def test_rewritten_retry_body_keeps_the_token_and_links_the_chain():
    turns = [site.ChatTurn("system", "Be brief."), site.ChatTurn("user", "Hi"),
             site.ChatTurn("assistant", "Hello!"), site.ChatTurn("user", "2+2?")]
    body = json.loads(site.rewrite_retry_body(b'{"recaptchaV3Token":"tok"}', turns, "sid", "model-uuid"))
    assert body["recaptchaV3Token"] == "tok" and body["modelId"] == "model-uuid"
    chain = body["messages"]
    assert [(m["role"], m["content"]) for m in chain] == [(t.role, t.content) for t in turns]
    assert chain[0]["parentMessageIds"] == []
    for parent, child in zip(chain, chain[1:]):
        assert child["parentMessageIds"] == [parent["id"]]
    assert [m["status"] for m in chain] == ["success"] * 3 + ["pending"]
    assert chain[0]["participantPosition"] == "b" and chain[1]["participantPosition"] == "a"
    assert all(m["evaluationSessionId"] == "sid" for m in chain)
    battle = json.loads(site.rewrite_retry_body(b"{}", turns, "sid", "model-uuid", mode="battle", side="b"))
    assert battle["modelId"] is None and {m["participantPosition"] for m in battle["messages"]} == {"b"}


def test_uuid7_shape_and_order():
    a, b = site.uuid7(), site.uuid7()
    assert uuid.UUID(a).version == 7 and a[:8] <= b[:8]


@pytest.mark.parametrize(
    "status,body,headers,expect",
    [
        (401, '{"error":"User u does not have access to evaluation session s"}', {}, ("retire", "foreign_session")),
        (400, '{"error":"Message already has feedback, cannot retry"}', {}, ("retire", "has_feedback")),
        (403, '{"error":"recaptcha validation failed"}', {}, ("keep", "recaptcha")),
        (429, "Too many requests", {"retry-after": "0", "ratelimit-modality": "image",
                                    "ratelimit": "limit=0, remaining=0, reset=0"}, ("cool", "rate_limited")),
        (422, '{"error":"Request rejected: Content violates our terms"}', {}, ("keep", "content_filter")),
        (403, "<html><title>Just a moment...</title>", {}, ("keep", "challenge")),
        (500, "oops", {}, ("keep", "upstream_error")),
    ],
)
def test_classify_failure(status, body, headers, expect):
    failure = site.classify_failure(status, body, headers)
    assert (failure.conversation, failure.kind) == expect


def test_rate_limit_wait_reads_the_site_headers():
    assert site.rate_limit_wait({"ratelimit": "limit=3000, remaining=0, reset=39"}) == 39
    assert site.rate_limit_wait({"ratelimit-reset": "1000"}, now=900.0) == 1000  # small values are seconds
    assert site.rate_limit_wait({"ratelimit-reset": "1764568800"}, now=1764568700.0) == 100
    assert site.rate_limit_wait({}) == 60


# ---------------------------------------------------------------- 2026


@pytest.mark.parametrize("status,body,headers,authed,kind,fate", [
    (401, '{"error":"LOGIN_GATE"}', {}, True, "login_gate", "keep"),
    (401, '{"code":"LOGIN_GATE","message":"Sign in"}', {}, True, "login_gate", "keep"),
    (500, "Internal Server Error", {}, False, "login_gate", "keep"),  # no session cookie at all
    (500, "Internal Server Error", {}, True, "upstream_error", "keep"),
    (401, '{"error":"User u does not have access to evaluation session s"}', {}, True, "foreign_session", "retire"),
    (400, '{"error":"Bad next turn request in Battles in Direct mode. DIRECT was requested, but expected a BATTLE '
          'turn"}', {}, True, "battle_turn", "retire"),
    (400, '{"error":"Evaluation session ID seems spoofed, offset too big"}', {}, True, "spoofed_id", "keep"),
    (301, "", {"Location": "https://arena.ai/nextjs-api/stream/create-evaluation"}, True, "moved", "keep"),
    (405, "", {}, True, "moved", "keep"),
    (429, '{"error":"prompt failed"}', {}, True, "prompt_refused", "keep"),
    (429, "Too many", {"ratelimit": "limit=1800, remaining=0, reset=300"}, True, "rate_limited", "cool"),
])
def test_2026_failures_are_classified(status, body, headers, authed, kind, fate):
    failure = site.classify_failure(status, body, headers, had_auth_cookie=authed)
    assert (failure.kind, failure.conversation) == (kind, fate)
    if kind == "rate_limited":
        assert failure.retry_after == 300


def test_2026_stream_lines():
    heartbeat, image_b, provider, platform, step, unknown, garbage = (site.parse_line(line) for line in (
        'a2:[{"type":"heartbeat"}]',
        'b2:[{"type":"image","image":"https://x/y.png","mimeType":"image/png"}]',
        'a3:"{\\"error\\":{\\"code\\":\\"moderation_blocked\\"}}"',
        'ae:{"message":"Internal platform error"}',
        'ae:{"finishReason":"stop","isContinued":false}',
        'ax:{"secret":"text","n":[1,2]}',
        "not a line at all",
    ))
    assert heartbeat.kind == "heartbeat" and not heartbeat.text
    assert (image_b.kind, image_b.side, image_b.text) == ("image", "b", "https://x/y.png")
    assert provider.kind == "error" and site.stream_error_kind(provider.text) == "content_filter"
    assert platform.kind == "error" and platform.text == "Internal platform error"
    assert site.stream_error_kind(platform.text) == "stream_error"
    assert step.kind == "other", "a step's end is not an error"
    assert (unknown.kind, unknown.data) == ("unknown", "x:{n:[int],secret:str}"), "the shape, never the words"
    assert garbage.kind == "unknown" and "not a line" not in str(garbage.data).replace("?:", "")
    finish = site.parse_line('ad:{"finishReason":"stop","usage":{"promptTokens":12,"completionTokens":34}}')
    assert site.usage_of(finish) == {"prompt_tokens": 12, "completion_tokens": 34}
    assert site.usage_of(site.parse_line('ad:{"finishReason":"stop","usage":{"promptTokens":"12"}}')) is None
    assert site.usage_of(site.parse_line('ad:{"finishReason":"stop"}')) is None


def test_2026_bodies_the_tool_writes():
    body, user_id, assistant_id = site.build_create_body(
        site.BodyFormat.USER_MESSAGE, site.uuid7(), "model-uuid", "chat", [site.ChatTurn("user", "hi")])
    assert body["mode"] == "direct-battle" and body["modelAId"] == "model-uuid"
    assert body["modelBMessageId"] not in (user_id, assistant_id) and body["userMessage"]["metadata"] == {}
    for key in ("id", "userMessageId", "modelAMessageId", "modelBMessageId"):  # UUIDv7s of the current clock
        at = int(body[key].replace("-", "")[:12], 16) / 1000
        assert body[key][14] == "7" and abs(at - time.time()) < 5
    post, _, _ = site.build_create_body(site.BodyFormat.USER_MESSAGE, "sid", "model-uuid", "chat",
                                        [site.ChatTurn("user", "hi")], call="post", mode="direct")
    assert "mode" not in post, "a plain direct post as the late-2025 client sent it"
    battle, _, _ = site.build_create_body(site.BodyFormat.USER_MESSAGE, "sid", None, "chat",
                                          [site.ChatTurn("user", "hi")], call="post", mode="battle")
    assert battle["mode"] == "battle" and "modelAId" not in battle and battle["modelBMessageId"]


def test_2026_session_cookies_tell_a_guest():
    guest = {site.AUTH_COOKIE: site.make_auth_cookie("u1", anonymous=True)}
    member = {site.AUTH_COOKIE: site.make_auth_cookie("u2", anonymous=False)}
    assert site.session_info(guest) == ("user:u1", True) and site.session_info(member) == ("user:u2", False)
    value = site.make_auth_cookie("u3", anonymous=False)
    split = {f"{site.AUTH_COOKIE}.0": value[:40], f"{site.AUTH_COOKIE}.1": value[40:]}  # > 4 KB: split in two
    assert site.session_info(split) == ("user:u3", False)
    assert site.session_info({}) == (None, None)


def test_2026_models_router_and_selectable():
    assert site.is_router({"publicName": "Max", "organization": "boss-bandit"})
    assert not site.is_router({"publicName": "gemini-2.5-pro", "organization": "google"})
    assert site.user_selectable({}) and not site.user_selectable({"userSelectable": False})


def test_a_body_unlike_the_site_s_own_is_drift_by_field_names_only():
    body = {"id": "x", "modality": "chat", "mode": "direct", "modelAId": "m", "userMessageId": "u",
            "modelAMessageId": "a", "recaptchaV3Token": "t", "userMessage": {"content": "hi", "attachmentsV2": []},
            "turnstileToken": "secret-value"}
    assert site.body_drift("create", json.dumps(body).encode()) == [
        "create body: new field turnstileToken", "create userMessage: new field attachmentsV2"]
    assert site.body_drift("retry", b'{"token": "x"}') == [
        "retry body: missing field recaptchaV3Token", "retry body: new field token"]
    assert all("secret-value" not in s for s in site.body_drift("create", json.dumps(body).encode()))


@pytest.mark.parametrize("path, shape", [
    ("/", "/"), ("/?mode=direct", "/"), ("/c/019a5c4d-0173-7d1e-9a4b-0d1b2c3d4e5f", "/c/{id}"),
    ("/text/direct", "/text/direct"), ("/leaderboard", None), ("/nextjs-api/stream/x", None),
])
def test_chat_pages_are_known_by_their_path(path, shape):
    assert site.chat_page_shape(path) == shape
