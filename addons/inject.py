"""Put the page script into LMArena HTML pages, and learn the models each page lists.

A Content-Security-Policy with a script nonce gets the nonce copied onto our tag; a policy
without one, which would block any inline script, is removed from the pages we inject into.
"""

from __future__ import annotations

import json
import logging
import re
from importlib import resources

from mitmproxy import http

from addons.classify import CHANNEL_PREFIX, META_CALL, META_CHANNEL, arena_host
from addons.guard import guarded
from addons.options import parsed
from relay.drift import DriftLog
from relay.models import ModelRegistry
from relay.options import parse_seconds
from relay.pages import PageHub
from sites import lmarena as site

log = logging.getLogger(__name__)

CSP_HEADERS = ("content-security-policy", "content-security-policy-report-only")
_NONCE_RE = re.compile(r"'nonce-([A-Za-z0-9+/=_-]+)'")
_HEAD_RE = re.compile(r"<head\b[^>]*>", re.I)
VERSION = "1"


def script_source(secret: str, challenge_reload_ms: int = 45_000) -> str:
    template = resources.files("addons").joinpath("page_script.js").read_text("utf-8")
    config = {"secret": secret, "wsPath": CHANNEL_PREFIX + "ws", "version": VERSION,
              "challengeReloadMs": challenge_reload_ms}
    return template.replace("__BRIDGE_CONFIG__", json.dumps(config))


def script_tag(source: str, nonce: str | None) -> str:
    attr = f' nonce="{nonce}"' if nonce else ""
    return f"<script{attr} data-lmarena-bridge>{source}</script>"


def csp_nonce(policy: str) -> str | None:
    """The nonce scripts must carry under this policy, if the policy names one."""
    for directive in policy.split(";"):
        name = directive.strip().split(" ", 1)[0].lower()
        if name in ("script-src", "script-src-elem", "default-src"):
            m = _NONCE_RE.search(directive)
            if m:
                return m.group(1)
    return None


def insert_script(html: str, tag: str) -> str:
    m = _HEAD_RE.search(html)
    if m:
        return html[: m.end()] + tag + html[m.end() :]
    return tag + html


class Injector:
    def __init__(self, pages: PageHub, models: ModelRegistry, drift: DriftLog | None = None) -> None:
        self.pages = pages
        self.models = models
        self.drift = drift
        self.challenge_reload_ms = 45_000
        self._source: tuple[str, str] | None = None  # (secret, script)

    def load(self, loader) -> None:
        loader.add_option(
            "arena_challenge_reload", str, "45",
            "Seconds a Cloudflare check may last before the page reloads itself, once (never a reload loop).",
        )

    def configure(self, updated: set[str]) -> None:
        if "arena_challenge_reload" in updated:
            self.challenge_reload_ms = int(parsed("arena_challenge_reload", parse_seconds, True) * 1000)
            self._source = None

    @guarded("inject into", lambda self: None)
    def response(self, flow: http.HTTPFlow) -> None:
        if not arena_host(flow) or flow.metadata.get(META_CHANNEL) or flow.metadata.get(META_CALL):
            return
        resp = flow.response
        # 403/503: Cloudflare's challenge page, where the script reports the challenge
        if resp is None or resp.status_code not in (200, 403, 503) or flow.request.method != "GET":
            return
        if "text/html" not in resp.headers.get("content-type", ""):
            return
        html = resp.get_text(strict=False)
        if html is None:
            return
        models = site.extract_models(html)
        shape = site.chat_page_shape(flow.request.path) if resp.status_code == 200 else None
        if not models and shape is not None and self.drift is not None:
            self.drift.note("page_models", f"{shape}: no model list in the page")
        if models:
            changed = self.models.merge_page_models(models)
            if changed:
                log.info("the page lists %d models (%d new or changed)", len(models), changed)
        nonce = None
        policy = resp.headers.get("content-security-policy")
        if policy:
            nonce = csp_nonce(policy)
        if nonce is None:
            for name in CSP_HEADERS:
                resp.headers.pop(name, None)
        secret = self.pages.secret
        if self._source is None or self._source[0] != secret:
            self._source = (secret, script_source(secret, self.challenge_reload_ms))
        resp.set_text(insert_script(html, script_tag(self._source[1], nonce)))
