"""The services one running tool shares between its proxy addons and its API server."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from openai_front.jobs import JobTable
from openai_front.models import ModelRegistry
from openai_front.pages import Page, PageHub
from pool_store.pool import Conversation, SessionPool

log = logging.getLogger(__name__)

# When the page finished reading an answer, the proxy has normally already seen its end;
# allow this long for the proxy's last hook before calling the job broken.
PAGE_DONE_GRACE = 3.0


@dataclass
class Settings:
    api_keys: list[str] = field(default_factory=list)
    queue_timeout: float = 120.0  # how long a request may wait for a free conversation
    upstream_timeout: float = 90.0  # until the first answer line, and between lines
    unavailable_retry_after: float = 10.0


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
        self.pages.on_job_message = self._on_page_message
        self.pool = SessionPool()
        self.use_pool(pool or self.pool)

    def use_pool(self, pool: SessionPool) -> None:
        """Serve from this pool (the store is opened once options are known)."""
        self.pool = pool
        pool.can_serve = self._can_serve
        self.pages.on_page_change = lambda: pool.wake()

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
        if kind == "job_status":
            job.upstream_status = int(message.get("status") or 0)
        elif kind == "job_error":
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
        }

