"""Flows and helpers shared by the addon tests (mitmproxy's own test helpers underneath)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from mitmproxy import http
from mitmproxy.test import tflow

from addons.capture import Capture
from addons.classify import Classify
from addons.rewrite import JOB_HEADER, Rewriter
from pool_store.pool import Conversation
from relay.jobs import Job
from relay.services import Services
from sites import lmarena as site

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
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


def sample(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))[0]


def feed(capture: Capture, flow: http.HTTPFlow, body: bytes, status: int = 200, size: int = 7,
         headers: dict[str, str] | None = None) -> None:
    """The response arriving through the capture's hooks, in chunks of `size` bytes when it streams."""
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


def replay(services: Services) -> tuple[Capture, Job, http.HTTPFlow, Conversation]:
    """A tool replay of a pooled conversation, through the rewriter and the capture's request hook."""
    conv = pooled(services)
    job = services.jobs.new(conv, [site.ChatTurn("user", "hi")], GEMINI_ID)
    flow = retry_flow(conv, job.id)
    Rewriter(services.jobs).request(flow)
    capture = Capture(services)
    capture.request(flow)
    return capture, job, flow, conv
