"""What the tool is told (settings), what it chose (the strategy) and what it saw of the site."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sites import lmarena as site


class Strategy(StrEnum):
    """How a request reaches the site. The site may stop honouring the messages a retry carries
    (it keeps the history itself since late 2025), so the canary picks the strategy that works.

    RETRY: replay a pooled conversation's retry with the client's messages written in (the user's design);
    MIRROR: each client conversation gets a site conversation of its own, continued turn by turn (for a
      site that keeps the history itself);
    CONTINUE: post the client's whole conversation as a new turn of a shared pooled conversation (only when
      pinned: the site then holds every copy, and one client's text reaches another's answers);
    FRESH: a new conversation per request, kept in the pool afterwards.
    """

    RETRY = "retry"
    MIRROR = "mirror"
    CONTINUE = "continue"
    FRESH = "fresh"


# The canary tries them in this order; the first that answers the rewritten content serves.
STRATEGIES: tuple[Strategy, ...] = (Strategy.RETRY, Strategy.MIRROR, Strategy.FRESH)

# The site call each strategy makes for a direct-mode conversation.
STRATEGY_CALL: dict[Strategy, site.CallKind] = {
    Strategy.RETRY: "retry",
    Strategy.MIRROR: "post",
    Strategy.CONTINUE: "post",
    Strategy.FRESH: "create",
}


@dataclass
class StrategyState:
    mode: str = "auto"  # "auto" (the canary chooses) or a pinned strategy
    chosen: Strategy = Strategy.RETRY
    canary: dict[str, Any] | None = None  # the last canary run
    # set while the canary's first run is under way: requests wait for its verdict rather than use a
    # strategy nobody has checked (a retry on a site that ignores a retry's messages answers something else)
    first_run: asyncio.Future[None] | None = None
    store: Any = None  # where the last verdict is kept (the pool's file), so a restart starts from it

    @property
    def current(self) -> Strategy:
        return self.chosen if self.mode == "auto" else Strategy(self.mode)

    def use_store(self, store: Any) -> None:
        self.store = store
        saved = store.load_setting("strategy")
        if saved in set(map(str, Strategy)):
            self.chosen = Strategy(saved)

    def choose(self, strategy: Strategy) -> None:
        self.chosen = strategy
        if self.store is not None:
            self.store.save_setting("strategy", str(strategy))

    async def wait_for_first_verdict(self, timeout: float) -> None:
        if self.mode != "auto" or self.first_run is None or self.first_run.done():
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.first_run), timeout)
        except asyncio.TimeoutError:
            pass

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode, "current": str(self.current), "canary": self.canary}


@dataclass
class SiteObservations:
    """What the tool learned about the site from the traffic it saw."""

    body_format: site.BodyFormat = site.BodyFormat.USER_MESSAGE  # what the site's own client sends now
    direct_mode: str = site.DIRECT_MODE_2026  # what its Direct chats are sent as now (learned from them)
    prefix: str = site.STREAM_PREFIXES[0]  # path prefix of the stream endpoints the site's client uses
    last_activity: float = 0.0  # last stream request of any kind (a person's or the tool's)
    last_arena_request: float = 0.0  # last request of any kind to an arena host through the proxy
    # TLS handshakes browsers refused on arena hosts (they do not trust the tool's CA): host -> (count, last time)
    untrusted: dict[str, tuple[int, float]] = field(default_factory=dict)
    token_refusal: dict[str, Any] | None = None  # the last reCAPTCHA refusal: its reason, advice and time
    proxy_port: int = 8080  # where browsers reach the proxy (for advice)


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
    recaptcha_sitekey: str = ""  # empty: the key the page finds the site using (the usual case)
    recaptcha_actions: site.RecaptchaActions = field(default_factory=site.RecaptchaActions)
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
    max_request_bytes: int = 48 * 1024 * 1024  # a larger request body is a 413
    mirror_limit: int = 2000  # client conversations remembered (least recently used first out)
    mirror_ttl: float = 7 * 86400.0  # and for how long after their last turn
    direct_mode: str = "auto"  # the mode of the Direct conversations the tool creates; auto: as the site's client
    side_calls: str = "defer"  # defer | same | refuse | a model's name (relay/sidecalls.py)
    side_call_delay: float = 1.0  # a deferred side call waits this long before it may take a conversation
