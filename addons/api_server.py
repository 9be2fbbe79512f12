"""Runs the OpenAI-compatible server inside mitmproxy's own event loop, and owns the pool file.

One process, one owner of the TinyDB file: scripts talk to this server's API, never to the file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from contextlib import contextmanager
from typing import Iterator

import uvicorn
from mitmproxy import ctx, exceptions

from addons.channel import ApiAddress
from addons.options import parsed
from openai_front.app import create_app
from pool_store.storage import TinyPoolStore
from relay.core import Core
from relay.journal import RequestJournal
from relay.options import parse_api_keys, parse_int_range, parse_seconds
from relay.pages import load_secret

log = logging.getLogger(__name__)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_STORE = os.path.join(ROOT, "data", "pool.json")
DEFAULT_LOGS = os.path.join(ROOT, "data", "logs")
SECRET_FILE = "lmarena-bridge-secret"


class _EmbeddedServer(uvicorn.Server):
    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # mitmproxy owns the process's signals; uvicorn must not replace its Ctrl+C handler.
        yield


class ApiServer:
    def __init__(self, core: Core, address: ApiAddress) -> None:
        self.core = core
        self.services = core.services
        self.address = address
        self.server: _EmbeddedServer | None = None
        self.task: asyncio.Task[None] | None = None
        self.store: TinyPoolStore | None = None
        self.store_path: str | None = None
        self.bound_port: int | None = None
        self.journal: RequestJournal | None = None

    def load(self, loader) -> None:
        loader.add_option("arena_api_host", str, "127.0.0.1", "Address the OpenAI-compatible API listens on.")
        loader.add_option("arena_api_port", int, 5102, "Port of the OpenAI-compatible API (0 picks a free one).")
        loader.add_option(
            "arena_api_key",
            str,
            "",
            "API keys clients must send as 'Authorization: Bearer <key>': comma-separated, or @file with "
            "one key per line. Empty: no key needed.",
        )
        loader.add_option("arena_store", str, DEFAULT_STORE, "Path of the pool's TinyDB file.")
        loader.add_option(
            "arena_log_dir", str, DEFAULT_LOGS,
            "Folder of the request and error logs (JSON lines, rotated); empty: no log files.",
        )
        loader.add_option("arena_log_max_mb", int, 20, "Size at which a log file is rotated (5 old files are kept).")
        loader.add_option(
            "arena_queue_timeout", str, "120", "Seconds a request may wait for a free conversation (then 429)."
        )
        loader.add_option(
            "arena_upstream_timeout", str, "90", "Seconds to wait for the first answer line, and between lines."
        )
        loader.add_option(
            "arena_keepalive", str, "10",
            "Seconds between SSE keep-alive comments; a stream not answering by then starts with them.",
        )
        loader.add_option(
            "arena_page_wait", str, "30",
            "Seconds a request waits for a page that is not ready (a check, signed out) before a 503.",
        )
        loader.add_option(
            "arena_failover_tries", int, 3, "Conversations one request may try before its first token."
        )
        loader.add_option(
            "arena_fresh_conversations", bool, True,
            "A request for a model with no usable conversation starts a new one (which then joins the pool).",
        )
        loader.add_option("arena_max_request_mb", int, 48,
                          "Largest request body the API reads, in MB (413 beyond); files up to 20 MB fit.")
        loader.add_option("arena_mirror_limit", int, 2000,
                          "Client conversations mirroring remembers (least recently used first out).")
        loader.add_option("arena_mirror_ttl", str, "604800",
                          "Seconds a client conversation is remembered after its last turn.")

    def configure(self, updated: set[str]) -> None:
        settings = self.services.settings
        if "confdir" in updated:
            path = os.path.join(os.path.expanduser(ctx.options.confdir), SECRET_FILE)
            try:
                self.services.pages.secret = load_secret(path)
            except OSError as e:
                raise exceptions.OptionsError(f"cannot keep the page channel secret in {path}: {e}") from e
        if "arena_api_key" in updated:
            settings.api_keys = parsed("arena_api_key", parse_api_keys)
        for option, attribute, positive in (("arena_queue_timeout", "queue_timeout", True),
                                            ("arena_upstream_timeout", "upstream_timeout", True),
                                            ("arena_keepalive", "keepalive", True),
                                            ("arena_page_wait", "page_wait", False)):
            if option in updated:
                setattr(settings, attribute, parsed(option, parse_seconds, positive))
        if "arena_failover_tries" in updated:
            settings.failover_tries = parsed("arena_failover_tries", parse_int_range, 1, 10)
        if "arena_fresh_conversations" in updated:
            settings.fresh_when_empty = ctx.options.arena_fresh_conversations
        if "arena_max_request_mb" in updated:
            settings.max_request_bytes = parsed("arena_max_request_mb", parse_int_range, 1, 4096) * 1024 * 1024
        if "arena_mirror_limit" in updated:
            settings.mirror_limit = self.services.mirrors.limit = parsed("arena_mirror_limit", parse_int_range, 1,
                                                                         1_000_000)
        if "arena_mirror_ttl" in updated:
            settings.mirror_ttl = self.services.mirrors.ttl = parsed("arena_mirror_ttl", parse_seconds, True)
        if "arena_api_port" in updated:
            parsed("arena_api_port", parse_int_range, 0, 65535)
        if "arena_log_max_mb" in updated:
            parsed("arena_log_max_mb", parse_int_range, 1, 1 << 20)
        if "arena_store" in updated:
            self._open_store(ctx.options.arena_store)
        if {"arena_log_dir", "arena_log_max_mb"} & updated:
            self._open_journal(ctx.options.arena_log_dir, ctx.options.arena_log_max_mb)
        if ({"arena_api_host", "arena_api_port"} & updated) and self.server is not None:
            log.warning("the API address changes only after a restart")

    def _open_journal(self, directory: str, max_mb: int) -> None:
        listeners = self.services.requests.listeners
        if self.journal is not None:
            listeners.remove(self.journal)
            self.journal.close()
            self.journal = None
        if directory:
            self.journal = RequestJournal(os.path.abspath(os.path.expanduser(directory)), max_mb * 1024 * 1024)
            listeners.append(self.journal)

    def _open_store(self, path: str) -> None:
        path = os.path.abspath(os.path.expanduser(path)) if path else ""
        if path == self.store_path:
            return
        try:
            store = TinyPoolStore(path or None)
            self.services.pool.use_store(store)
            self.services.mirrors.use_store(store)
            self.services.strategy.use_store(store)
        except (OSError, ValueError) as e:
            raise exceptions.OptionsError(f"arena_store: cannot open {path}: {e}") from e
        if self.store is not None:
            self.store.close()
        self.store, self.store_path = store, path
        log.info("pool file %s: %d conversations", path or "(memory)", len(self.services.pool))

    async def running(self) -> None:
        if self.task is not None:
            return
        host, port = ctx.options.arena_api_host, ctx.options.arena_api_port
        # IPPROTO_TCP, not 0: asyncio turns Nagle off only for sockets that say they are TCP, and without
        # that every kept-alive response waits for a delayed ACK (about 40 ms on Linux)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            log.error("the API cannot listen on %s:%s: %s", host, port, e.strerror)
            ctx.master.shutdown()
            return
        self.bound_port = sock.getsockname()[1]
        self.address.host, self.address.port = host, self.bound_port
        config = uvicorn.Config(
            create_app(self.core),
            log_config=None,
            access_log=False,
            lifespan="off",
            http="httptools",
            ws="wsproto",
            ws_ping_interval=None,  # the channel pings on its own; protocol pings only add log lines
            # the channel's messages are small: compressing each one (in the API, again in the proxy, which
            # must read them, and in the browser) cost CPU and a zlib state per side, close to 1 MiB a page
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=2,
        )
        # mitmproxy's root logger takes DEBUG records: a library that logs every chunk at DEBUG would cost a
        # log record per SSE event
        logging.getLogger("sse_starlette").setLevel(logging.INFO)
        self.server = _EmbeddedServer(config)
        self.task = asyncio.create_task(self.server.serve(sockets=[sock]))
        log.info("OpenAI-compatible API on http://%s:%s/v1", host, self.bound_port)

    async def done(self) -> None:
        if self.server is not None and self.task is not None:
            await self.services.pages.close_all()
            self.server.should_exit = True
            try:
                await asyncio.wait_for(self.task, 5)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass
        if self.store is not None:
            await self.store.drain()
            self.store.close()
        if self.journal is not None:
            self.journal.close()
