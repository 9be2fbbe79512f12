"""What browsers' connections say about the proxy, for the doctor: that a browser sends arena traffic
through it at all, and whether it trusts the tool's CA (a refused TLS handshake on an arena host)."""

from __future__ import annotations

import time

from mitmproxy import ctx, http, tls

from addons.classify import arena_host
from relay.settings import SiteObservations


class Trust:
    def __init__(self, observed: SiteObservations) -> None:
        self.observed = observed

    def running(self) -> None:
        server = ctx.master.addons.get("proxyserver")
        addresses = server.listen_addrs() if server is not None and hasattr(server, "listen_addrs") else []
        if addresses:
            self.observed.proxy_port = int(addresses[0][1])

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if arena_host(flow):
            self.observed.last_arena_request = time.time()

    def tls_failed_client(self, data: tls.TlsData) -> None:
        host = (data.conn.sni or "").lower()
        hosts = {h.strip().lower() for h in str(getattr(ctx.options, "arena_hosts", "")).split(",") if h.strip()}
        if host and (host in hosts or any(host.endswith("." + h) for h in hosts)):
            count, _ = self.observed.untrusted.get(host, (0, 0.0))
            self.observed.untrusted[host] = (count + 1, time.time())
