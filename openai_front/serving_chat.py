"""Chat completions: lease a conversation, have the page replay it, turn answer lines into OpenAI chunks."""

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
from openai_front.protocol import ChatCompletionRequest, to_turns
from openai_front.services import Services
from pool_store.pool import Lease, NoConversation, PoolTimeout
from sites import lmarena as site

log = logging.getLogger(__name__)


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
    if item.kind in ("challenge", "page_gone"):
        return Unavailable(message, retry_after=item.retry_after or 30)
    if item.kind == "timeout":
        return UpstreamTimeout(message)
    return UpstreamError(message)


@dataclass
class Replay:
    """One request in flight: its lease, its job, and what was received so far."""

    lease: Lease
    job: Job
    first: JobItem
    model: ModelInfo
    started: float = field(default_factory=time.time)


class ChatService:
    def __init__(self, services: Services) -> None:
        self.s = services

    # ------------------------------------------------------------------ dispatch

    async def start(self, request: ChatCompletionRequest) -> Replay:
        """Everything up to the first answer line; errors here become real HTTP statuses."""
        model = self.s.models.resolve(request.model)
        if model is None:
            raise ModelNotFound(f"The model {request.model!r} does not exist", param="model")
        if request.n != 1:
            raise InvalidRequest("n > 1 is not supported for chat completions; send n requests", param="n")
        if request.stream_options is not None and not request.stream:
            raise InvalidRequest("stream_options is only allowed with stream: true", param="stream_options")
        turns = to_turns(request.messages)
        if any(t.attachments for t in turns) and not model.capabilities["image_input"]:
            raise InvalidRequest(f"The model {model.name!r} does not accept images", param="messages")
        retry_after = self.s.settings.unavailable_retry_after
        if not self.s.pages.pages:
            raise Unavailable(
                "No LMArena page is connected: open lmarena.ai in the browser that uses this proxy",
                retry_after=retry_after,
            )
        try:
            lease = await self.s.pool.lease(model.name, timeout=self.s.settings.queue_timeout)
        except NoConversation:
            raise Unavailable(
                f"No usable conversation of {model.name!r} in the pool: chat with it once in the browser",
                retry_after=retry_after,
            ) from None
        except PoolTimeout:
            raise RateLimited(
                f"All conversations of {model.name!r} stayed busy for {self.s.settings.queue_timeout:.0f} s",
                retry_after=retry_after,
            ) from None
        job = self.s.jobs.new(lease.conversation, turns, model.id)
        try:
            first = await self._dispatch(job)
        except BaseException:
            self._finish(lease, job, ok=False)
            raise
        if isinstance(first, JobFailed):
            self._finish(lease, job, ok=False)
            log.warning(
                "request for %s failed before the first token on conversation %s: %s (%s)",
                model.name, lease.conversation.session_id, first.message, first.kind,
            )
            raise failure_to_error(first)
        return Replay(lease, job, first, model)

    async def _dispatch(self, job: Job) -> JobItem:
        conv = job.conversation
        page = self.s.pages.page_for(conv.identity)
        if page is None:
            return JobFailed(
                "no page of this conversation's browser identity is ready", 503, "page_gone", source="tool"
            )
        job.page_id = page.id
        page.jobs += 1
        await page.send(
            {
                "type": "job",
                "job": job.id,
                "method": "PUT",
                "url": site.retry_path(conv.prefix, conv.session_id, conv.message_id),
                "action": site.ACTION_RETRY,
                "sitekey": site.RECAPTCHA_SITE_KEY,
                "body": {},
            }
        )
        return await self._next(job)

    async def _next(self, job: Job) -> JobItem:
        try:
            return await asyncio.wait_for(job.queue.get(), self.s.settings.upstream_timeout)
        except asyncio.TimeoutError:
            return JobFailed(
                f"no answer line within {self.s.settings.upstream_timeout:.0f} s", 504, "timeout", source="tool"
            )

    def _finish(self, lease: Lease, job: Job, ok: bool) -> None:
        """Give everything back; safe to call more than once."""
        page = self.s.pages.pages.get(job.page_id or "")
        if not job.ended:
            # the client left or the tool gave up: stop the page's request too
            job.ended = True
            if page is not None:
                asyncio.ensure_future(_send_quietly(page.send({"type": "abort", "job": job.id})))
        if self.s.jobs.get(job.id) is job:
            self.s.jobs.discard(job)
            if page is not None:
                page.jobs = max(0, page.jobs - 1)
        if not lease.released:
            self.s.pool.mark_used(lease.conversation.session_id, ok)
            self.s.pool.release(lease)

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

    async def stream(self, replay: Replay, include_usage: bool, prompt_tokens: int) -> AsyncIterator[dict[str, Any]]:
        """OpenAI chunks (as dicts), then an in-band error if the answer broke mid-way."""
        cid = "chatcmpl-" + uuid.uuid4().hex
        created = int(time.time())
        base = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": replay.model.name}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        yield chunk({"role": "assistant", "content": ""})
        text_len = 0
        completion = []
        finish = "stop"
        async for item in self.items(replay):
            if isinstance(item, site.StreamEvent):
                if item.position != replay.lease.conversation.position:
                    continue
                if item.kind == "text" and item.text:
                    completion.append(item.text)
                    text_len += len(item.text)
                    yield chunk({"content": item.text})
                elif item.kind == "reasoning" and item.text:
                    completion.append(item.text)
                    yield chunk({"reasoning_content": item.text})
                elif item.kind == "image" and item.text:
                    md = f"![image]({item.text})"
                    completion.append(md)
                    yield chunk({"content": md})
                elif item.kind == "finish":
                    finish = site.openai_finish_reason(item.text)
                elif item.kind == "error":
                    yield {"error": {"message": f"LMArena: {item.text}", "type": "upstream_error",
                                     "param": None, "code": "upstream_error"}}
                    return
            elif isinstance(item, JobFailed):
                err = failure_to_error(item)
                yield {"error": err.body()["error"]}
                return
        yield chunk({}, finish)
        if include_usage:
            completion_tokens = estimate_tokens("".join(completion))
            yield {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }

    async def complete(self, replay: Replay, prompt_tokens: int) -> dict[str, Any]:
        content: list[str] = []
        reasoning: list[str] = []
        finish = "stop"
        async for item in self.items(replay):
            if isinstance(item, site.StreamEvent):
                if item.position != replay.lease.conversation.position:
                    continue
                if item.kind == "text":
                    content.append(item.text)
                elif item.kind == "reasoning":
                    reasoning.append(item.text)
                elif item.kind == "image" and item.text:
                    content.append(f"![image]({item.text})")
                elif item.kind == "finish":
                    finish = site.openai_finish_reason(item.text)
                elif item.kind == "error":
                    raise UpstreamError(f"LMArena: {item.text}")
            elif isinstance(item, JobFailed):
                raise failure_to_error(item)
        text = "".join(content)
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        completion_tokens = estimate_tokens(text + "".join(reasoning))
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": replay.model.name,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


async def _send_quietly(coro: Any) -> None:
    try:
        await coro
    except Exception:
        pass
