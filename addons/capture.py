"""Passive capture: every create / post / retry the browser sends is recorded in the pool.

The answer is observed as it streams (never buffered, so the person still sees tokens arrive live);
only a conversation whose answer finished well becomes usable. Failures update the pool too: a
foreign session is retired, a rate limit cools the conversation down. For the tool's own replays,
the same observation feeds the job's queue. Tokens and cookies are never stored or logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from mitmproxy import http

from addons.classify import arena_host, stream_call
from addons.guard import META_JOB, guarded
from pool_store.pool import Conversation, SessionPool
from relay.jobs import JobDone, JobFailed, ToolFailure
from relay.models import battle_model_name
from relay.services import Services
from sites import lmarena as site

log = logging.getLogger(__name__)

META_TURN = "arena.turn"
META_IDENTITY = "arena.identity"
META_AUTHED = "arena.authed"  # the request carried a session cookie
META_OUTCOME = "arena.outcome"


@dataclass
class Observation:
    """What was seen of one answer so far."""

    content: bool = False
    finish: str | None = None
    error: str | None = None
    battle_turn: bool = False  # side b answered in a direct-battle conversation


class Capture:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.jobs = services.jobs
        self.models = services.models

    @property
    def pool(self) -> SessionPool:
        return self.services.pool

    # ------------------------------------------------------------------ hooks

    @guarded("read", lambda self: self.jobs, before_sending=True)
    def request(self, flow: http.HTTPFlow) -> None:
        call = stream_call(flow)
        if call is None or flow.response is not None:
            return
        identity, _ = site.session_info({k: v for k, v in flow.request.cookies.items()})
        flow.metadata[META_IDENTITY] = identity
        flow.metadata[META_AUTHED] = identity is not None and not identity.startswith("provisional:")
        observed = self.services.observed
        observed.last_activity = time.time()
        try:
            turn = site.parse_request(call, flow.request.content or b"")
            flow.metadata[META_TURN] = turn
            if META_JOB not in flow.metadata:  # the site's own client: how its bodies look now
                for shape in site.body_drift(call.kind, flow.request.content or b""):
                    self.services.drift.note("request_field", shape)
            if turn.body_format != site.BodyFormat.TOKEN_ONLY and META_JOB not in flow.metadata:
                observed.body_format = turn.body_format  # what the site's own client sends now
                observed.prefix = call.prefix
                if turn.kind == "create" and site.is_direct(turn.mode):
                    observed.direct_mode = turn.mode
        except site.BodyError as e:
            log.warning("could not read a %s request body (%s): %s", call.kind, flow.request.path, e)

    @guarded("follow the answer of", lambda self: self.jobs)
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if stream_call(flow) is None or flow.response is None:
            return
        resp = flow.response
        if resp.status_code == 200 and "text/event-stream" in resp.headers.get("content-type", ""):
            flow.response.stream = self._tap(flow)

    @guarded("read the answer of", lambda self: self.jobs)
    def response(self, flow: http.HTTPFlow) -> None:
        if stream_call(flow) is None or flow.response is None or META_OUTCOME in flow.metadata:
            return
        resp = flow.response
        if resp.stream:
            return  # the tap finishes the flow
        body = resp.get_text(strict=False) or ""
        authed = flow.metadata.get(META_AUTHED, True)
        failure = site.classify_failure(resp.status_code, body, dict(resp.headers), authed)
        if failure.kind == site.FailureKind.MOVED and 300 <= resp.status_code < 400:
            self.services.pages.mark_moved(arena_host(flow) or "", resp.headers.get("location", ""))
        elif failure.kind == site.FailureKind.LOGIN_GATE:
            self.services.pages.gate_identity(flow.metadata.get(META_IDENTITY), True)
        elif failure.kind == site.FailureKind.UPSTREAM_ERROR:
            self.services.drift.note("error_status", f"{resp.status_code} {site.error_shape(body)}")
        self._finish(flow, Observation(), failure)

    @guarded("end", lambda self: self.jobs)
    def error(self, flow: http.HTTPFlow) -> None:
        if stream_call(flow) is None or META_OUTCOME in flow.metadata:
            return
        message = flow.error.msg if flow.error else "connection error"
        failure = site.Failure(502, f"connection ended: {message}", "keep", kind=site.FailureKind.ABORTED)
        self._finish(flow, Observation(), failure)

    # ------------------------------------------------------------------ stream tap

    def _tap(self, flow: http.HTTPFlow) -> Callable[[bytes], bytes]:
        parser = site.StreamParser()
        seen = Observation()
        job = self.jobs.get(flow.metadata.get(META_JOB))
        if job is not None:
            job.codes = parser.codes  # the lines' codes, kept for the report of a failure
        direct_battle = self._mode(flow) == site.DIRECT_MODE_2026
        drift = self.services.drift

        def tap(chunk: bytes) -> bytes:
            # Called by mitmproxy with each body chunk and finally b"". Must never raise.
            try:
                events = parser.feed(chunk) if chunk else parser.close()
                for event in events:
                    if event.kind in ("text", "image", "reasoning"):
                        seen.content = True
                        seen.battle_turn |= direct_battle and event.side == "b"
                    elif event.kind == "finish":
                        seen.finish = event.text
                    elif event.kind == "error":
                        seen.error = event.text
                    elif event.kind == "unknown":
                        drift.note("stream_line", str(event.data))
                    if job is not None:
                        job.push(event)
                if not chunk:
                    self._finish(flow, seen, None)
            except Exception as e:
                log.exception("stream observation failed on %s", flow.request.path)
                if job is not None and not job.ended:  # the answer cannot be followed: the job ends here
                    job.fail(f"could not read the answer: {type(e).__name__}: {e}", 500,
                             ToolFailure.TOOL_ERROR, "proxy")
            return chunk

        return tap

    # ------------------------------------------------------------------ outcome

    def _finish(self, flow: http.HTTPFlow, seen: Observation, failure: site.Failure | None) -> None:
        if META_OUTCOME in flow.metadata:
            return
        if failure is None:
            failure = site.answer_failure(seen.error, seen.finish is not None, seen.content, seen.battle_turn)
        flow.metadata[META_OUTCOME] = "ok" if failure is None else failure.kind
        call = stream_call(flow)
        turn: site.Turn | None = flow.metadata.get(META_TURN)
        job = self.jobs.get(flow.metadata.get(META_JOB))
        origin = "tool" if META_JOB in flow.metadata else "browser"  # the job may be gone already
        if failure is None and turn is not None and call is not None:
            self._record(flow, call, turn, origin)
            if origin == "browser":  # a person's own chat went through: whatever check it needed is done
                identity = flow.metadata.get(META_IDENTITY)
                self.services.pages.flag_identity(identity, None)
                if site.is_direct(self._mode(flow) or ""):
                    self.services.pages.gate_identity(identity, False)
        elif failure is not None:
            session_id = (turn.session_id if turn else None) or (call.session_id if call else None)
            log.warning(
                "%s %s from the %s failed: status %s, %s (%s)",
                call.kind if call else "request", session_id, origin, failure.status, failure.message, failure.kind,
            )
            if session_id and self.pool.get(session_id) is not None:
                if failure.conversation == "retire":
                    self.pool.retire(session_id, f"{failure.status}: {failure.message}")
                elif failure.conversation == "cool":
                    self.pool.cool_down(session_id, failure.retry_after or 60)
        if job is not None:
            if failure is None:
                job.push(JobDone())
            else:
                job.push(
                    JobFailed(failure.message, failure.status, failure.kind, failure.retry_after, source="upstream")
                )

    def _mode(self, flow: http.HTTPFlow) -> str | None:
        """The conversation's mode: what its create said, or what the pool knows of it."""
        turn: site.Turn | None = flow.metadata.get(META_TURN)
        if turn is None:
            return None
        known = self.pool.get(turn.session_id)
        return known.mode if known is not None and turn.kind != "create" else turn.mode

    def _record(self, flow: http.HTTPFlow, call: site.StreamCall, turn: site.Turn, origin: str) -> None:
        identity = flow.metadata.get(META_IDENTITY)
        job = self.jobs.get(flow.metadata.get(META_JOB))
        known = self.pool.get(turn.session_id)
        if turn.kind == "retry":
            if known is None:
                log.info("a retry of conversation %s, which the pool does not know, succeeded", turn.session_id)
            elif origin == "browser" and known.message_id_b and call.message_id == known.message_id_b:
                self.pool.choose_side(known.session_id, "b")  # the person picked side b: replay that side
            elif origin == "browser" and call.message_id == known.message_id:
                self.pool.choose_side(known.session_id, "a")
            return
        message_id = turn.message_ids.get("a")
        if not message_id:
            return
        mode = known.mode if known is not None and turn.kind == "post" else turn.mode
        modality = known.modality if known is not None else turn.modality
        if mode == "battle":
            model_name, model_id = battle_model_name(modality), None
        else:
            info = self.models.by_id(turn.model_a_id)
            model_name = info.name if info else (known.model if known else turn.model_a_id or "")
            model_id = turn.model_a_id or (known.model_id if known else None)
        conv = Conversation(
            session_id=turn.session_id,
            message_id=message_id,
            message_id_b=turn.message_ids.get("b"),
            model=model_name,
            model_id=model_id,
            identity=identity,
            mode=mode,
            modality=modality,
            user_message_id=turn.user_message_id,
            host=arena_host(flow) or "",
            prefix=call.prefix,
            source="tool" if origin == "tool" else "captured",
            owner=job.owner if job is not None else None,  # made for a client conversation: it is its own
            greeting_only=job is not None and job.greeting and turn.kind == "create",
        )
        stored = self.pool.upsert(conv)
        log.info(
            "captured conversation %s model=%s message=%s mode=%s (%s, from the %s)",
            stored.session_id, stored.model, stored.retry_message_id(), stored.mode,
            "new" if known is None else "new turn", origin,
        )
