"""Options that shape requests and answers, and guard the API (issue 4's settings)."""

from __future__ import annotations

import logging
import re

from mitmproxy import ctx, exceptions

from addons.api_server import seconds
from openai_front.canary import Canary
from openai_front.services import STRATEGIES, Services
from sites import lmarena as site

log = logging.getLogger(__name__)

_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")


def parse_aliases(value: str) -> dict[str, str]:
    """`alias=model,alias2=model2` → {alias: model}."""
    aliases = {}
    for pair in (p.strip() for p in value.split(",")):
        if not pair:
            continue
        alias, sep, model = pair.partition("=")
        if not sep or not alias.strip() or not model.strip():
            raise ValueError(f"{pair!r} is not alias=model")
        aliases[alias.strip()] = model.strip()
    return aliases


class ApiOptions:
    def __init__(self, services: Services, canary: Canary) -> None:
        self.services = services
        self.canary = canary
        self.started = False

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
        loader.add_option("arena_recaptcha_sitekey", str, site.RECAPTCHA_SITE_KEY,
                          "The site's reCAPTCHA Enterprise v3 key the page mints tokens with.")
        loader.add_option("arena_recaptcha_actions", str, f"{site.ACTION_SUBMIT},{site.ACTION_RETRY}",
                          "reCAPTCHA actions: for create and post, then for retry.")
        loader.add_option("arena_strategy", str, "auto",
                          "How requests reach the site: auto (the canary chooses), retry, continue or fresh.",
                          choices=["auto", *STRATEGIES])
        loader.add_option("arena_canary_interval", str, "900",
                          "Seconds between canary checks of the strategy (also run at start-up); 0: on demand only.")
        loader.add_option("arena_route_prefix", str, "",
                          "Serve the OpenAI and pool routes under this path, e.g. /arena (read at start).")
        loader.add_option("arena_rate_limit", int, 0,
                          "Requests a minute per client (API key or address), 429 beyond; 0: no limit.")

    def configure(self, updated: set[str]) -> None:
        settings = self.services.settings
        if "arena_tavern_mode" in updated:
            settings.tavern_mode = ctx.options.arena_tavern_mode
        if "arena_bypass_mode" in updated:
            settings.bypass_mode = ctx.options.arena_bypass_mode
        if "arena_reasoning_as_think" in updated:
            settings.reasoning_as_think = ctx.options.arena_reasoning_as_think
        if "arena_citations" in updated:
            settings.citations = ctx.options.arena_citations
        if {"arena_model_aliases", "arena_auto_aliases"} & updated:
            try:
                aliases = parse_aliases(ctx.options.arena_model_aliases)
            except ValueError as e:
                raise exceptions.OptionsError(f"arena_model_aliases: {e}") from e
            unknown = [m for m in aliases.values() if self.services.models.resolve(m) is None]
            if unknown:
                raise exceptions.OptionsError(f"arena_model_aliases: unknown models: {', '.join(unknown)}")
            self.services.models.set_aliases(aliases, ctx.options.arena_auto_aliases)
        if "arena_route_prefix" in updated:
            prefix = ctx.options.arena_route_prefix.rstrip("/")
            if not _PREFIX.match(prefix):
                raise exceptions.OptionsError("arena_route_prefix: a path such as /arena")
            if self.started and prefix != settings.route_prefix:
                log.warning("arena_route_prefix changes only after a restart")
            else:
                settings.route_prefix = prefix
        if "arena_upload_files" in updated:
            settings.upload_files = ctx.options.arena_upload_files
        if "arena_upload_actions" in updated:
            ids = [i.strip() for i in ctx.options.arena_upload_actions.split(",") if i.strip()]
            if ids and (len(ids) != 2 or not all(re.fullmatch(r"[0-9a-f]{40,44}", i) for i in ids)):
                raise exceptions.OptionsError("arena_upload_actions: two hex action ids, comma-separated")
            settings.upload_actions = ",".join(ids)
        if "arena_recaptcha_sitekey" in updated:
            if not re.fullmatch(r"[A-Za-z0-9_-]{20,60}", ctx.options.arena_recaptcha_sitekey):
                raise exceptions.OptionsError("arena_recaptcha_sitekey does not look like a reCAPTCHA key")
            settings.recaptcha_sitekey = ctx.options.arena_recaptcha_sitekey
        if "arena_recaptcha_actions" in updated:
            actions = [a.strip() for a in ctx.options.arena_recaptcha_actions.split(",")]
            if len(actions) != 2 or not all(re.fullmatch(r"[A-Za-z_/]+", a) for a in actions):
                raise exceptions.OptionsError("arena_recaptcha_actions: two actions, e.g. chat_submit,chat_retry")
            settings.action_submit, settings.action_retry = actions
        if "arena_strategy" in updated:
            self.services.strategy.mode = ctx.options.arena_strategy
        if "arena_canary_interval" in updated:
            self.canary.interval = seconds("arena_canary_interval")
        if "arena_rate_limit" in updated:
            if ctx.options.arena_rate_limit < 0:
                raise exceptions.OptionsError("arena_rate_limit must not be negative")
            settings.rate_limit = ctx.options.arena_rate_limit

    def running(self) -> None:
        self.started = True
        if self.services.strategy.mode == "auto":
            self.canary.start()

    async def done(self) -> None:
        await self.canary.stop()
