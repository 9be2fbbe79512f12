"""reCAPTCHA tokens a step ahead, minted in the page that will spend them.

The site wants a fresh token with every stream call, and minting one is the largest part of the time
before a request reaches the site. So the page is asked to start minting the moment a request arrives,
while the tool reads it, leases a conversation and writes the job; the job then takes that token. Only
when the request can be served at once (a ready conversation or a free slot, nobody waiting): a request
that waits in a queue mints when its turn comes, so no token is made long before it is spent. A page
holds at most two such tokens per kind of call, and drops one older than 100 s (they live 120 s).

`arena_premint_tokens` (off by default) also keeps one token ready in each page for each kind of call it
has made, minted again before it expires: the fastest, but it mints on a timer when idle, which reports
say lowers the site's reCAPTCHA scores (shared/reference/lmarena_2026.md §4).
"""

from __future__ import annotations

import logging
from typing import Callable

from relay.models import ModelInfo
from relay.services import Services
from relay.settings import Strategy
from sites import lmarena as site

log = logging.getLogger(__name__)


class TokensAhead:
    def __init__(self, services: Services, slots_free: Callable[[str], bool]) -> None:
        self.services = services
        self.slots_free = slots_free  # mirroring: whether a request of the model may reach the site now

    async def on_arrival(self, model: ModelInfo, strategy: Strategy) -> None:
        """A request arrived: if it will be sent at once, have its page start minting its token now (the
        message goes out before the job's, so the page always has it first)."""
        services = self.services
        if services.pages.keep_tokens:  # the pages keep one ready already (arena_premint_tokens)
            return
        if strategy == Strategy.MIRROR:
            now, action = self.slots_free(model.name), services.settings.recaptcha_actions.submit
        elif strategy == Strategy.RETRY and services.pool.ready_now(model.name):
            now, action = True, services.settings.recaptcha_actions.retry
        else:  # a new conversation, or a turn of a shared one: both carry the submit action
            now = strategy in (Strategy.FRESH, Strategy.CONTINUE) or not services.pool.servable_count(model.name)
            action = services.settings.recaptcha_actions.submit
        page = services.pages.page_for(None, direct=not model.virtual) if now else None
        if page is None or page.ws is None:
            return
        settings = services.settings
        try:
            await page.send({"type": "mint", "action": action, "sitekey": settings.recaptcha_sitekey,
                             "fallbackSitekey": site.RECAPTCHA_SITE_KEY})
        except Exception:  # the page is going away: the job will find another or fail on its own
            log.debug("could not ask page %s to mint ahead", page.id)
