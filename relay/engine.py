"""The replay engine: lease a conversation, have a page send the site's request for it, hand back the
answer's items as the proxy parses them, and give everything back when the request ends.

Before the first answer token a request may try several conversations of its model (failover), get one
fresh reCAPTCHA retry, or, when the model has no usable conversation at all, start a new conversation
that carries the request (which then joins the pool). An answer that fails before its first token (an
error line, an empty answer, a direct-battle conversation the site turned into a battle turn) counts as
a failure there, never as a successful empty answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncGenerator, Callable

from pool_store.pool import Conversation, Lease, NoConversation, PoolTimeout
from relay.errors import RateLimited, Unavailable
from relay.failures import FAILOVER_KINDS, failure_error
from relay.jobs import Job, JobDone, JobFailed, JobItem, ToolFailure
from relay.models import ModelInfo
from relay.output import OutputSpec, estimate_tokens
from relay.pages import Page, advice
from relay.recaptcha import diagnose
from relay.requestlog import RequestRecord
from relay.services import Services
from relay.settings import STRATEGY_CALL, Strategy
from relay.slots import ModelSlots
from relay.tokens import TokensAhead
from sites import lmarena as site

log = logging.getLogger(__name__)

Kind = site.FailureKind
CONTENT = ("text", "reasoning", "image")
# When the page finished reading an answer, the proxy has normally already seen its end;
# allow this long for the proxy's last hook before calling the job broken.
PAGE_DONE_GRACE = 3.0
# A direct-battle answer's first token waits for its second line (or this long): a battle turn streams
# both sides from the start, so a side b line shows up by then, before anything reached the client.
BATTLE_GUARD = 0.5


@dataclass
class Replay:
    """One request in flight: its lease (none for a new conversation), its job, and the answer's items
    up to its first token (`head`), which have already been read."""

    lease: Lease | None
    job: Job
    head: list[JobItem]
    model: ModelInfo
    record: RequestRecord
    prompt_tokens: int = 0  # estimated from the message text (never from attached files)
    owner: str | None = None  # the client conversation it serves (mirroring)
    text: str = ""  # the replayed side's answer as read so far: its text, its images as Markdown
    on_end: Callable[[bool], None] | None = None  # told once, when the request is over (ok or not)
    turns: list[site.ChatTurn] = field(default_factory=list)  # what the site was sent (set by the caller)
    spec: OutputSpec | None = None  # what the client asks of the answer (set by the caller)
    stopped: bool = False  # the client's limits were reached: the answer was stopped, and that is fine

    @property
    def side(self) -> str:
        return self.job.conversation.side if self.job.conversation else "a"

    def read(self, item: JobItem) -> None:
        if isinstance(item, site.StreamEvent) and item.side == self.side:
            if item.kind == "text":
                self.text += item.text
            elif item.kind == "image":
                self.text += image_markdown(item.text)

    def end(self, ok: bool) -> None:
        callback, self.on_end = self.on_end, None
        if callback is not None:
            callback(ok)


def image_markdown(url: str) -> str:
    """How an image of an answer is written into its content."""
    return f"![image]({url})"


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
        self.mirror: Any = None  # relay.mirror.Mirror, set by relay.core.assemble
        # requests of a model at the site at once, where they do not each hold a pooled conversation
        # (mirroring) and the conversations the tool creates in the background
        self.slots = ModelSlots(lambda: services.settings.sessions_per_model)
        self.tokens = TokensAhead(services, self.slots.free_now)

    # ------------------------------------------------------------------ start

    async def start(
        self, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord, strategy: Strategy | None = None,
        adopt: bool = True, background: bool = False,
    ) -> Replay:
        """Everything up to the first answer token. Errors raised here are the request's own. A `background`
        request (a client's side call) first lets a request that follows it by a moment go ahead, then waits
        behind every other request for its conversation, and takes no pooled conversation under mirroring."""
        prompt_tokens = estimate_tokens("".join(t.content for t in turns))
        await self.wait_for_page(direct=not model.virtual)
        if strategy is None:
            await self.services.strategy.wait_for_first_verdict(self.services.settings.queue_timeout)
            strategy = self.services.strategy.current
        if background:
            await asyncio.sleep(self.services.settings.side_call_delay)
        else:
            await self.tokens.on_arrival(model, strategy)
        if strategy == Strategy.MIRROR and self.mirror is not None:
            return await self.mirror.start(  # type: ignore[no-any-return]
                model, turns, record, prompt_tokens, adopt and not background, background)
        deadline = time.monotonic() + self.services.settings.queue_timeout
        last: JobFailed | None = None
        for attempt in range(max(1, self.services.settings.failover_tries)):
            record.attempts = attempt + 1
            if attempt:  # what failed may have changed the pages (a login gate, a host that moved)
                await self.wait_for_page(direct=not model.virtual)
            if (strategy == Strategy.FRESH and not model.virtual) or self._should_create(model):
                return await self._fresh(model, turns, record, prompt_tokens)
            lease = await self._lease(model, deadline, background)
            replay, last = await self._attempt(lease, model, turns, record, strategy, prompt_tokens)
            if replay is not None:
                return replay
            assert last is not None
            if last.kind not in FAILOVER_KINDS:
                break
        assert last is not None
        raise failure_error(last)

    async def wait_for_page(self, direct: bool) -> None:
        settings, pages = self.services.settings, self.services.pages
        if not pages.pages:
            raise Unavailable(f"No LMArena page is connected: {pages.advice()}",
                              retry_after=settings.unavailable_retry_after, source="page")
        if pages.ready_pages(direct=direct):
            return
        if direct and all(p.state == "needs_account" for p in pages.pages.values()):
            # a person has to sign in: waiting for the timeout would only hide that
            raise Unavailable(f"Direct chat needs a signed-in account. {pages.advice()}", retry_after=60,
                              code="login_required", source="page")
        # a challenge that clears by itself, a person signing in: worth a bounded wait
        if not await pages.wait_ready(min(settings.page_wait, settings.queue_timeout), direct=direct):
            raise Unavailable(f"No LMArena page is ready. {pages.advice(direct=direct)}", retry_after=30,
                              source="page")

    async def _attempt(
        self, lease: Lease, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord,
        strategy: Strategy, prompt_tokens: int,
    ) -> tuple[Replay | None, JobFailed | None]:
        """One leased conversation: a Replay when its answer began, else what failed."""
        conv = lease.conversation
        record.leased_at = time.time()
        record.conversation = conv.session_id
        # a pooled conversation is retried or continued; a battle conversation is continued too where the
        # site takes one message a turn (both sides answer a new turn, and the replayed side is read)
        can_post = site.is_direct(conv.mode) or (
            conv.mode == "battle" and self.services.observed.body_format == site.BodyFormat.USER_MESSAGE)
        used = Strategy.CONTINUE if strategy == Strategy.CONTINUE and can_post else Strategy.RETRY
        record.strategy = str(used)
        job, first = await self._replay(lease, turns, model, STRATEGY_CALL[used])
        head, failed = await self._head(job, first, conv)
        if failed is None:
            return self.replay_of(lease, job, head, model, record, prompt_tokens), None
        self._finish(lease, job, ok=False)
        record.codes = list(job.codes)
        if failed.kind == Kind.BATTLE_TURN:
            self.services.pool.retire(conv.session_id, failed.message)
        log.warning(
            "request %s for %s: conversation %s failed before the first token (%s: %s)%s",
            record.id, model.name, conv.session_id, failed.kind, failed.message,
            "; trying another" if failed.kind in FAILOVER_KINDS else "",
        )
        return None, failed

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

    async def _lease(self, model: ModelInfo, deadline: float, background: bool = False) -> Lease:
        settings = self.services.settings
        remaining = deadline - time.monotonic()
        try:
            if remaining <= 0:
                raise PoolTimeout(model.name)
            return await self.services.pool.lease(model.name, timeout=remaining, background=background)
        except NoConversation:
            how = "chat once in battle mode in the browser" if model.virtual else (
                "chat with it once in the browser, or run a prefill")
            if any(p.needs_account for p in self.services.pages.pages.values()):
                how += f"; {advice('needs_account')}"
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
        try:
            return await self._send_on(lease.conversation, call, turns, model)
        except BaseException:
            self._finish(lease, None, ok=False)
            raise

    async def _send_on(
        self, conv: Conversation, call: site.CallKind, turns: list[site.ChatTurn], model: ModelInfo,
        keep_body: bool = False,
    ) -> tuple[Job, JobItem]:
        """Have the conversation's page send `call` for it."""
        services = self.services

        def make() -> Job:
            job = services.jobs.new(conv, turns, model.id, call=call, body_format=services.observed.body_format)
            job.keep_body = keep_body
            return job

        return await self._send(make, conv.identity, site.is_direct(conv.mode), conv.session_id)

    async def _send(
        self, make: Callable[[], Job], identity: str | None, direct: bool, about: str
    ) -> tuple[Job, JobItem]:
        """Send a job from a ready page (of `identity`, or any page for None); a reCAPTCHA refusal gets one
        more try with a fresh token, a second flags the browser for a human check."""
        pages = self.services.pages
        for attempt in range(2):
            job = make()
            job.fresh_token = attempt > 0  # after a refusal, a token minted for this try only
            page = pages.page_for(identity, direct)
            try:
                first = await self._dispatch(job, page)
            except BaseException:
                self._end_job(job)
                raise
            if not (isinstance(first, JobFailed) and first.kind == Kind.RECAPTCHA):
                return job, first
            first = await self._diagnosed(job, first)
            log.warning("reCAPTCHA refused the token for %s: %s%s", about, first.message,
                        "; one more try with a fresh token" if attempt == 0 else "")
            self._end_job(job)
        # refused twice with fresh tokens: the site wants a person to prove themselves in that browser
        pages.flag_identity(page.identity if page is not None else identity, "needs_human_check")
        return job, first

    async def run_on(
        self, conv: Conversation, call: site.CallKind, turns: list[site.ChatTurn], model: ModelInfo,
        keep_body: bool = False,
    ) -> tuple[Job, list[JobItem], JobFailed | None]:
        """A call on a conversation the caller holds, read to its first token; a failed job is ended."""
        job, first = await self._send_on(conv, call, turns, model, keep_body)
        head, failed = await self._head(job, first, conv)
        if failed is not None:
            self._end_job(job)
        return job, head, failed

    async def create_for(
        self, model: ModelInfo, turns: list[site.ChatTurn], owner: str | None = None
    ) -> tuple[Job, list[JobItem], JobFailed | None]:
        """A new conversation carrying `turns` (belonging to `owner`), read to its first token."""
        job, first = await self.create_job(model, turns, owner)
        head, failed = await self._head(job, first, None)
        if failed is not None:
            self._end_job(job)
        return job, head, failed

    def replay_of(
        self, lease: Lease | None, job: Job, head: list[JobItem], model: ModelInfo, record: RequestRecord,
        prompt_tokens: int, owner: str | None = None,
    ) -> Replay:
        replay = Replay(lease, job, head, model, record, prompt_tokens, owner)
        for item in head:
            replay.read(item)
        return replay

    async def _diagnosed(self, job: Job, refused: JobFailed) -> JobFailed:
        """The refusal, with why (from what the page reported about its token, which may come a little after
        the proxy saw the 403)."""
        for _ in range(10):
            if job.token_report is not None:
                break
            await asyncio.sleep(0.05)
        page = self.services.pages.pages.get(job.page_id or "")
        reason, why = diagnose(job.token_report, page.sitekey if page else None)
        self.services.observed.token_refusal = {"reason": reason, "advice": why, "at": time.time()}
        if reason == "unknown":
            self.services.drift.note("recaptcha_refusal", "a refusal the page sent no token report for")
        return JobFailed(f"{refused.message} ({reason}: {why})", refused.status, refused.kind, refused.retry_after,
                         refused.source)

    async def _head(
        self, job: Job, first: JobItem, conv: Conversation | None
    ) -> tuple[list[JobItem], JobFailed | None]:
        """The answer's items up to its first token, or what failed before it. For a direct-battle
        conversation the first token waits for the next line (at most BATTLE_GUARD): a battle turn
        shows its side b by then."""
        head: list[JobItem] = []
        item: JobItem = first
        side = conv.side if conv else "a"
        guarded = (conv.mode if conv else job.mode) == site.DIRECT_MODE_2026
        release_at: float | None = None
        while True:
            if isinstance(item, JobFailed):
                return head, item
            if isinstance(item, JobDone):
                if release_at is None:  # the proxy calls a contentless answer a failure; be sure anyway
                    return head, JobFailed("the answer was empty", 502, Kind.EMPTY)
                return head + [item], None
            if item.kind == "error":
                return head, JobFailed(f"the answer failed: {item.text}", 502, site.stream_error_kind(item.text))
            if guarded and item.side != side and item.kind in CONTENT:
                return head, JobFailed("the site turned this direct conversation into a battle turn (two hidden "
                                       "models answer)", 502, Kind.BATTLE_TURN)
            head.append(item)
            if item.kind in CONTENT and item.side == side:
                if not guarded or release_at is not None:
                    return head, None
                release_at = time.monotonic() + BATTLE_GUARD
            elif release_at is not None and item.kind == "finish":
                return head, None
            if release_at is None:
                item = await self.next_item(job)
                continue
            try:
                item = await asyncio.wait_for(job.queue.get(), max(0.0, release_at - time.monotonic()))
            except asyncio.TimeoutError:
                return head, None

    async def _fresh(
        self, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord, prompt_tokens: int
    ) -> Replay:
        """lmarena-proxy-server's way: a new conversation that carries the request, then joins the pool."""
        record.strategy = str(Strategy.FRESH)
        record.leased_at = time.time()
        # not a target: the pool keeps a model stocked only when the user asked for it (prefill, /api/targets)
        job, first = await self.create_job(model, turns)
        record.conversation = job.session_id
        head, failed = await self._head(job, first, None)
        if failed is not None:
            self._finish(None, job, ok=False)
            record.codes = list(job.codes)
            log.warning("request %s: a new %s conversation failed: %s (%s)", record.id, model.name, failed.message,
                        failed.kind)
            raise failure_error(failed)
        return self.replay_of(None, job, head, model, record, prompt_tokens)

    async def create_job(
        self, model: ModelInfo, turns: list[site.ChatTurn], owner: str | None = None, greeting: bool = False
    ) -> tuple[Job, JobItem]:
        """Have a ready page create a conversation of `model` whose first turn carries `turns` (the prefill's
        `greeting`, or a client's). For `battle` (a model the site hides), a battle, which a guest may start."""
        services = self.services
        mode = "battle" if model.virtual else self.direct_mode()

        def make() -> Job:
            job = services.jobs.new_create(model.name, None if model.virtual else model.id, model.modality, turns,
                                           services.observed.body_format, mode=mode)
            job.owner, job.greeting = owner, greeting
            return job

        return await self._send(make, None, not model.virtual, f"a new {model.name} conversation")

    def direct_mode(self) -> str:
        """The mode of the Direct conversations the tool creates: as set, else as the site's own client."""
        setting = self.services.settings.direct_mode
        return setting if setting in site.DIRECT_MODES else self.services.observed.direct_mode

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

    def _prefix(self, job: Job) -> str:
        return (job.conversation.prefix if job.conversation else "") or self.services.observed.prefix

    def _job_message(self, job: Job) -> dict[str, Any]:
        """What the page is asked to send: the site's request for the job's call, and a fresh token."""
        settings = self.services.settings
        conv = job.conversation
        request = site.page_request(
            job.call, self._prefix(job), conv.session_id if conv else None,
            conv.retry_message_id() if conv else None, settings.recaptcha_actions,
        )
        message: dict[str, Any] = {"type": "job", "job": job.id, "body": {}, "method": request.method,
                                   "url": request.path, "action": request.action, "ahead": not job.fresh_token,
                                   "sitekey": settings.recaptcha_sitekey, "fallbackSitekey": site.RECAPTCHA_SITE_KEY}
        if settings.upload_files:
            uploads = site.upload_payload(job.turns)
            if uploads:
                message["uploads"] = uploads
                message["uploadActions"] = settings.upload_actions
        return message

    async def next_item(self, job: Job) -> JobItem:
        """The job's next item; a job silent for `upstream_timeout` seconds fails with a timeout."""
        if not job.queue.empty():  # lines that came together: no wait
            return job.queue.get_nowait()
        job.watch_silence(self.services.settings.upstream_timeout)
        return await job.queue.get()

    def on_page_message(self, page: Page, message: dict[str, Any]) -> str | None:
        """What a page says about its jobs; the proxy sees the status itself, first-hand. Returns what was
        wrong with a message about a job this page was never given (the hub drops and logs it); a late word
        about one of its own that has ended is normal and ignored."""
        kind = message.get("type")
        jobs = self.services.jobs
        if kind == "page_gone":
            for orphan in jobs.for_page(page.id):
                orphan.fail("the LMArena page went away during the request", 503, ToolFailure.PAGE_GONE, "page")
            return None
        job_id = str(message.get("job", ""))
        job = jobs.get(job_id)
        if job is None or job.page_id != page.id:
            return None if jobs.ended_on(job_id, page.id) else "a job this page was not given"
        if isinstance(message.get("recaptcha"), dict):  # job_done (job_token from older page scripts)
            job.token_report = {k: v for k, v in message["recaptcha"].items() if k != "token"}
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
        return None

    # ------------------------------------------------------------------ the end

    def _end_job(self, job: Job) -> None:
        """Forget a job; if its answer is still coming, have its page stop reading it and press the
        site's Stop for the turn, so the site stops generating too."""
        services = self.services
        page = services.pages.pages.get(job.page_id or "")
        if not job.ended:
            job.ended = True
            if page is not None:
                self._spawn(page.send({"type": "abort", "job": job.id, "stopUrl": self._stop_url(job)}))
        if services.jobs.get(job.id) is job:
            services.jobs.discard(job)
            if page is not None:
                page.jobs = max(0, page.jobs - 1)
        services.pool.recheck(job.model)

    def _stop_url(self, job: Job) -> str | None:
        session = job.target_session
        if not (job.flow_seen and session and job.user_message_id):
            return None  # nothing reached the site, or the turn is not known
        return site.stop_path(self._prefix(job), session, job.user_message_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(_quietly(coro))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _finish(self, lease: Lease | None, job: Job | None, ok: bool) -> None:
        """Give everything back; safe to call more than once."""
        if job is not None:
            self._end_job(job)
        if lease is not None and not lease.released:
            self.services.pool.mark_used(lease.conversation.session_id, ok)
            self.services.pool.release(lease)

    def stop_early(self, replay: Replay) -> None:
        """The client has all it wants (a stop string, its token budget): end the answer here. Reading
        stops; the page aborts the request and presses the site's Stop; the conversation is fine."""
        replay.stopped = True

    def abandon(self, replay: Replay) -> None:
        """The client left before reading anything."""
        self._finish(replay.lease, replay.job, ok=False)
        replay.end(False)

    async def items(self, replay: Replay) -> AsyncGenerator[JobItem, None]:
        """The answer's items from the first on; always gives the lease back."""
        ok = False
        try:
            pending = list(replay.head)
            while True:
                if pending:
                    item = pending.pop(0)
                else:
                    item = await self.next_item(replay.job)
                    replay.read(item)
                yield item
                if isinstance(item, JobDone):
                    ok = True
                    return
                if isinstance(item, JobFailed):
                    return
        finally:
            ok = ok or replay.stopped
            if not ok:
                replay.record.codes = list(replay.job.codes)
            self._finish(replay.lease, replay.job, ok)
            replay.end(ok)

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
                    out.failure = JobFailed(item.text, 502, site.stream_error_kind(item.text))
            elif isinstance(item, JobFailed):
                out.failure = item
        return out


async def _quietly(coro: Any) -> None:
    try:
        await coro
    except Exception:
        pass
