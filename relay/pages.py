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

from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0
PING_INTERVAL = 20.0


# What a person should do about each page state (also shown by the API and the console).
ADVICE = {
    "ready": "",
    "challenge": "the LMArena tab shows a Cloudflare check: it usually clears by itself; if not, open the tab "
                 "and complete it",
    "needs_human_check": "the site keeps refusing the page's reCAPTCHA tokens: open the LMArena tab and send one "
                         "message by hand, completing the check the site shows",
    "signed_out": "the LMArena tab has no session: open it and sign in (or let the site sign you in anonymously "
                  "by sending one message)",
}


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

    @property
    def state(self) -> str:
        """ready | challenge | needs_human_check | signed_out (a check in the way comes first)"""
        if self.reported != "ready":
            return self.reported
        if self.identity is None:
            return "signed_out"
        return self.flagged or "ready"

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_text(json.dumps(message))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identity": self.identity,
            "url": self.url,
            "state": self.state,
            "advice": ADVICE.get(self.state, ""),
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
        # called with (page, message) for job messages, and with (page, None) when a page leaves
        self.on_job_message: Callable[[Page, dict[str, Any]], None] = lambda page, msg: None
        self.on_page_change: Callable[[], None] = lambda: None
        # called with (old identity, new identity) when a page comes back signed in as someone else
        self.on_identity_change: Callable[[str, str | None], None] = lambda old, new: None
        self._last_identity: dict[str, str | None] = {}
        self._changed = asyncio.Event()

    def ready_pages(self, identity: str | None = None) -> list[Page]:
        return [
            p
            for p in self.pages.values()
            if p.state == "ready" and (identity is None or p.identity == identity)
        ]

    def page_for(self, identity: str | None) -> Page | None:
        pages = self.ready_pages(identity)
        return min(pages, key=lambda p: p.jobs) if pages else None

    def flag_identity(self, identity: str | None, state: str | None) -> None:
        """Mark (or clear, with None) every page of an identity, e.g. needs_human_check."""
        changed = False
        for page in self.pages.values():
            if page.identity == identity and page.flagged != state:
                page.flagged = state
                changed = True
                if state:
                    log.warning("page %s: %s — %s", page.id, state, ADVICE.get(state, ""))
        if changed:  # called after every successful chat of a person: usually nothing to do
            self._changed.set()
            self.on_page_change()

    async def wait_ready(self, timeout: float) -> bool:
        """Wait until some page is ready (a challenge clearing, a person signing in)."""
        deadline = time.monotonic() + timeout
        while not self.ready_pages():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                pass
        return True

    def advice(self) -> str:
        """What the person should do for the first page that is not ready."""
        for page in self.pages.values():
            if page.state != "ready":
                return f"{page.state}: {ADVICE[page.state]}"
        return "open lmarena.ai in the browser that uses this proxy"

    def counts(self) -> dict[str, int]:
        return {"connected": len(self.pages), "ready": len(self.ready_pages())}

    async def serve(self, ws: WebSocket) -> None:
        """One page's channel, from its hello to its last message."""
        await ws.accept()
        page = await self._handshake(ws)
        if page is None:
            return
        await self._admit(page)
        await page.send({"type": "welcome", "page": page.id, "signedIn": page.identity is not None})
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
        given = str(hello.get("secret", "")) if isinstance(hello, dict) else ""
        if hello.get("type") != "hello" or not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.warning("a page channel was refused: wrong or missing secret")
            await _close(ws, 4401, "not authorised")
            return None
        return Page(
            id=str(hello.get("page") or secrets.token_hex(8))[:64],
            identity=ws.headers.get("x-bridge-identity") or None,
            url=str(hello.get("url", ""))[:500],
            reported=str(hello.get("state", "ready")),
            ws=ws,
        )

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
        log.info("page connected: %s (%s) identity=%s state=%s", page.id, page.url, page.identity, page.state)
        if page.state != "ready":
            log.warning("page %s: %s — %s", page.id, page.state, ADVICE[page.state])
        self._changed.set()
        self.on_page_change()

    async def _receive(self, page: Page, ws: WebSocket) -> None:
        try:
            while True:
                message = json.loads(await ws.receive_text())
                if not isinstance(message, dict):
                    continue
                kind = message.get("type")
                if kind == "state":
                    self._report_state(page, message)
                elif kind in ("job_status", "job_done", "job_error"):
                    self.on_job_message(page, message)
        except (WebSocketDisconnect, RuntimeError, ValueError):
            pass

    def _report_state(self, page: Page, message: dict[str, Any]) -> None:
        before = page.state
        page.reported = str(message.get("state", page.reported))
        page.url = str(message.get("url", page.url))[:500]
        self._changed.set()
        if page.state != before:
            log.warning("page %s: %s%s", page.id, page.state,
                        f" — {ADVICE[page.state]}" if ADVICE.get(page.state) else "")
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


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    try:
        await ws.close(code=code, reason=reason)
    except Exception:
        pass
