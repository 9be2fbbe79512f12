"""Options that shape requests and answers, choose the strategy, and guard the API."""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, exceptions

from addons.options import parsed
from relay.canary import Canary
from relay.options import (
    parse_aliases,
    parse_choice,
    parse_recaptcha_actions,
    parse_route_prefix,
    parse_seconds,
    parse_sitekey,
    parse_upload_actions,
)
from relay.services import Services
from relay.settings import Strategy
from sites import lmarena as site

log = logging.getLogger(__name__)

STRATEGY_CHOICES = ("auto", *map(str, Strategy))
DIRECT_MODE_CHOICES = ("auto", *site.DIRECT_MODES)


class ApiOptions:
    def __init__(self, services: Services, canary: Canary) -> None:
        self.services = services
        self.canary = canary
        self.started = False
        self._tasks: set[asyncio.Task[None]] = set()

    def load(self, loader) -> None:
        loader.add_option("arena_tavern_mode", bool, False,
                          "Merge all system messages into one leading system message (for SillyTavern).")
        loader.add_option("arena_bypass_mode", bool, False,
                          "Add an empty user message after the conversation; '--bypass' at the end of a message "
                          "moves its images into a message before it.")
        loader.add_option("arena_reasoning_as_think", bool, False,
                          "Put reasoning inline as <think>...</think> instead of reasoning_content.")
        loader.add_option("arena_citations", bool, True,
                          "Append a search answer's sources as a Markdown list.")
        loader.add_option("arena_model_aliases", str, "",
                          "Extra model names: alias=model, comma-separated.")
        loader.add_option("arena_auto_aliases", bool, True,
                          "Accept model names without their date suffix (claude-opus-4 for claude-opus-4-20250514).")
        loader.add_option("arena_upload_files", bool, False,
                          "Send files through the site's own upload flow (server actions) instead of inline "
                          "data: URLs; allows files up to 20 MB.")
        loader.add_option("arena_upload_actions", str, "",
                          "Server action ids 'generateUploadUrl,getSignedUrl'; empty: found in the page's scripts.")
        loader.add_option("arena_recaptcha_sitekey", str, "",
                          "The reCAPTCHA Enterprise key to mint tokens with; empty: the one the page finds the site "
                          "using (its enterprise.js render= key and its own execute calls).")
        loader.add_option("arena_direct_mode", str, "auto",
                          "The mode of the Direct conversations the tool creates: direct-battle (the 2026 client), "
                          "direct, or auto (what the site's own client was seen sending; direct-battle before).",
                          choices=DIRECT_MODE_CHOICES)
        loader.add_option("arena_recaptcha_actions", str, f"{site.ACTION_SUBMIT},{site.ACTION_RETRY}",
                          "reCAPTCHA actions: for create and post, then for retry.")
        loader.add_option("arena_premint_tokens", bool, False,
                          "Keep a reCAPTCHA token minted ahead in each page for each kind of call, renewed before "
                          "it expires: the fastest first token, but minting on a timer may lower the site's scores. "
                          "Off: a token is minted when a request arrives.")
        loader.add_option("arena_side_calls", str, "defer",
                          "Clients' side calls (titles, tags, follow-ups: Open WebUI's '### Task:' prompts, "
                          "SillyTavern's quiet prompts): defer (after the person's own requests), same (like any "
                          "request), refuse, or a model's name to send them to.")
        loader.add_option("arena_side_call_delay", str, "1",
                          "Seconds a deferred side call waits before it may take a conversation.")
        loader.add_option("arena_strategy", str, "auto",
                          "How requests reach the site: auto (the canary chooses), retry, mirror, continue or "
                          "fresh.",
                          choices=STRATEGY_CHOICES)
        loader.add_option("arena_canary_interval", str, "900",
                          "Seconds between canary checks of the strategy (also run at start-up); 0: on demand only.")
        loader.add_option("arena_route_prefix", str, "",
                          "Serve the OpenAI and pool routes under this path, e.g. /arena (read at start).")
        loader.add_option("arena_rate_limit", int, 0,
                          "Requests a minute per client (API key or address), 429 beyond; 0: no limit.")

    def configure(self, updated: set[str]) -> None:
        settings = self.services.settings
        for option, attribute in (("arena_tavern_mode", "tavern_mode"), ("arena_bypass_mode", "bypass_mode"),
                                  ("arena_reasoning_as_think", "reasoning_as_think"),
                                  ("arena_citations", "citations"), ("arena_upload_files", "upload_files")):
            if option in updated:
                setattr(settings, attribute, getattr(ctx.options, option))
        if {"arena_model_aliases", "arena_auto_aliases"} & updated:
            aliases = parsed("arena_model_aliases", parse_aliases)
            unknown = [m for m in aliases.values() if self.services.models.resolve(m) is None]
            if unknown:
                raise exceptions.OptionsError(f"arena_model_aliases: unknown models: {', '.join(unknown)}")
            self.services.models.set_aliases(aliases, ctx.options.arena_auto_aliases)
        if "arena_route_prefix" in updated:
            prefix = parsed("arena_route_prefix", parse_route_prefix)
            if self.started and prefix != settings.route_prefix:
                log.warning("arena_route_prefix changes only after a restart")
            else:
                settings.route_prefix = prefix
        if "arena_upload_actions" in updated:
            settings.upload_actions = parsed("arena_upload_actions", parse_upload_actions)
        if "arena_recaptcha_sitekey" in updated:
            settings.recaptcha_sitekey = parsed("arena_recaptcha_sitekey", parse_sitekey)
        if "arena_recaptcha_actions" in updated:
            settings.recaptcha_actions = parsed("arena_recaptcha_actions", parse_recaptcha_actions)
        if "arena_direct_mode" in updated:
            settings.direct_mode = parsed("arena_direct_mode", parse_choice, DIRECT_MODE_CHOICES)
        if "arena_strategy" in updated:
            self.services.strategy.mode = parsed("arena_strategy", parse_choice, STRATEGY_CHOICES)
        if "arena_canary_interval" in updated:
            self.canary.interval = parsed("arena_canary_interval", parse_seconds)
        if "arena_side_calls" in updated:
            value = ctx.options.arena_side_calls.strip()
            if not value:
                raise exceptions.OptionsError("arena_side_calls: defer, same, refuse, or a model's name")
            settings.side_calls = value
        if "arena_side_call_delay" in updated:
            settings.side_call_delay = parsed("arena_side_call_delay", parse_seconds)
        if "arena_premint_tokens" in updated:
            keep = 1 if ctx.options.arena_premint_tokens else 0
            pages = self.services.pages
            pages.keep_tokens = keep
            if pages.pages:  # the connected pages are told now; others in their welcome
                task = asyncio.get_running_loop().create_task(pages.set_keep_tokens(keep))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if "arena_rate_limit" in updated:
            if ctx.options.arena_rate_limit < 0:
                raise exceptions.OptionsError("arena_rate_limit: must not be negative")
            settings.rate_limit = ctx.options.arena_rate_limit

    def running(self) -> None:
        self.started = True
        self.services.describe_options = lambda: {
            name: getattr(ctx.options, name) for name in sorted(ctx.options.keys()) if name.startswith("arena_")}
        if self.services.strategy.mode == "auto":
            self.canary.start()

    async def done(self) -> None:
        await self.canary.stop()
