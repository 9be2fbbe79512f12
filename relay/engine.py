"""The replay engine: lease a conversation, have a page send the site's request for it, hand back the
answer's items as the proxy parses them, and give everything back when the request ends.

Before the first answer line a request may try several conversations of its model (failover), get one
fresh reCAPTCHA retry, or, when the model has no usable conversation at all, start a new conversation
that carries the request (which then joins the pool).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from pool_store.pool import Lease, NoConversation, PoolTimeout
from relay.errors import (
    ContentFiltered,
    RateLimited,
    RelayError,
    Unavailable,
    UpstreamFailed,
    UpstreamTimedOut,
)
from relay.jobs import Job, JobDone, JobFailed, JobItem, ToolFailure
from relay.models import ModelInfo
from relay.pages import ADVICE, Page
from relay.requestlog import RequestRecord
from relay.services import Services
from relay.settings import STRATEGY_CALL, Strategy
from sites import lmarena as site

log = logging.getLogger(__name__)

Kind = site.FailureKind
# Failures before the first token after which another conversation of the same model is tried.
# Not: content_filter (the request itself), challenge (the page), rate_limited (the model).
FAILOVER_KINDS = frozenset(
    {Kind.FOREIGN_SESSION, Kind.HAS_FEEDBACK, Kind.NOT_FOUND, Kind.UPSTREAM_ERROR, Kind.TRUNCATED, Kind.EMPTY,
     Kind.STREAM_ERROR, Kind.ABORTED, ToolFailure.PAGE_ERROR, ToolFailure.TIMEOUT, ToolFailure.PAGE_GONE}
)
# When the page finished reading an answer, the proxy has normally already seen its end;
# allow this long for the proxy's last hook before calling the job broken.
PAGE_DONE_GRACE = 3.0
WHO = {"upstream": "LMArena", "page": "the browser page", "proxy": "the proxy", "tool": "the tool"}


def estimate_tokens(text: str) -> int:
    """Rough count for `usage` when the site gives none: one token per CJK character,
    one per four other characters."""
    cjk = sum(1 for ch in text if "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af")
    return cjk + (len(text) - cjk + 3) // 4


def failure_error(item: JobFailed) -> RelayError:
    """What a failed job tells the client."""
    message = f"{WHO.get(item.source, item.source)}: {item.message}"
    if item.kind == Kind.RATE_LIMITED:
        return RateLimited(message, retry_after=item.retry_after or 60)
    if item.kind == Kind.CONTENT_FILTER:
        return ContentFiltered(message)
    if item.kind == Kind.RECAPTCHA:
        return Unavailable(f"{message} (twice, with fresh tokens): {ADVICE['needs_human_check']}", retry_after=60)
    if item.kind in (Kind.CHALLENGE, ToolFailure.PAGE_GONE):
        return Unavailable(message, retry_after=item.retry_after or 30)
    if item.kind == ToolFailure.TIMEOUT:
        return UpstreamTimedOut(message)
    return UpstreamFailed(message)


@dataclass
class Replay:
    """One request in flight: its lease (none for a new conversation), its job, the first item."""

    lease: Lease | None
    job: Job
    first: JobItem
    model: ModelInfo
    record: RequestRecord
    prompt_tokens: int = 0  # estimated from the message text (never from attached files)

    @property
    def side(self) -> str:
        return self.job.conversation.side if self.job.conversation else "a"


@dataclass
class Collected:
    """A whole answer's text, read to its end (the canary's view of an answer)."""

    text: str = ""
    images: list[str] = field(default_factory=list)
    failure: JobFailed | None = None


class ReplayEngine:
    def __init__(self, services: Services) -> None:
        self.services = services
        self._background: set[asyncio.Task[Any]] = set()  # fire-and-forget sends, kept referenced

    # ------------------------------------------------------------------ start

    async def start(
        self, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord, strategy: Strategy | None = None
    ) -> Replay:
        """Everything up to the first answer line. Errors raised here are the request's own."""
        prompt_tokens = estimate_tokens("".join(t.content for t in turns))
        strategy = strategy or self.services.strategy.current
        await self._wait_for_page()
        deadline = time.monotonic() + self.services.settings.queue_timeout
        last: JobFailed | None = None
        for attempt in range(max(1, self.services.settings.failover_tries)):
            record.attempts = attempt + 1
            if (strategy == Strategy.FRESH and not model.virtual) or self._should_create(model):
                return await self._fresh(model, turns, record, prompt_tokens)
            lease = await self._lease(model, deadline)
            replay, last = await self._attempt(lease, model, turns, record, strategy, prompt_tokens)
            if replay is not None:
                return replay
            assert last is not None
            if last.kind not in FAILOVER_KINDS:
                break
        assert last is not None
        raise failure_error(last)

    async def _wait_for_page(self) -> None:
        settings, pages = self.services.settings, self.services.pages
        if not pages.pages:
            raise Unavailable(
                "No LMArena page is connected: open lmarena.ai in the browser that uses this proxy",
                retry_after=settings.unavailable_retry_after,
            )
        if not pages.ready_pages():
            # a challenge that clears by itself, a person signing in: worth a bounded wait
            if not await pages.wait_ready(min(settings.page_wait, settings.queue_timeout)):
                raise Unavailable(f"No LMArena page is ready. {pages.advice()}", retry_after=30)

    async def _attempt(
        self, lease: Lease, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord,
        strategy: Strategy, prompt_tokens: int,
    ) -> tuple[Replay | None, JobFailed | None]:
        """One leased conversation: a Replay when its answer began, else what failed."""
        conv = lease.conversation
        record.leased_at = time.time()
        record.conversation = conv.session_id
        # a pooled conversation is retried or continued; a battle one needs both sides, so always retried
        used = Strategy.CONTINUE if strategy == Strategy.CONTINUE and conv.mode == "direct" else Strategy.RETRY
        record.strategy = str(used)
        job, first = await self._replay(lease, turns, model, STRATEGY_CALL[used])
        if not isinstance(first, JobFailed):
            return Replay(lease, job, first, model, record, prompt_tokens), None
        self._finish(lease, job, ok=False)
        log.warning(
            "request %s for %s: conversation %s failed before the first token (%s: %s)%s",
            record.id, model.name, conv.session_id, first.kind, first.message,
            "; trying another" if first.kind in FAILOVER_KINDS else "",
        )
        return None, first

    def _should_create(self, model: ModelInfo) -> bool:
        """A model with no conversation at all gets a new one, up to its target number at once. One whose
        conversations are only cooling down waits for them: a new conversation would meet the same limit."""
        settings = self.services.settings
        return (
            settings.fresh_when_empty
            and not model.virtual  # a battle conversation is one a person starts in battle mode
            and self.services.pool.servable_count(model.name) == 0
            and self.services.jobs.creating(model.name) < max(1, settings.sessions_per_model)
        )

    async def _lease(self, model: ModelInfo, deadline: float) -> Lease:
        settings = self.services.settings
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise PoolTimeout(model.name)
            return await self.services.pool.lease(model.name, timeout=remaining)
        except NoConversation:
            how = "chat once in battle mode in the browser" if model.virtual else (
                "chat with it once in the browser, or run a prefill")
            raise Unavailable(
                f"No usable conversation of {model.name!r}: {how}", retry_after=settings.unavailable_retry_after
            ) from None
        except PoolTimeout:
            raise RateLimited(
                f"All conversations of {model.name!r} stayed busy for {settings.queue_timeout:.0f} s",
                retry_after=settings.unavailable_retry_after,
            ) from None

    async def _replay(
        self, lease: Lease, turns: list[site.ChatTurn], model: ModelInfo, call: site.CallKind
    ) -> tuple[Job, JobItem]:
        """Retry (or continue) the leased conversation; a reCAPTCHA refusal gets one more try with a
        fresh token."""
        conv = lease.conversation
        services = self.services
        for _ in range(2):
            job = services.jobs.new(conv, turns, model.id, call=call, body_format=services.observed.body_format)
            try:
                first = await self._dispatch(job, services.pages.page_for(conv.identity))
            except BaseException:
                self._finish(lease, job, ok=False)
                raise
            if not (isinstance(first, JobFailed) and first.kind == Kind.RECAPTCHA):
                return job, first
            log.info("reCAPTCHA refused the token for conversation %s: one more try", conv.session_id)
            self._end_job(job)
        # refused twice with fresh tokens: the site wants a person to prove themselves in that browser
        services.pages.flag_identity(conv.identity, "needs_human_check")
        return job, first

    async def _fresh(
        self, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord, prompt_tokens: int
    ) -> Replay:
        """lmarena-proxy-server's way: a new conversation that carries the request, then joins the pool."""
        record.strategy = str(Strategy.FRESH)
        record.leased_at = time.time()
        self.services.pool.add_target(model.name)
        job, first = await self.create_job(model, turns)
        record.conversation = job.session_id
        if isinstance(first, JobFailed):
            self._finish(None, job, ok=False)
            log.warning("request %s: a new %s conversation failed: %s (%s)", record.id, model.name, first.message,
                        first.kind)
            raise failure_error(first)
        return Replay(None, job, first, model, record, prompt_tokens)

    async def create_job(self, model: ModelInfo, turns: list[site.ChatTurn]) -> tuple[Job, JobItem]:
        """Have a ready page create a conversation of `model` whose first turn carries `turns`."""
        services = self.services
        job = services.jobs.new_create(model.name, model.id, model.modality, turns, services.observed.body_format)
        try:
            first = await self._dispatch(job, services.pages.page_for(None))
        except BaseException:
            self._finish(None, job, ok=False)
            raise
        return job, first

    def end_job(self, job: Job) -> None:
        self._finish(None, job, ok=True)

    # ------------------------------------------------------------------ the page

    async def _dispatch(self, job: Job, page: Page | None) -> JobItem:
        if page is None:
            return JobFailed("no page of this conversation's browser identity is ready", 503,
                             ToolFailure.PAGE_GONE, source="tool")
        job.page_id = page.id
        page.jobs += 1
        await page.send(self._job_message(job))
        return await self.next_item(job)

    def _job_message(self, job: Job) -> dict[str, Any]:
        """What the page is asked to send: the site's request for the job's call, and a fresh token."""
        settings = self.services.settings
        conv = job.conversation
        prefix = (conv.prefix if conv else "") or self.services.observed.prefix
        request = site.page_request(
            job.call, prefix, conv.session_id if conv else None, conv.retry_message_id() if conv else None,
            settings.recaptcha_actions,
        )
        message: dict[str, Any] = {"type": "job", "job": job.id, "sitekey": settings.recaptcha_sitekey, "body": {},
                                   "method": request.method, "url": request.path, "action": request.action}
        if settings.upload_files:
            uploads = site.upload_payload(job.turns)
            if uploads:
                message["uploads"] = uploads
                message["uploadActions"] = settings.upload_actions
        return message

    async def next_item(self, job: Job) -> JobItem:
        timeout = self.services.settings.upstream_timeout
        try:
            return await asyncio.wait_for(job.queue.get(), timeout)
        except asyncio.TimeoutError:
            return JobFailed(f"no answer line within {timeout:.0f} s", 504, ToolFailure.TIMEOUT, source="tool")

    def on_page_message(self, page: Page, message: dict[str, Any]) -> None:
        """What a page says about its jobs; the proxy sees the status itself, first-hand."""
        kind = message.get("type")
        if kind == "page_gone":
            for orphan in self.services.jobs.for_page(page.id):
                orphan.fail("the LMArena page went away during the request", 503, ToolFailure.PAGE_GONE, "page")
            return
        job = self.services.jobs.get(str(message.get("job", "")))
        if job is None or job.page_id != page.id:
            return
        if kind == "job_error":
            job.fail(f"the page could not send the request: {str(message.get('message', ''))[:300]}", 502,
                     ToolFailure.PAGE_ERROR, "page")
        elif kind == "job_done" and not job.ended:
            if not job.flow_seen:
                job.fail("the page's request did not pass through the proxy", 502, ToolFailure.PROXY_MISSED, "proxy")
            else:
                asyncio.get_running_loop().call_later(
                    PAGE_DONE_GRACE, job.fail, "the answer ended without a last line", 502, Kind.TRUNCATED, "proxy"
                )

    # ------------------------------------------------------------------ the end

    def _end_job(self, job: Job) -> None:
        """Forget a job; if it is still running, tell its page to stop the request."""
        services = self.services
        page = services.pages.pages.get(job.page_id or "")
        if not job.ended:
            job.ended = True
            if page is not None:
                self._spawn(page.send({"type": "abort", "job": job.id}))
        if services.jobs.get(job.id) is job:
            services.jobs.discard(job)
            if page is not None:
                page.jobs = max(0, page.jobs - 1)
        services.pool.recheck(job.model)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(_quietly(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _finish(self, lease: Lease | None, job: Job, ok: bool) -> None:
        """Give everything back; safe to call more than once."""
        self._end_job(job)
        if lease is not None and not lease.released:
            self.services.pool.mark_used(lease.conversation.session_id, ok)
            self.services.pool.release(lease)

    def abandon(self, replay: Replay) -> None:
        """The client left before reading anything."""
        self._finish(replay.lease, replay.job, ok=False)

    async def items(self, replay: Replay) -> AsyncIterator[JobItem]:
        """The job's items from the first on; always gives the lease back."""
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
                item = await self.next_item(replay.job)
        finally:
            self._finish(replay.lease, replay.job, ok)

    async def collect(self, replay: Replay) -> Collected:
        """Read a whole answer: the replayed side's text and images, or what failed."""
        out = Collected()
        async for item in self.items(replay):
            if isinstance(item, site.StreamEvent) and item.side == replay.side:
                if item.kind == "text":
                    out.text += item.text
                elif item.kind == "image":
                    out.images.append(item.text)
                elif item.kind == "error":
                    out.failure = JobFailed(item.text, 502, Kind.STREAM_ERROR)
            elif isinstance(item, JobFailed):
                out.failure = item
        return out


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception:
        pass
