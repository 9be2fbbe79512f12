"""The page's same-origin channel: `https://<arena host>/__bridge/...` goes to the in-process server.

The page never talks to 127.0.0.1 itself (Local Network Access rules, a site CSP limiting
connect-src, or a proxy on another machine would all break that). The proxy reads the browser
identity from the page's cookies here, passes only that on, and drops the cookies.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from addons.classify import META_CHANNEL, arena_host
from sites import lmarena as site

log = logging.getLogger(__name__)

KEEP_WS_MESSAGES = 20


class Channel:
    def __init__(self, api_address: "ApiAddress") -> None:
        self.api = api_address

    def request(self, flow: http.HTTPFlow) -> None:
        if not flow.metadata.get(META_CHANNEL) or flow.response is not None:
            return
        try:
            self._route(flow)
        except Exception:  # the channel never goes to the site, whatever happened
            log.exception("the page channel could not be routed")
            flow.response = http.Response.make(502, b"the page channel is not available",
                                               {"content-type": "text/plain"})

    def _route(self, flow: http.HTTPFlow) -> None:
        origin = flow.request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1].split(":", 1)[0].lower() != arena_host(flow):
            # a page of another site opening a socket to the arena origin: browsers always send Origin
            flow.response = http.Response.make(403, b"forbidden origin", {"content-type": "text/plain"})
            return
        identity, guest = site.session_info({k: v for k, v in flow.request.cookies.items()})
        for name in ("x-bridge-identity", "x-bridge-guest"):
            flow.request.headers.pop(name, None)  # only the proxy says who this is
        if identity:
            flow.request.headers["x-bridge-identity"] = identity
        if guest is not None:
            flow.request.headers["x-bridge-guest"] = "1" if guest else "0"
        flow.request.headers.pop("cookie", None)
        host, port = self.api.connect_address()
        flow.request.scheme = "http"
        flow.request.host = host
        flow.request.port = port

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        # mitmproxy keeps every message of a socket; the channel lives for hours.
        if flow.metadata.get(META_CHANNEL) and flow.websocket is not None:
            del flow.websocket.messages[:-KEEP_WS_MESSAGES]


class ApiAddress:
    """Where the in-process API server listens (set from options)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5102) -> None:
        self.host = host
        self.port = port

    def connect_address(self) -> tuple[str, int]:
        host = self.host
        if host in ("0.0.0.0", "", "::"):
            host = "127.0.0.1"
        return host, self.port
