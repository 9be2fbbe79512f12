"""The mitmproxy addons, hook by hook, on flows made with mitmproxy's own test helpers."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.test import taddons, tflow

from addons.capture import Capture
from addons.channel import ApiAddress, Channel
from addons.classify import META_CALL, META_CHANNEL, META_HOST, Classify
from addons.inject import Injector, csp_nonce
from addons.rewrite import JOB_HEADER, Rewriter
from openai_front.jobs import Job, JobDone, JobFailed
from openai_front.services import Services
from pool_store.pool import Conversation
from sites import lmarena as site

FIXTURES = Path(__file__).resolve().parent / "fixtures"
GEMINI_ID = "e2d9d353-6dbe-4414-bf87-bd289d523726"  # gemini-2.5-pro in the built-in table
USER = str(uuid.uuid4())
COOKIE = f"{site.AUTH_COOKIE}={site.make_auth_cookie(USER)}; cf_clearance=cfsecret"


def make_flow(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> http.HTTPFlow:
    req = http.Request.make(method, url, body, {"cookie": COOKIE, **(headers or {})})
    return tflow.tflow(req=req)


def classified(method: str, url: str, body: bytes = b"", **kw) -> http.HTTPFlow:
    flow = make_flow(method, url, body, **kw)
    Classify().requestheaders(flow)
    return flow


@pytest.fixture(autouse=True)
def mitmproxy_context():
    # mitmproxy's log handler needs a live master for the whole test
    with taddons.context() as tctx:
        yield tctx


@pytest.fixture
def services() -> Services:
    return Services()


# ---------------------------------------------------------------- classify


def test_classify_marks_arena_flows_only(mitmproxy_context):
    classify = Classify()
    mitmproxy_context.master.addons.add(classify)
    mitmproxy_context.configure(classify, arena_hosts="lmarena.ai,arena.ai")
    flow = make_flow("POST", "https://lmarena.ai/nextjs-api/stream/create-evaluation", b"{}")
    classify.requestheaders(flow)
    assert flow.metadata[META_HOST] == "lmarena.ai"
    assert flow.metadata[META_CALL].kind == "create"
    assert flow.request.headers["accept-encoding"] == "identity"
    other = make_flow("POST", "https://example.com/nextjs-api/stream/create-evaluation", b"{}")
    classify.requestheaders(other)
    assert META_HOST not in other.metadata and META_CALL not in other.metadata
    channel = make_flow("GET", "https://arena.ai/__bridge/ws")
    classify.requestheaders(channel)
    assert channel.metadata[META_CHANNEL] is True


def test_classify_rejects_empty_hosts(mitmproxy_context):
    classify = Classify()
    mitmproxy_context.master.addons.add(classify)
    with pytest.raises(Exception, match="arena_hosts"):
        mitmproxy_context.configure(classify, arena_hosts=" , ")


# ---------------------------------------------------------------- inject


PAGE = "<html><head><title>x</title></head><body>hi</body></html>"


def page_flow(csp: str | None, html: str = PAGE) -> http.HTTPFlow:
    flow = classified("GET", "https://lmarena.ai/?mode=direct")
    headers = {"content-type": "text/html; charset=utf-8"}
    if csp:
        headers["content-security-policy"] = csp
    flow.response = http.Response.make(200, html.encode(), headers)
    return flow


def test_inject_reuses_the_csp_nonce(services):
    injector = Injector(services.pages, services.models)
    flow = page_flow("default-src 'self'; script-src 'self' 'nonce-abc123' 'strict-dynamic'")
    injector.response(flow)
    text = flow.response.get_text()
    assert '<head><script nonce="abc123" data-lmarena-bridge>' in text
    assert f'"secret": "{services.pages.secret}"' in text
    assert "nonce-abc123" in flow.response.headers["content-security-policy"]


def test_inject_strips_a_csp_without_nonce(services):
    injector = Injector(services.pages, services.models)
    flow = page_flow("default-src 'self'; script-src 'self'")
    injector.response(flow)
    assert "content-security-policy" not in flow.response.headers
    assert "data-lmarena-bridge" in flow.response.get_text()


def test_inject_learns_the_page_models(services):
    models = [{"id": "019b0000-0000-7000-8000-000000000001", "publicName": "page-only-model", "capabilities": {}}]
    flight = json.dumps("0:" + json.dumps({"initialModels": models}))
    html = PAGE.replace("</body>", f"<script>self.__next_f.push([1,{flight}])</script></body>")
    Injector(services.pages, services.models).response(page_flow(None, html))
    assert services.models.resolve("PAGE-ONLY-MODEL").id == models[0]["id"]


def test_inject_leaves_other_responses_alone(services):
    injector = Injector(services.pages, services.models)
    flow = classified("GET", "https://lmarena.ai/data.json")
    flow.response = http.Response.make(200, b'{"a":1}', {"content-type": "application/json"})
    injector.response(flow)
    assert flow.response.content == b'{"a":1}'
    other = make_flow("GET", "https://example.com/")
    other.response = http.Response.make(200, PAGE.encode(), {"content-type": "text/html"})
    injector.response(other)
    assert "data-lmarena-bridge" not in other.response.get_text()


def test_csp_nonce_parsing():
    assert csp_nonce("script-src 'nonce-x1' 'self'") == "x1"
    assert csp_nonce("default-src 'self' 'nonce-dd'; img-src *") == "dd"
    assert csp_nonce("img-src 'nonce-img'") is None


# ---------------------------------------------------------------- channel


def test_channel_routes_to_the_api_with_identity_and_without_cookies():
    channel = Channel(ApiAddress("127.0.0.1", 5999))
    flow = classified("GET", "https://lmarena.ai/__bridge/ws", headers={"x-bridge-identity": "user:spoofed"})
    channel.request(flow)
    assert (flow.request.scheme, flow.request.host, flow.request.port) == ("http", "127.0.0.1", 5999)
    assert flow.request.headers["x-bridge-identity"] == f"user:{USER}"
    assert "cookie" not in flow.request.headers


def test_channel_ignores_other_paths():
    channel = Channel(ApiAddress("127.0.0.1", 5999))
    flow = classified("GET", "https://lmarena.ai/?x=1")
    channel.request(flow)
    assert flow.request.host == "lmarena.ai"


# ---------------------------------------------------------------- rewrite + capture


def sample(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))[0]


def feed(capture: Capture, flow: http.HTTPFlow, body: bytes, status: int = 200, size: int = 7,
         headers: dict[str, str] | None = None) -> None:
    ctype = "text/event-stream" if status == 200 else "application/json"
    flow.response = http.Response.make(status, b"", {"content-type": ctype, **(headers or {})})
    capture.responseheaders(flow)
    if flow.response.stream:
        for i in range(0, len(body), size):
            assert flow.response.stream(body[i : i + size]) == body[i : i + size]
        flow.response.stream(b"")
    else:
        flow.response.content = body
    capture.response(flow)


def test_capture_records_a_person_s_conversation(services):
    call = sample("era_b_direct_create")
    body = dict(call["request_body"], modelAId=GEMINI_ID)
    capture = Capture(services)
    flow = classified("POST", "https://lmarena.ai" + call["url"], json.dumps(body).encode())
    capture.request(flow)
    feed(capture, flow, call["response_body"].encode())
    conv = services.pool.get(body["id"])
    assert conv is not None
    assert (conv.model, conv.message_id, conv.identity, conv.mode, conv.source) == (
        "gemini-2.5-pro", body["modelAMessageId"], f"user:{USER}", "direct", "captured")
    stored = json.dumps(conv.to_record())
    assert "REDACTED" not in stored and "cfsecret" not in stored and "recaptcha" not in stored.lower()


def test_capture_ignores_a_conversation_whose_answer_broke(services):
    call = sample("era_b_direct_create")
    capture = Capture(services)
    flow = classified("POST", "https://lmarena.ai" + call["url"], json.dumps(call["request_body"]).encode())
    capture.request(flow)
    feed(capture, flow, call["response_body"].encode()[:40])  # cut before the finish line
    assert services.pool.get(call["request_body"]["id"]) is None


def test_a_follow_up_moves_the_conversation_to_its_newest_answer(services):
    create, follow = sample("era_a_direct_create"), sample("era_a_direct_followup")
    capture = Capture(services)
    for call in (create, follow):
        flow = classified("POST", "https://lmarena.ai" + call["url"], json.dumps(call["request_body"]).encode())
        capture.request(flow)
        feed(capture, flow, call["response_body"].encode())
    conv = services.pool.get(create["request_body"]["id"])
    assert conv.message_id == follow["request_body"]["modelAMessageId"] and len(services.pool) == 1


def pooled(services: Services) -> Conversation:
    sid, mid = str(uuid.uuid4()), str(uuid.uuid4())
    return services.pool.upsert(
        Conversation(session_id=sid, message_id=mid, model="gemini-2.5-pro", model_id=GEMINI_ID,
                     identity=f"user:{USER}")
    )


def retry_flow(conv: Conversation, job_id: str | None) -> http.HTTPFlow:
    headers = {JOB_HEADER: job_id} if job_id else {}
    url = "https://lmarena.ai" + site.retry_path("/nextjs-api/stream/", conv.session_id, conv.message_id)
    return classified("PUT", url, b'{"recaptchaV3Token":"fresh"}', headers=headers)


def test_rewrite_writes_the_client_conversation_into_the_job_request(services):
    conv = pooled(services)
    turns = [site.ChatTurn("system", "S"), site.ChatTurn("user", "U1"), site.ChatTurn("assistant", "A1"),
             site.ChatTurn("user", "U2")]
    job = services.jobs.new(conv, turns, GEMINI_ID)
    flow = retry_flow(conv, job.id)
    Rewriter(services.jobs).request(flow)
    body = json.loads(flow.request.content)
    assert [(m["role"], m["content"]) for m in body["messages"]] == [(t.role, t.content) for t in turns]
    assert body["recaptchaV3Token"] == "fresh" and body["modelId"] == GEMINI_ID
    assert JOB_HEADER not in flow.request.headers and job.flow_seen


def test_rewrite_leaves_the_person_s_retry_alone_and_refuses_unknown_jobs(services):
    conv = pooled(services)
    own = retry_flow(conv, None)
    Rewriter(services.jobs).request(own)
    assert own.request.content == b'{"recaptchaV3Token":"fresh"}' and own.response is None
    forged = retry_flow(conv, "not-a-job")
    Rewriter(services.jobs).request(forged)
    assert forged.response.status_code == 409


def replay(services: Services) -> tuple[Capture, Job, http.HTTPFlow, Conversation]:
    """A tool replay of a pooled conversation, through the rewriter and the capture's request hook."""
    conv = pooled(services)
    job = services.jobs.new(conv, [site.ChatTurn("user", "hi")], GEMINI_ID)
    flow = retry_flow(conv, job.id)
    Rewriter(services.jobs).request(flow)
    capture = Capture(services)
    capture.request(flow)
    return capture, job, flow, conv


def test_job_gets_every_event_then_done(services):
    capture, job, flow, _ = replay(services)
    feed(capture, flow, sample("era_b_retry")["response_body"].encode(), size=3)
    items = []
    while not job.queue.empty():
        items.append(job.queue.get_nowait())
    text = "".join(i.text for i in items if isinstance(i, site.StreamEvent) and i.kind == "text")
    assert text == "Hey! What's up? 😊"
    assert isinstance(items[-1], JobDone)


@pytest.mark.parametrize(
    "status,body,headers,state,kind",
    [
        (401, b'{"error":"User x does not have access to evaluation session y"}', {}, "retired", "foreign_session"),
        (400, b'{"error":"Message already has feedback, cannot retry"}', {}, "retired", "has_feedback"),
        (429, b'{"error":"Too many requests"}', {"ratelimit": "limit=3000, remaining=0, reset=30"}, "cooling",
         "rate_limited"),
        (500, b"boom", {}, "ready", "upstream_error"),
    ],
)
def test_upstream_failures_update_the_pool_and_fail_the_job(services, status, body, headers, state, kind):
    capture, job, flow, conv = replay(services)
    feed(capture, flow, body, status=status, headers=headers)
    assert services.pool.state_of(conv) == state
    failed = job.queue.get_nowait()
    assert isinstance(failed, JobFailed) and failed.kind == kind and failed.status == status


def test_an_aborted_stream_fails_the_job_once(services):
    capture, job, flow, conv = replay(services)
    flow.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    capture.responseheaders(flow)
    flow.response.stream(b'a0:"partial"\n')
    flow.error = tflow.terr("stream reset by client (CANCEL)")
    capture.error(flow)
    capture.error(flow)
    items = [job.queue.get_nowait() for _ in range(job.queue.qsize())]
    assert [type(i).__name__ for i in items] == ["StreamEvent", "JobFailed"]
    assert services.pool.state_of(conv) == "ready"
