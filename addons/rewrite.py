"""The request rewriter: a retry the page sends for a job leaves with the client's conversation in it.

The page marks its request with `X-Bridge-Job: <id>`; the id is random and only ever sent to that
page over the authenticated channel. The header is removed before the request leaves the proxy.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from mitmproxy import http

from addons.classify import stream_call
from addons.guard import JOB_HEADER, META_JOB, guarded, refuse
from relay.jobs import Job, JobTable, ToolFailure
from sites import lmarena as site

log = logging.getLogger(__name__)

__all__ = ["JOB_HEADER", "META_JOB", "Rewriter", "job_body"]


class Rewriter:
    def __init__(self, jobs: JobTable) -> None:
        self.jobs = jobs

    @guarded("write", lambda self: self.jobs, before_sending=True)
    def request(self, flow: http.HTTPFlow) -> None:
        job_id = flow.request.headers.get(JOB_HEADER)
        if job_id is None:
            return  # the person's own request: leave it alone
        job = self.jobs.get(job_id)
        call = stream_call(flow)
        if job is None or job.ended:
            refuse(flow, None, "unknown or finished bridge job", 409)
            return
        if call is None or flow.response is not None:
            # marked as a job, but not a stream call the tool knows: it must not leave as it is
            refuse(flow, job, f"the page's request for the job is not one the tool writes ({flow.request.path})")
            return
        if call.kind != job.call or (job.call != "create" and call.session_id != job.target_session) or (
            job.call == "retry" and job.conversation is not None
            and call.message_id != job.conversation.retry_message_id()
        ):
            job.fail("the page sent a different request than the one asked for", 502, ToolFailure.PAGE_ERROR, "proxy")
            refuse(flow, None, "request does not match its job", 409)
            return
        original, turns = _take_uploads(flow.request.content or b"", job)
        if not job.keep_body:  # a token-only retry (the site's own regenerate) goes as the page wrote it
            flow.request.content = job_body(job, original, turns)
        flow.request.headers.pop(JOB_HEADER, None)  # only now: until here an error keeps the request in
        job.flow_seen = True
        flow.metadata[META_JOB] = job.id
        log.info(
            "%s conversation %s (%s) for job %s with %d messages",
            {"create": "creating", "post": "continuing"}.get(job.call, "replaying"), job.target_session, job.model,
            job.id[:8], len(job.turns),
        )


def job_body(job: Job, original: bytes, turns: list[site.ChatTurn]) -> bytes:
    """The body the site gets for a job: the client's conversation written in, the page's fresh token kept."""
    if job.call == "create":
        job.session_id = site.uuid7()
        body, job.user_message_id, _ = site.build_create_body(
            job.body_format, job.session_id, job.model_id, job.modality, turns, mode=job.mode
        )
        return _with_token(original, body)
    conv = job.conversation
    assert conv is not None
    if job.call == "post":
        model_id = job.model_id if site.is_direct(job.mode) else None  # a battle's models stay hidden
        body, job.user_message_id, _ = site.build_create_body(
            job.body_format, conv.session_id, model_id, job.modality, turns, call="post", mode=job.mode
        )
        return _with_token(original, body)
    return site.rewrite_retry_body(
        original, turns, conv.session_id, job.model_id, mode=conv.mode, side=conv.side, modality=conv.modality
    )


def _with_token(original: bytes, body: dict[str, Any]) -> bytes:
    """The body the tool wrote, with the fresh token(s) the page put in its own."""
    try:
        sent = json.loads(original) if original.strip() else {}
    except ValueError:
        sent = {}
    for key in site.SECRET_FIELDS:
        if isinstance(sent, dict) and key in sent:
            body[key] = sent[key]
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def _take_uploads(original: bytes, job: Job) -> tuple[bytes, list[site.ChatTurn]]:
    """Files the page uploaded through the site's own flow replace the inline ones; the page's
    note of them never leaves the proxy."""
    try:
        data = json.loads(original) if original.strip() else {}
    except ValueError:
        return original, job.turns
    if not isinstance(data, dict) or site.UPLOAD_FIELD not in data:
        return original, job.turns
    uploaded = data.pop(site.UPLOAD_FIELD)
    turns = site.with_uploaded(job.turns, uploaded if isinstance(uploaded, dict) else {})
    return json.dumps(data).encode("utf-8"), turns
