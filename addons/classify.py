"""Recognise LMArena traffic as early as possible.

`requestheaders` runs before any host rewrite (ours or `map_remote`'s), so the original host is
recorded here and every later hook reads `flow.metadata` instead of the (maybe rewritten) host.
"""

from __future__ import annotations

import logging

from mitmproxy import http

from addons.guard import guarded
from addons.options import parsed
from relay.options import parse_hosts, parse_stream_prefixes
from sites import lmarena as site

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "/__bridge/"
META_HOST = "arena.host"
META_CALL = "arena.call"
META_CHANNEL = "arena.channel"


def arena_host(flow: http.HTTPFlow) -> str | None:
    return flow.metadata.get(META_HOST)


def stream_call(flow: http.HTTPFlow) -> site.StreamCall | None:
    return flow.metadata.get(META_CALL)


class Classify:
    def __init__(self) -> None:
        self.hosts: frozenset[str] = frozenset(site.DEFAULT_HOSTS)
        self.prefixes: tuple[str, ...] = site.STREAM_PREFIXES

    def load(self, loader) -> None:
        loader.add_option(
            "arena_hosts",
            str,
            ",".join(site.DEFAULT_HOSTS),
            "Comma-separated hosts treated as LMArena (injection, capture, the page channel).",
        )
        loader.add_option(
            "arena_stream_prefixes",
            str,
            ",".join(site.STREAM_PREFIXES),
            "Comma-separated path prefixes of the site's stream endpoints.",
        )

    def configure(self, updated: set[str]) -> None:
        if "arena_hosts" in updated:
            self.hosts = parsed("arena_hosts", parse_hosts)
        if "arena_stream_prefixes" in updated:
            self.prefixes = parsed("arena_stream_prefixes", parse_stream_prefixes)

    @guarded("recognise", lambda self: None, before_sending=True)
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        host = flow.request.pretty_host.lower()
        if host not in self.hosts:
            return
        flow.metadata[META_HOST] = host
        path = flow.request.path
        if path.startswith(CHANNEL_PREFIX):
            flow.metadata[META_CHANNEL] = True
            return
        call = site.classify_call(flow.request.method, path.split("?", 1)[0], self.prefixes)
        if call is not None:
            flow.metadata[META_CALL] = call
            # Parse the answer as it passes: ask for it uncompressed.
            flow.request.headers["accept-encoding"] = "identity"


addons = [Classify()]
