"""Chat completions: lease a conversation, have the page replay it, turn answer lines into OpenAI chunks.

Before the first answer line a request may try several conversations of its model (failover), get
one fresh reCAPTCHA retry, or, when the model has no usable conversation at all, start a new
conversation that carries the request (which then joins the pool).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from openai_front.errors import (
    APIError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from openai_front.jobs import Job, JobDone, JobFailed, JobItem
from openai_front.models import ModelInfo
from openai_front.pages import ADVICE, Page
from openai_front.protocol import MAX_INLINE_BYTES, MAX_UPLOAD_BYTES, ChatCompletionRequest, to_turns
from openai_front.requestlog import RequestRecord
from openai_front.services import Services, Settings
from openai_front.shaping import shape
from pool_store.pool import Lease, NoConversation, PoolTimeout
from sites import lmarena as site

log = logging.getLogger(__name__)

# Failures before the first token after which another conversation of the same model is tried.
# Not: content_filter (the request itself), challenge (the page), rate_limited for the model.
FAILOVER_KINDS = frozenset(
    {"foreign_session", "has_feedback", "not_found", "upstream_error", "truncated", "empty", "stream_error",
     "aborted", "page_error", "timeout", "page_gone"}
)


def estimate_tokens(text: str) -> int:
    """Rough count for `usage` when the site gives none: one token per CJK character,
    one per four other characters."""
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
    return cjk + (len(text) - cjk + 3) // 4


def failure_to_error(item: JobFailed) -> APIError:
    where = {"upstream": "LMArena", "page": "the browser page", "proxy": "the proxy", "tool": "the tool"}.get(
        item.source, item.source
    )
    message = f"{where}: {item.message}"
    if item.kind == "rate_limited":
        return RateLimited(message, retry_after=item.retry_after or 60)
    if item.kind == "content_filter":
        return InvalidRequest(message, code="content_filter")
    if item.kind == "recaptcha":
        return Unavailable(f"{message} (twice, with fresh tokens): {ADVICE['needs_human_check']}", retry_after=60)
    if item.kind in ("challenge", "page_gone"):
        return Unavailable(message, retry_after=item.retry_after or 30)
    if item.kind == "timeout":
        return UpstreamTimeout(message)
    return UpstreamError(message)


@dataclass
class Replay:
    """One request in flight: its lease (none for a fresh conversation), its job, the first item."""

    lease: Lease | None
    job: Job
    first: JobItem
    model: ModelInfo
    record: RequestRecord
    prompt_tokens: int = 0  # estimated from the message text (never from attached files)
    started: float = field(default_factory=time.time)

    @property
    def position(self) -> str:
        return self.job.conversation.position if self.job.conversation else "a"


class ChatService:
    def __init__(self, services: Services) -> None:
        self.s = services

    # ------------------------------------------------------------------ validation

    def validate(self, request: ChatCompletionRequest) -> tuple[ModelInfo, list[site.ChatTurn]]:
        model = self.s.models.resolve(request.model)
        if model is None:
            raise ModelNotFound(f"The model {request.model!r} does not exist", param="model")
        if request.n != 1:
            raise InvalidRequest("n > 1 is not supported for chat completions; send n requests", param="n")
        if request.stream_options is not None and not request.stream:
            raise InvalidRequest("stream_options is only allowed with stream: true", param="stream_options")
        turns = to_turns(request.messages, MAX_UPLOAD_BYTES if self.s.settings.upload_files else MAX_INLINE_BYTES)
        if any(t.attachments for t in turns) and not model.capabilities["image_input"]:
            raise InvalidRequest(f"The model {model.name!r} does not accept images or files", param="messages")
        settings = self.s.settings
        return model, shape(turns, model.modality, settings.tavern_mode, settings.bypass_mode)

    # ------------------------------------------------------------------ dispatch

    async def start(
        self, request: ChatCompletionRequest, record: RequestRecord, strategy: str | None = None
    ) -> Replay:
        """Everything up to the first answer line. Errors raised here are real HTTP statuses."""
        model, turns = self.validate(request)
        prompt_tokens = estimate_tokens("".join(t.content for t in turns))
        settings = self.s.settings
        strategy = strategy or self.s.strategy.current
        if not self.s.pages.pages:
            raise Unavailable(
                "No LMArena page is connected: open lmarena.ai in the browser that uses this proxy",
                retry_after=settings.unavailable_retry_after,
            )
        if not self.s.pages.ready_pages():
            # a challenge that clears by itself, a person signing in: worth a bounded wait
            if not await self.s.pages.wait_ready(min(settings.page_wait, settings.queue_timeout)):
                raise Unavailable(f"No LMArena page is ready. {self.s.pages.advice()}", retry_after=30)
        deadline = time.monotonic() + settings.queue_timeout
        last: JobFailed | None = None
        for attempt in range(max(1, settings.failover_tries)):
            record.attempts = attempt + 1
            if (strategy == "fresh" and not model.virtual) or self._should_create(model):
                return await self._fresh(model, turns, record, prompt_tokens)
            lease = await self._lease(model, deadline)
            record.leased_at = time.time()
            record.conversation = lease.conversation.session_id
            # a battle conversation's turns need both sides: it is always replayed by retry
            kind = "post" if strategy == "continue" and lease.conversation.mode == "direct" else "retry"
            record.strategy = "continue" if kind == "post" else "retry"
            job, first = await self._replay(lease, turns, model, kind)
            if not isinstance(first, JobFailed):
                return Replay(lease, job, first, model, record, prompt_tokens)
            self._finish(lease, job, ok=False)
            last = first
            log.warning(
                "request %s for %s: conversation %s failed before the first token (%s: %s)%s",
                record.id, model.name, lease.conversation.session_id, first.kind, first.message,
                "; trying another" if first.kind in FAILOVER_KINDS else "",
            )
            if first.kind not in FAILOVER_KINDS:
                break
        assert last is not None
        raise failure_to_error(last)

    def _should_create(self, model: ModelInfo) -> bool:
        """A model with no conversation at all gets a new one, up to its target number at once. One whose
        conversations are only cooling down waits for them: a new conversation would meet the same limit."""
        settings = self.s.settings
        return (
            settings.fresh_when_empty
            and not model.virtual  # a battle conversation is one a person starts in battle mode
            and self.s.pool.servable_count(model.name) == 0
            and self.s.jobs.creating(model.name) < max(1, settings.sessions_per_model)
        )

    async def _lease(self, model: ModelInfo, deadline: float) -> Lease:
        retry_after = self.s.settings.unavailable_retry_after
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise PoolTimeout(model.name)
            return await self.s.pool.lease(model.name, timeout=remaining)
        except NoConversation:
            how = "chat once in battle mode in the browser" if model.virtual else (
                "chat with it once in the browser, or run a prefill")
            raise Unavailable(
                f"No usable conversation of {model.name!r}: {how}", retry_after=retry_after
            ) from None
        except PoolTimeout:
            raise RateLimited(
                f"All conversations of {model.name!r} stayed busy for {self.s.settings.queue_timeout:.0f} s",
                retry_after=retry_after,
            ) from None

    async def _replay(
        self, lease: Lease, turns: list[site.ChatTurn], model: ModelInfo, kind: str = "retry"
    ) -> tuple[Job, JobItem]:
        """Retry (or continue) the leased conversation; a reCAPTCHA refusal gets one more try with a
        fresh token."""
        conv = lease.conversation
        for _ in range(2):
            job = self.s.jobs.new(conv, turns, model.id, kind=kind, era=self.s.site.era)
            try:
                first = await self._dispatch(job, self.s.pages.page_for(conv.identity))
            except BaseException:
                self._finish(lease, job, ok=False)
                raise
            if not (isinstance(first, JobFailed) and first.kind == "recaptcha"):
                return job, first
            log.info("reCAPTCHA refused the token for conversation %s: one more try", conv.session_id)
            self._end_job(job)
        # refused twice with fresh tokens: the site wants a person to prove themselves in that browser
        self.s.pages.flag_identity(conv.identity, "needs_human_check")
        return job, first

    async def _fresh(
        self, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord, prompt_tokens: int
    ) -> Replay:
        """lmarena-proxy-server's way: a new conversation that carries the request, then joins the pool."""
        record.strategy = "fresh"
        record.leased_at = time.time()
        self.s.pool.add_target(model.name)
        job, first = await self.create_job(model, turns)
        record.conversation = job.session_id
        if isinstance(first, JobFailed):
            self._finish(None, job, ok=False)
            log.warning("request %s: a new %s conversation failed: %s (%s)", record.id, model.name, first.message,
                        first.kind)
            raise failure_to_error(first)
        return Replay(None, job, first, model, record, prompt_tokens)

    async def create_job(self, model: ModelInfo, turns: list[site.ChatTurn]) -> tuple[Job, JobItem]:
        """Have a ready page create a conversation of `model` whose first turn carries `turns`."""
        job = self.s.jobs.new_create(model.name, model.id, model.modality, turns, self.s.site.era)
        try:
            first = await self._dispatch(job, self.s.pages.page_for(None))
        except BaseException:
            self._finish(None, job, ok=False)
            raise
        return job, first

    def end_job(self, job: Job) -> None:
        self._finish(None, job, ok=True)

    async def _dispatch(self, job: Job, page: Page | None) -> JobItem:
        if page is None:
            return JobFailed(
                "no page of this conversation's browser identity is ready", 503, "page_gone", source="tool"
            )
        job.page_id = page.id
        page.jobs += 1
        prefix = job.conversation.prefix if job.conversation else self.s.site.prefix
        message: dict[str, Any]
        if job.kind == "create":
            message = {"method": "POST", "url": site.create_path(prefix), "action": self.s.settings.action_submit}
        elif job.kind == "post":
            assert job.conversation is not None
            message = {"method": "POST", "url": site.post_path(prefix, job.conversation.session_id),
                       "action": self.s.settings.action_submit}
        else:
            conv = job.conversation
            assert conv is not None
            message = {
                "method": "PUT",
                "url": site.retry_path(prefix, conv.session_id, conv.retry_message_id()),
                "action": self.s.settings.action_retry,
            }
        if self.s.settings.upload_files:
            files = site.inline_files(job.turns)
            if files:
                message["uploads"] = [
                    {"ref": str(i), "name": f["name"], "contentType": f["contentType"],
                     "data": f["url"].split(",", 1)[1] if ";base64," in f["url"] else ""}
                    for i, f in enumerate(files)
                ]
                message["uploadActions"] = self.s.settings.upload_actions
        await page.send(
            {"type": "job", "job": job.id, "sitekey": self.s.settings.recaptcha_sitekey, "body": {}, **message}
        )
        return await self._next(job)

    async def _next(self, job: Job) -> JobItem:
        try:
            return await asyncio.wait_for(job.queue.get(), self.s.settings.upstream_timeout)
        except asyncio.TimeoutError:
            return JobFailed(
                f"no answer line within {self.s.settings.upstream_timeout:.0f} s", 504, "timeout", source="tool"
            )

    def _end_job(self, job: Job) -> None:
        """Forget a job; if it is still running, tell its page to stop the request."""
        page = self.s.pages.pages.get(job.page_id or "")
        if not job.ended:
            job.ended = True
            if page is not None:
                asyncio.ensure_future(_send_quietly(page.send({"type": "abort", "job": job.id})))
        if self.s.jobs.get(job.id) is job:
            self.s.jobs.discard(job)
            if page is not None:
                page.jobs = max(0, page.jobs - 1)
        self.s.pool.recheck(job.model)

    def _finish(self, lease: Lease | None, job: Job, ok: bool) -> None:
        """Give everything back; safe to call more than once."""
        self._end_job(job)
        if lease is not None and not lease.released:
            self.s.pool.mark_used(lease.conversation.session_id, ok)
            self.s.pool.release(lease)

    def abandon(self, replay: Replay) -> None:
        """The client left before reading anything."""
        self._finish(replay.lease, replay.job, ok=False)

    async def items(self, replay: Replay) -> AsyncIterator[JobItem]:
        """The job's items from the first on; always releases the lease."""
        ok = False
        try:
            item = replay.first
            while True:
                yield item
                if isinstance(item, JobDone):
                    ok = True
                    return
                if isinstance(item, JobFailed):
                    return
                item = await self._next(replay.job)
        finally:
            self._finish(replay.lease, replay.job, ok)

    # ------------------------------------------------------------------ shaping

    async def stream(self, replay: Replay, include_usage: bool) -> AsyncIterator[dict[str, Any]]:
        """OpenAI chunks (as dicts), then an in-band error if the answer broke mid-way."""
        record = replay.record
        cid = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": replay.model.name}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        yield chunk({"role": "assistant", "content": ""})
        answer = Answer(self.s.settings, replay.position)
        async for item in self.items(replay):
            if isinstance(item, site.StreamEvent):
                for delta in answer.feed(item):
                    if record.first_token_at is None:
                        record.first_token_at = time.time()
                    yield chunk(delta)
                if answer.error is not None:
                    err = UpstreamError(f"LMArena: {answer.error}")
                    close_record(record, err.status, err.message, "upstream")
                    yield err.body()
                    return
            elif isinstance(item, JobFailed):
                failed = failure_to_error(item)
                close_record(record, failed.status, failed.message, item.source)
                yield failed.body()
                return
        for delta in answer.close():
            yield chunk(delta)
        last = chunk({}, answer.finish)
        if answer.sources:
            last["citations"] = answer.sources
        yield last
        close_record(record, 200)
        if include_usage:
            completion_tokens = estimate_tokens(answer.text())
            yield {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": replay.prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": replay.prompt_tokens + completion_tokens,
                },
            }

    async def complete(self, replay: Replay) -> dict[str, Any]:
        record = replay.record
        answer = Answer(self.s.settings, replay.position)
        async for item in self.items(replay):
            if isinstance(item, site.StreamEvent):
                if answer.feed(item) and record.first_token_at is None:
                    record.first_token_at = time.time()
                if answer.error is not None:
                    raise UpstreamError(f"LMArena: {answer.error}")
            elif isinstance(item, JobFailed):
                raise failure_to_error(item)
        answer.close()
        message: dict[str, Any] = {"role": "assistant", "content": answer.content()}
        if answer.reasoning():
            message["reasoning_content"] = answer.reasoning()
        if answer.images:
            message["images"] = list(answer.images)
        completion_tokens = estimate_tokens(answer.text())
        close_record(record, 200)
        result: dict[str, Any] = {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": replay.model.name,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": answer.finish}],
            "usage": {
                "prompt_tokens": replay.prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": replay.prompt_tokens + completion_tokens,
            },
        }
        if answer.sources:
            result["citations"] = answer.sources
        return result


class Answer:
    """One participant's answer lines → OpenAI deltas, shaped by the settings.

    Reasoning goes to `reasoning_content` (or inline as <think>...</think>), images become Markdown
    images as soon as their line arrives, a search answer's sources are collected and, when enabled,
    appended as a Markdown list at the end.
    """

    def __init__(self, settings: Settings, position: str) -> None:
        self.settings = settings
        self.position = position
        self.deltas: list[dict[str, str]] = []
        self.images: list[str] = []
        self.sources: list[dict[str, Any]] = []
        self.finish = "stop"
        self.error: str | None = None
        self._thinking = False

    def feed(self, event: site.StreamEvent) -> list[dict[str, str]]:
        if event.position != self.position:
            return []
        out: list[dict[str, str]] = []
        if event.kind == "reasoning" and event.text:
            if not self.settings.reasoning_as_think:
                out.append({"reasoning_content": event.text})
            elif not self._thinking:
                self._thinking = True
                out.append({"content": "<think>" + event.text})
            else:
                out.append({"content": event.text})
        elif event.kind in ("text", "image") and event.text:
            if self._thinking:
                self._thinking = False
                out.append({"content": "</think>\n\n"})
            if event.kind == "image":
                self.images.append(event.text)
                out.append({"content": f"![image]({event.text})"})
            else:
                out.append({"content": event.text})
        elif event.kind == "citation":
            self._cite(event.data)
        elif event.kind == "finish":
            self.finish = site.openai_finish_reason(event.text)
        elif event.kind == "error":
            self.error = event.text
        self.deltas.extend(out)
        return out

    def _cite(self, data: Any) -> None:
        # the site sends each source as it is cited, and the whole list at the end
        for source in data if isinstance(data, list) else [data]:
            if not isinstance(source, dict) or not source.get("url"):
                continue
            entry = {"url": source["url"], "title": source.get("title") or source["url"]}
            for known in self.sources:
                if known["url"] == entry["url"]:
                    if source.get("title"):
                        known["title"] = source["title"]
                    break
            else:
                self.sources.append(entry)

    def close(self) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        if self._thinking:
            self._thinking = False
            out.append({"content": "</think>\n\n"})
        if self.sources and self.settings.citations:
            lines = "\n".join(f"{i}. [{s['title']}]({s['url']})" for i, s in enumerate(self.sources, 1))
            out.append({"content": f"\n\nSources:\n{lines}"})
        self.deltas.extend(out)
        return out

    def content(self) -> str:
        return "".join(d.get("content", "") for d in self.deltas)

    def reasoning(self) -> str:
        return "".join(d.get("reasoning_content", "") for d in self.deltas)

    def text(self) -> str:
        return self.content() + self.reasoning()


def close_record(record: RequestRecord, status: int, error: str | None = None, source: str | None = None) -> None:
    record.close(status, error, source)


async def _send_quietly(coro: Any) -> None:
    try:
        await coro
    except Exception:
        pass
