"""The terminal while the tool runs: the start-up steps a new user needs, then (in a terminal) a live
view of URLs, page states, the pool and recent errors; plain log lines when the output is not a
terminal. The rendering lives in terminal/console.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from typing import Any, Iterator

from mitmproxy import ctx

from addons.channel import ApiAddress
from addons.options import parsed
from relay.monitor import Monitor
from relay.options import parse_choice
from relay.services import Services
from terminal import console as ui

log = logging.getLogger(__name__)

CONSOLE_CHOICES = ("auto", "live", "plain")


class ConsoleView:
    def __init__(self, services: Services, monitor: Monitor, address: ApiAddress) -> None:
        self.services = services
        self.monitor = monitor
        self.address = address
        self.live: Any = None
        self._task: asyncio.Task[None] | None = None
        self._restore: list[tuple[Any, str, Any]] = []

    def load(self, loader) -> None:
        loader.add_option(
            "arena_console", str, "auto",
            "Console view: live (a live panel), plain (log lines), or auto (live in a terminal).",
            choices=CONSOLE_CHOICES,
        )

    def configure(self, updated: set[str]) -> None:
        if "arena_console" in updated:
            parsed("arena_console", parse_choice, CONSOLE_CHOICES)

    def urls(self) -> dict[str, str]:
        proxy = "127.0.0.1:8080"
        server = ctx.master.addons.get("proxyserver")
        addrs = server.listen_addrs() if server is not None and hasattr(server, "listen_addrs") else []
        if addrs:
            proxy = f"{addrs[0][0]}:{addrs[0][1]}"
        api = f"http://{self.address.host}:{self.address.port}"
        prefix = self.services.settings.route_prefix
        urls = {"proxy": proxy, "api": f"{api}{prefix}/v1", "dashboard": f"{api}{prefix}/dashboard"}
        web = getattr(ctx.master, "web_url", None)
        if isinstance(web, str):
            urls["dashboard"] += f" · mitmweb {web}"
        return urls

    async def running(self) -> None:
        lang = self.services.settings.lang
        urls = self.urls()
        ca = os.path.join(os.path.expanduser(ctx.options.confdir), "mitmproxy-ca-cert.pem")
        log.info(ui.text(lang, "steps", ca=ca, **urls))
        mode = ctx.options.arena_console
        if mode == "plain" or (mode == "auto" and not sys.stdout.isatty()):
            return
        self._start_live(urls, lang)

    def _start_live(self, urls: dict[str, str], lang: str) -> None:
        console = ui.make_console()
        self.live = ui.Live(console=console, refresh_per_second=2, transient=False, redirect_stdout=False,
                            redirect_stderr=False)
        writer = ui._LiveWriter(self.live)
        # mitmproxy's log lines and flow lines keep their own reference to stdout: print them above the panel
        for handler in logging.getLogger().handlers:
            if hasattr(handler, "file"):
                self._restore.append((handler, "file", handler.file))
                handler.file = writer
        dumper = ctx.master.addons.get("dumper")
        if dumper is not None and hasattr(dumper, "outfp"):
            self._restore.append((dumper, "outfp", dumper.outfp))
            dumper.outfp = writer
        self.live.start()
        self._task = asyncio.get_running_loop().create_task(self._refresh(urls, lang))

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hand the terminal to something else for a while (the prefill prompt and its progress bar)."""
        live = self.live
        if live is None:
            yield
            return
        live.stop()
        self.live = None
        try:
            yield
        finally:
            self.live = live
            live.start()

    async def _refresh(self, urls: dict[str, str], lang: str) -> None:
        while True:
            if self.live is not None:
                snapshot = self.monitor.snapshot()
                snapshot["recent"] = self.services.requests.recent(50)
                self.live.update(ui.status_view(snapshot, urls, lang))
            await asyncio.sleep(1)

    async def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.live is not None:
            self.live.stop()
            self.live = None
        for obj, attr, value in self._restore:
            setattr(obj, attr, value)
