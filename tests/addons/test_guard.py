"""Fail closed for the tool's own requests, fail open for the person's (addons/guard.py), hook by hook."""

from __future__ import annotations

import json

import pytest
from mitmproxy import http
from mitmproxy.flow import Error

import addons.rewrite
from addons.capture import Capture
from addons.channel import ApiAddress, Channel
from addons.guard import JOB_HEADER
from addons.inject import Injector
from addons.rewrite import Rewriter
from relay.jobs import JobFailed
from sites import lmarena as site
from tests.addons.flows import GEMINI_ID, classified, pooled, replay, retry_flow, sample


def planted(*args, **kwargs):
    raise RuntimeError("planted failure")


def failure_of(job) -> JobFailed:
    item = job.queue.get_nowait()
    assert isinstance(item, JobFailed)
    return item


def test_a_rewriter_failure_keeps_the_tool_s_request_in(services, monkeypatch):
    conv = pooled(services)
    job = services.jobs.new(conv, [site.ChatTurn("user", "hi")], GEMINI_ID)
    flow = retry_flow(conv, job.id)
    monkeypatch.setattr(addons.rewrite, "job_body", planted)
    Rewriter(services.jobs).request(flow)
    assert flow.response is not None and flow.response.status_code == 500, "answered here: it never leaves"
    assert JOB_HEADER not in flow.request.headers
    failed = failure_of(job)
    assert failed.source == "proxy" and "RuntimeError: planted failure" in failed.message
    assert not job.flow_seen


def test_a_job_s_request_that_is_not_a_stream_call_is_refused(services):
    conv = pooled(services)
    job = services.jobs.new(conv, [site.ChatTurn("user", "hi")], GEMINI_ID)
    flow = classified("POST", "https://arena.ai/api/something-else", b"{}", headers={JOB_HEADER: job.id})
    Rewriter(services.jobs).request(flow)
    assert flow.response is not None and flow.response.status_code == 502
    assert "not one the tool writes" in failure_of(job).message


def test_a_capture_failure_on_the_tool_s_request_keeps_it_in_too(services, monkeypatch):
    conv = pooled(services)
    job = services.jobs.new(conv, [site.ChatTurn("user", "hi")], GEMINI_ID)
    flow = retry_flow(conv, job.id)
    Rewriter(services.jobs).request(flow)
    monkeypatch.setattr(site, "parse_request", planted)
    Capture(services).request(flow)
    assert flow.response is not None and flow.response.status_code == 500
    assert "could not read the tool's request: RuntimeError" in failure_of(job).message


def test_a_failure_after_the_request_left_stops_it_and_fails_the_job(services, monkeypatch):
    capture, job, flow, _ = replay(services)
    flow.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    monkeypatch.setattr(capture, "_tap", planted)
    capture.responseheaders(flow)
    assert flow.error is not None and flow.error.msg == Error.KILLED_MESSAGE, "stopped"
    assert "could not follow the answer" in failure_of(job).message


def test_an_answer_that_cannot_be_followed_passes_on_and_ends_the_job(services, monkeypatch):
    capture, job, flow, _ = replay(services)
    flow.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    monkeypatch.setattr(site.StreamParser, "feed", planted)
    capture.responseheaders(flow)
    assert flow.response.stream(b'a0:"Hi"\n') == b'a0:"Hi"\n', "the bytes pass as they came"
    failed = failure_of(job)
    assert failed.source == "proxy" and "could not read the answer: RuntimeError" in failed.message
    assert job.ended


def test_the_person_s_own_request_passes_as_it_was_whatever_breaks(services, monkeypatch):
    call = sample("era_b_direct_create")
    body = json.dumps(call["request_body"]).encode()
    flow = classified("POST", "https://arena.ai" + call["url"], body)
    monkeypatch.setattr(site, "parse_request", planted)
    Capture(services).request(flow)
    assert flow.response is None and flow.request.content == body, "untouched: it goes to the site as sent"
    page = classified("GET", "https://arena.ai/text/direct")
    html = b"<html><head></head><body>the site</body></html>"
    page.response = http.Response.make(200, html, {"content-type": "text/html"})
    monkeypatch.setattr(site, "extract_models", planted)
    Injector(services.pages, services.models).response(page)
    assert page.response.content == html, "a page the tool could not inject into is shown as the site sent it"


def test_a_channel_that_cannot_be_routed_never_goes_to_the_site(monkeypatch):
    channel = Channel(ApiAddress("127.0.0.1", 5999))
    flow = classified("GET", "https://arena.ai/__bridge/ws")
    monkeypatch.setattr(channel, "_route", planted)
    channel.request(flow)
    assert flow.response is not None and flow.response.status_code == 502


@pytest.mark.parametrize("status", [409])
def test_an_unknown_job_is_refused(services, status):
    conv = pooled(services)
    flow = retry_flow(conv, "not-a-job")
    Rewriter(services.jobs).request(flow)
    assert flow.response.status_code == status
