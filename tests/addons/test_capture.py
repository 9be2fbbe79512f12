"""Capture: conversations join the pool from what passes; failures update it; jobs get every line."""

from __future__ import annotations

import json

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from addons.capture import Capture
from relay.jobs import JobDone, JobFailed
from sites import lmarena as site
from tests.addons.flows import GEMINI_ID, USER, classified, feed, replay, sample


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


def test_a_job_s_flow_that_ends_after_its_job_is_still_the_tool_s_own(services, caplog):
    """Regression: a job aborted by the tool (its client left) was logged as a failure "from the browser",
    because the job was already forgotten when the proxy's error hook ran."""
    capture, job, flow, _ = replay(services)
    services.jobs.discard(job)
    flow.error = tflow.terr("stream reset by client (CANCEL)")
    capture.error(flow)
    assert "from the tool failed" in caplog.text and "from the browser" not in caplog.text
