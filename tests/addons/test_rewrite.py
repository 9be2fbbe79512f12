"""Rewriter: a job's request leaves with the client's conversation; a person's own passes untouched."""

from __future__ import annotations

import json

from addons.rewrite import JOB_HEADER, Rewriter
from sites import lmarena as site
from tests.addons.flows import GEMINI_ID, pooled, retry_flow


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
