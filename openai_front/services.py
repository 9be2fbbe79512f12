"""The services one running tool shares between its proxy addons and its API server."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from openai_front.jobs import JobTable
from openai_front.models import ModelRegistry
from openai_front.pages import Page, PageHub
from openai_front.requestlog import RequestLog
from pool_store.pool import Conversation, SessionPool
from sites import lmarena as site

log = logging.getLogger(__name__)

# When the page finished reading an answer, the proxy has normally already seen its end;
# allow this long for the proxy's last hook before calling the job broken.
PAGE_DONE_GRACE = 3.0


@dataclass
class SiteState:
    """What the tool learned about the site from the traffic it saw."""

    era: str = "b"  # body generation of the site's own client: "a" messages[], "b" userMessage
    prefix: str = "/nextjs-api/stream/"  # path prefix of the stream endpoints the site's client uses
    last_activity: float = 0.0  # last stream request of any kind (a person's or the tool's)


STRATEGIES = ("retry", "continue", "fresh")


@dataclass
class StrategyState:
    """How a request reaches the site (protocol §3.2: the site may stop honouring rewritten retries).

    retry: replay a pooled conversation's retry with the client's messages (the user's design);
    continue: post the client's conversation as a new turn of a pooled conversation;
    fresh: a new conversation per request, kept in the pool afterwards.
    """

    mode: str = "auto"  # "auto" (the canary chooses) or a pinned strategy
    chosen: str = "retry"
    canary: dict[str, Any] | None = None  # the last canary run

    @property
    def current(self) -> str:
        return self.chosen if self.mode == "auto" else self.mode

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "current": self.current, "canary": self.canary}


@dataclass
class Settings:
    api_keys: list[str] = field(default_factory=list)
    queue_timeout: float = 120.0  # how long a request may wait for a free conversation
    upstream_timeout: float = 90.0  # until the first answer line, and between lines
    keepalive: float = 10.0  # a stream not started by then is committed, with SSE comments while it waits
    failover_tries: int = 3  # conversations tried for one request before its first token
    sessions_per_model: int = 4
    fresh_when_empty: bool = True  # a model with no usable conversation gets a new one for the request
    prefill_message: str = "Hi"
    unavailable_retry_after: float = 10.0
    recaptcha_sitekey: str = site.RECAPTCHA_SITE_KEY
    action_submit: str = site.ACTION_SUBMIT  # the reCAPTCHA action of create and post
    action_retry: str = site.ACTION_RETRY
    lang: str = "en"  # console and dashboard language (arena_lang)
    page_wait: float = 30.0  # a request waits this long for a page that is not ready (challenge, signed out)
    tavern_mode: bool = False  # merge all system messages into one leading system message
    bypass_mode: bool = False  # an extra empty user message; `--bypass` moves images out of the last message
    reasoning_as_think: bool = False  # reasoning inline as <think>...</think> instead of reasoning_content
    citations: bool = True  # a search answer's sources appended as a Markdown list
    image_fetch_timeout: float = 30.0  # fetching a generated image for b64_json
    upload_files: bool = False  # inline files go through the site's upload flow instead
    upload_actions: str = ""  # "generateUploadUrl id,getSignedUrl id"; empty: the page finds them
    route_prefix: str = ""  # the OpenAI and pool routes under this path, e.g. "/arena"
    rate_limit: int = 0  # requests a minute per client (API key or address); 0: no limit


class Services:
    def __init__(
        self,
        settings: Settings | None = None,
        pool: SessionPool | None = None,
        models: ModelRegistry | None = None,
        pages: PageHub | None = None,
    ) -> None:
        self.settings = settings or Settings()
        self.models = models or ModelRegistry()
        self.pages = pages or PageHub()
        self.jobs = JobTable()
        self.site = SiteState()
        self.strategy = StrategyState()
        self.monitor: Any = None  # openai_front.monitor.Monitor, made with the app
        self.requests = RequestLog()
        self.pages.on_job_message = self._on_page_message
        self.pages.on_identity_change = self._on_identity_change
        self.on_pool_shrink: Callable[[str], None] = lambda model: None  # the keeper sets this
        self.use_pool(pool or SessionPool())

    def use_pool(self, pool: SessionPool) -> None:
        """Serve from this pool (the store is opened once options are known)."""
        self.pool = pool
        pool.can_serve = self._can_serve
        pool.prospects = self.jobs.creating
        pool.on_shrink = lambda model: self.on_pool_shrink(model)
        self.pages.on_page_change = lambda: pool.wake()

    def _on_identity_change(self, old: str, new: str | None) -> None:
        if any(p.identity == old for p in self.pages.pages.values()):
            return  # another page still speaks for the old identity
        count = self.pool.retire_where("the browser's identity changed (signed out or a new session)", identity=old)
        if count:
            log.warning("retired %d conversations of the previous browser identity", count)

    def _can_serve(self, conv: Conversation) -> bool:
        return self.pages.page_for(conv.identity) is not None

    def _on_page_message(self, page: Page, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "page_gone":
            for orphan in self.jobs.for_page(page.id):
                orphan.fail(
                    "the LMArena page went away during the request", status=503, kind="page_gone", source="page"
                )
            return
        job = self.jobs.get(str(message.get("job", "")))
        if job is None or job.page_id != page.id:
            return
        # job_status is informational: the proxy sees the same status first-hand
        if kind == "job_error":
            job.fail(
                f"the page could not send the request: {str(message.get('message', ''))[:300]}",
                status=502,
                kind="page_error",
                source="page",
            )
        elif kind == "job_done" and not job.ended:
            if not job.flow_seen:
                job.fail("the page's request did not pass through the proxy", kind="proxy_missed", source="proxy")
            else:
                late = job
                asyncio.get_running_loop().call_later(
                    PAGE_DONE_GRACE,
                    lambda: late.fail("the answer ended without a last line", kind="truncated", source="proxy"),
                )

    def health(self) -> dict[str, Any]:
        pages = self.pages.counts()
        pool = self.pool.stats()
        if not pages["connected"]:
            status = "waiting_for_page"
        elif not pages["ready"]:
            status = "page_not_ready"
        elif not any(row["idle"] + row["busy"] for row in pool.values()):
            status = "empty_pool"
        else:
            status = "ok"
        return {
            "status": status,
            "pages": pages,
            "pool": pool,
            "jobs_in_flight": len(self.jobs),
            "models_from_page": self.models.page_updated is not None,
            "strategy": self.strategy.describe(),
        }

