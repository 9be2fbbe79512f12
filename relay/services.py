"""The state one running tool shares between its proxy addons and its API: plain holders, no wiring.
Who tells whom about a change is set in one place, `relay.core.assemble`."""

from __future__ import annotations

import logging
from typing import Any, Callable

from pool_store.pool import SessionPool
from relay.drift import DriftLog
from relay.jobs import JobTable
from relay.mirror_book import MirrorBook
from relay.models import ModelRegistry
from relay.pages import PageHub
from relay.requestlog import RequestLog
from relay.settings import Settings, SiteObservations, StrategyState

log = logging.getLogger(__name__)


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
        self.pool = pool or SessionPool()
        self.jobs = JobTable()
        self.observed = SiteObservations()
        self.strategy = StrategyState()
        self.requests = RequestLog()
        self.drift = DriftLog()
        self.mirrors = MirrorBook(self.settings.mirror_limit, self.settings.mirror_ttl)  # client conversations
        # the tool's options as set (given by the proxy's side, which owns them), for the bug report
        self.describe_options: Callable[[], dict[str, Any]] = dict

    def forget_identity(self, old: str, new: str | None) -> None:
        """A page came back as another browser identity: the old one's conversations would only get 401s."""
        if any(p.identity == old for p in self.pages.pages.values()):
            return  # another page still speaks for the old identity
        count = self.pool.retire_where("the browser's identity changed (signed out or a new session)", identity=old)
        if count:
            log.warning("retired %d conversations of the previous browser identity", count)

    def health(self) -> dict[str, Any]:
        pages = self.pages.counts()
        pool = self.pool.stats()
        if not pages["connected"]:
            status = "waiting_for_page"
        elif not pages["ready"]:
            status = "page_not_ready"
        elif not any(row["ready"] + row["busy"] for row in pool.values()):
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
