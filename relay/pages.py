"""Connected LMArena pages and the authenticated channel to them.

A page script reaches `/__bridge/ws` on its own origin; the proxy routes that to this server and
adds the browser identity it read from the page's cookies (`X-Bridge-Identity`). The first message
must carry the start-up secret, or the socket is closed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from starlette.websockets import WebSocket, WebSocketDisconnect

from sites import lmarena as site

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
PING_INTERVAL = 20.0
MAX_PAGE_MESSAGE = 64 * 1024  # a page's messages are small; anything larger is not one of them
PAGE_STATES = ("ready", "challenge", "needs_human_check")  # what a page script reports of itself


# What a person should do about each page state, in English and Chinese (shown by the API, the
# dashboard and the console in the language of `arena_lang`).
ADVICE: dict[str, tuple[str, str]] = {
    "ready": ("", ""),
    "challenge": (
        "the arena.ai tab shows a Cloudflare check: it usually clears by itself; if not, open the tab and "
        "complete it",
        "arena.ai 标签页正在进行 Cloudflare 验证：通常会自动通过；如果没有，请打开该标签页完成验证",
    ),
    "needs_human_check": (
        "the site keeps refusing the page's reCAPTCHA tokens: open the arena.ai tab and send one message by "
        "hand, completing the check the site shows",
        "网站一直拒绝页面的 reCAPTCHA 令牌：请打开 arena.ai 标签页，手动发送一条消息，并完成网站显示的验证",
    ),
    "signed_out": (
        "the arena.ai tab has no session: open it and sign in (or let the site sign you in as a guest by "
        "loading the page)",
        "arena.ai 标签页没有登录会话：请打开它并登录（或刷新页面，让网站以访客身份登录）",
    ),
    "needs_account": (
        "Direct chat on arena.ai needs a (free) account: sign in in the arena.ai tab; the tool carries on by "
        "itself once you have. Until then only the 'battle' models can be served",
        "arena.ai 的 Direct 对话需要（免费）账号：请在 arena.ai 标签页中登录，登录后工具会自动恢复。"
        "在此之前只能使用 battle 模型",
    ),
    "moved": (
        "this tab is on a host that now redirects to arena.ai: open " + site.START_URL + " in this browser",
        "该标签页所在的域名已跳转到 arena.ai：请在此浏览器中打开 " + site.START_URL,
    ),
}


def advice(state: str, lang: str = "en") -> str:
    en, zh = ADVICE.get(state, ("", ""))
    return zh if lang == "zh" else en


@dataclass
class Page:
    id: str
    identity: str | None
    url: str
    reported: str  # what the page script sees: ready | challenge | needs_human_check
    connected_at: float = field(default_factory=time.time)
    jobs: int = 0
    ws: WebSocket | None = None
    flagged: str | None = None  # set by the tool: needs_human_check after repeated token refusals
    needs_account: bool = False  # set by the tool: the site's login gate refused Direct to this identity
    moved: bool = False  # its host redirects to another one
    guest: bool | None = None  # the session is a guest's (anonymous), from the cookie
    sitekey: str | None = None  # the reCAPTCHA key the page found the site using
    sitekey_source: str | None = None  # where: script (render=), execute (the site's own calls), option

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def state(self) -> str:
        """ready | challenge | needs_human_check | signed_out | moved | needs_account (a check in the way
        comes first; needs_account still serves battle conversations)"""
        if self.reported != "ready":
            return self.reported
        if self.identity is None:
            return "signed_out"
        if self.moved:
            return "moved"
        if self.flagged:
            return self.flagged
        return "needs_account" if self.needs_account else "ready"

    def serves(self, direct: bool) -> bool:
        """Whether this page can send a job now: any conversation, or only battle ones (direct=False)."""
        return self.state == "ready" or (self.state == "needs_account" and not direct)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_text(json.dumps(message))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity,
            "guest": self.guest,
            "url": self.url,
            "state": self.state,
            "advice": advice(self.state, "en"),
            "advice_zh": advice(self.state, "zh"),
            "sitekey": self.sitekey,
            "sitekey_source": self.sitekey_source,
            "connected_at": self.connected_at,
            "jobs": self.jobs,
        }


def load_secret(path: str) -> str:
    """The channel secret kept beside the CA key: made once, readable by its owner only,
    so a page keeps its channel across restarts of the tool."""
    try:
        with open(path, encoding="ascii") as fh:
            secret = fh.read().strip()
        if len(secret) >= 32:
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_urlsafe(32)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(secret + "\n")
    return secret


class PageHub:
    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret or secrets.token_urlsafe(32)
        self.pages: dict[str, Page] = {}
        self.keep_tokens = 0  # tokens each page keeps minted ahead per kind of call (arena_premint_tokens)
        # what a page says about a job; returns what was wrong with it, if it is dropped
        self.on_job_message: Callable[[Page, dict[str, Any]], str | None] = lambda page, msg: None
        self.on_page_change: Callable[[], None] = lambda: None
        # called with (old identity, new identity) when a page comes back signed in as someone else
        self.on_identity_change: Callable[[str, str | None], None] = lambda old, new: None
        self._last_identity: dict[str, str | None] = {}
        self._changed = asyncio.Event()
        self.moved_hosts: dict[str, str] = {}  # host -> where it redirects
        self._probes: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}  # token probes asked for

    def ready_pages(self, identity: str | None = None, direct: bool = False) -> list[Page]:
        """Pages that can send a job now (`direct`: a job for a direct conversation, which a page of an
        identity the login gate stopped cannot send)."""
        return [p for p in self.pages.values() if p.serves(direct) and (identity is None or p.identity == identity)]

    def page_for(self, identity: str | None, direct: bool = True) -> Page | None:
        pages = self.ready_pages(identity, direct)
        return min(pages, key=lambda p: p.jobs) if pages else None

    def flag_identity(self, identity: str | None, state: str | None) -> None:
        """Mark (or clear, with None) every page of an identity, e.g. needs_human_check."""
        self._update(identity, lambda page: setattr(page, "flagged", state) if page.flagged != state else None,
                     state)

    def gate_identity(self, identity: str | None, gated: bool) -> None:
        """The site's login gate stopped (or, once its Direct chat worked, let through) this identity."""
        self._update(identity, lambda page: setattr(page, "needs_account", gated) if page.needs_account != gated
                     else None, "needs_account" if gated else None)

    def _update(self, identity: str | None, change: Callable[[Page], Any], state: str | None) -> None:
        changed = False
        for page in self.pages.values():
            if page.identity != identity:
                continue
            before = page.state
            change(page)
            if page.state != before:
                changed = True
                if state:
                    log.warning("page %s: %s — %s", page.id, page.state, advice(page.state))
        if changed:  # called after every successful chat of a person: usually nothing to do
            self._changed.set()
            self.on_page_change()

    def mark_moved(self, host: str, location: str) -> None:
        """The site answered this host's call with a redirect: its pages are not used for jobs any more."""
        if host in self.moved_hosts:
            return
        self.moved_hosts[host] = location
        log.warning("%s redirects to %s: its pages are no longer used — %s", host, location or "another host",
                    advice("moved"))
        for page in self.pages.values():
            if page.host == host:
                page.moved = True
        self._changed.set()
        self.on_page_change()

    async def wait_ready(self, timeout: float, direct: bool = False) -> bool:
        """Wait until some page is ready (a challenge clearing, a person signing in)."""
        deadline = time.monotonic() + timeout
        while not self.ready_pages(direct=direct):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                pass
        return True

    def advice(self, lang: str = "en", direct: bool = True) -> str:
        """What the person should do for the first page that is not ready."""
        for page in self.pages.values():
            if not page.serves(direct):
                return f"{page.state}: {advice(page.state, lang)}"
        if lang == "zh":
            return f"请在使用此代理的浏览器中打开 {site.START_URL}"
        return f"open {site.START_URL} in the browser that uses this proxy"

    def counts(self) -> dict[str, int]:
        return {"connected": len(self.pages), "ready": len(self.ready_pages())}

    async def probe_token(self, page: Page, action: str, sitekey: str, fallback: str,
                          timeout: float = 10.0) -> dict[str, Any] | None:
        """Have `page` mint one token (kept in the page, never sent): {"ok", "report"} (how it was made, or why
        it could not be), or None if the page did not answer in time."""
        probe = secrets.token_hex(8)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._probes[probe] = (page.id, fut)
        try:
            await page.send({"type": "token_probe", "probe": probe, "action": action, "sitekey": sitekey,
                             "fallbackSitekey": fallback})
            return await asyncio.wait_for(fut, timeout)
        except (asyncio.TimeoutError, RuntimeError, OSError):
            return None
        finally:
            self._probes.pop(probe, None)

    async def set_keep_tokens(self, keep: int) -> None:
        """Tell every page how many tokens to keep minted ahead (0: none, only on a request's arrival)."""
        self.keep_tokens = keep
        for page in list(self.pages.values()):
            if page.ws is not None:
                try:
                    await page.send({"type": "reserve", "keep": keep})
                except Exception:  # a page going away as we speak: it gets the value in its next welcome
                    pass

    async def serve(self, ws: WebSocket) -> None:
        """One page's channel, from its hello to its last message."""
        await ws.accept()
        page = await self._handshake(ws)
        if page is None:
            return
        await self._admit(page)
        await page.send({"type": "welcome", "page": page.id, "signedIn": page.identity is not None,
                         "keep": self.keep_tokens})
        pinger = asyncio.create_task(self._ping(page))
        try:
            await self._receive(page, ws)
        finally:
            pinger.cancel()
            if self.pages.get(page.id) is page:
                del self.pages[page.id]
                log.info("page disconnected: %s", page.id)
                self.on_job_message(page, {"type": "page_gone"})
                self.on_page_change()

    async def _handshake(self, ws: WebSocket) -> Page | None:
        """The page's hello, with the channel secret; None (and the socket closed) when it is wrong."""
        try:
            hello = json.loads(await asyncio.wait_for(ws.receive_text(), HELLO_TIMEOUT))
        except (asyncio.TimeoutError, WebSocketDisconnect, ValueError):
            await _close(ws, 4400, "expected hello")
            return None
        if not isinstance(hello, dict):
            hello = {}
        given = str(hello.get("secret", ""))
        if hello.get("type") != "hello" or not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.warning("a page channel was refused: wrong or missing secret")
            await _close(ws, 4401, "not authorised")
            return None
        guest = ws.headers.get("x-bridge-guest")
        page = Page(
            id=str(hello.get("page") or secrets.token_hex(8))[:64],
            identity=ws.headers.get("x-bridge-identity") or None,
            url=str(hello.get("url", ""))[:500],
            reported=str(hello.get("state", "ready")),
            ws=ws,
            guest={"1": True, "0": False}.get(guest or ""),
        )
        _read_sitekey(page, hello)
        page.moved = page.host in self.moved_hosts
        return page

    async def _admit(self, page: Page) -> None:
        old = self.pages.get(page.id)
        if old is not None and old.ws is not None:
            await _close(old.ws, 4409, "replaced by a newer connection")
        self.pages[page.id] = page
        before = self._last_identity.get(page.id)
        self._last_identity[page.id] = page.identity
        if before is not None and before != page.identity:
            log.warning("page %s now belongs to another browser identity (%s, was %s)", page.id, page.identity,
                        before)
            self.on_identity_change(before, page.identity)
        log.info("page connected: %s (%s) identity=%s%s state=%s", page.id, page.url, page.identity,
                 " (guest)" if page.guest else "", page.state)
        if page.state != "ready":
            log.warning("page %s: %s — %s", page.id, page.state, advice(page.state))
        self._changed.set()
        self.on_page_change()

    async def _receive(self, page: Page, ws: WebSocket) -> None:
        """A page's messages until it goes. One that cannot be used (not JSON, too large, of a kind or shape
        the tool does not know) is dropped, its kind logged once per page; the channel keeps serving."""
        dropped: set[str] = set()
        try:
            while True:
                text = await ws.receive_text()
                problem = self._handle(page, text)
                if problem is not None and problem not in dropped:
                    dropped.add(problem)
                    log.warning("page %s sent a message the tool drops (%s); further ones like it are dropped "
                                "silently", page.id, problem)
        except (WebSocketDisconnect, RuntimeError):
            pass

    def _handle(self, page: Page, text: str) -> str | None:
        """Act on one message; what was wrong with it, if it was dropped."""
        if len(text) > MAX_PAGE_MESSAGE:
            return "too large"
        try:
            message = json.loads(text)
        except ValueError:
            return "not JSON"
        if not isinstance(message, dict):
            return "not an object"
        kind = message.get("type")
        if kind == "state":
            if message.get("state") not in PAGE_STATES:
                return "an unknown page state"
            self._report_state(page, message)
        elif kind == "token_probe":
            waiting = self._probes.get(str(message.get("probe", "")))
            if waiting is None or waiting[0] != page.id:
                return "a token probe this page was not asked for"
            if not waiting[1].done():
                waiting[1].set_result({"ok": bool(message.get("ok")),
                                       "report": message.get("report") if isinstance(message.get("report"), dict)
                                       else {}})
        elif kind in ("job_token", "job_status", "job_done", "job_error"):
            if not isinstance(message.get("job"), str):
                return "a job message without a job"
            return self.on_job_message(page, message)
        elif kind != "pong":
            return "an unknown kind"
        return None

    def _report_state(self, page: Page, message: dict[str, Any]) -> None:
        before, key_before = page.state, page.sitekey
        page.reported = str(message.get("state", page.reported))
        page.url = str(message.get("url", page.url))[:500]
        page.moved = page.host in self.moved_hosts
        _read_sitekey(page, message)
        if page.sitekey != key_before and key_before is not None:
            log.warning("page %s: the site now mints its reCAPTCHA tokens with another key (%s, from its %s)",
                        page.id, page.sitekey, page.sitekey_source)
        self._changed.set()
        if page.state != before:
            log.warning("page %s: %s%s", page.id, page.state,
                        f" — {advice(page.state)}" if advice(page.state) else "")
        self.on_page_change()

    async def _ping(self, page: Page) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            try:
                await page.send({"type": "ping", "t": time.time()})
            except Exception:
                return

    async def close_all(self) -> None:
        for page in list(self.pages.values()):
            if page.ws is not None:
                await _close(page.ws, 1001, "server shutting down")


def _read_sitekey(page: Page, message: dict[str, Any]) -> None:
    key = message.get("sitekey")
    if isinstance(key, str) and site.looks_like_sitekey(key):
        page.sitekey = key
        page.sitekey_source = str(message.get("sitekeySource") or "")[:20]


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code=code, reason=reason)
    except Exception:
        pass
