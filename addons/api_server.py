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
from openai_front.app import create_app
from openai_front.canary import Canary
from openai_front.jsonlog import RequestJournal
from openai_front.pages import load_secret
from openai_front.prefill import Prefiller
from openai_front.services import Services
from openai_front.serving_chat import ChatService
from pool_store.pool import SessionPool, TinyPoolStore

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


def seconds(option: str, positive: bool = False) -> float:
    """A duration option: mitmproxy's --set has no float type, so durations are strings of seconds."""
    raw = getattr(ctx.options, option)
    try:
        value = float(raw)
    except ValueError:
        raise exceptions.OptionsError(f"{option} must be a number of seconds, not {raw!r}") from None
    if value < 0 or (positive and value == 0) or value != value or value == float("inf"):
        raise exceptions.OptionsError(f"{option} must be {'positive' if positive else 'zero or more'}")
    return value


def read_keys(value: str) -> list[str]:
    """`arena_api_key`: comma-separated keys, or `@path` of a file with one key per line."""
    value = value.strip()
    if value.startswith("@"):
        path = os.path.expanduser(value[1:])
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().splitlines()
        except OSError as e:
            raise exceptions.OptionsError(f"arena_api_key: cannot read {path}: {e.strerror}") from e
        return [k.strip() for k in lines if k.strip() and not k.strip().startswith("#")]
    return [k.strip() for k in value.split(",") if k.strip()]


class ApiServer:
    def __init__(
        self, services: Services, address: ApiAddress, chat: ChatService, prefiller: Prefiller, canary: Canary
    ) -> None:
        self.services = services
        self.address = address
        self.chat = chat
        self.prefiller = prefiller
        self.canary = canary
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

    def configure(self, updated: set[str]) -> None:
        settings = self.services.settings
        if "confdir" in updated:
            path = os.path.join(os.path.expanduser(ctx.options.confdir), SECRET_FILE)
            try:
                self.services.pages.secret = load_secret(path)
            except OSError as e:
                raise exceptions.OptionsError(f"cannot keep the page channel secret in {path}: {e}") from e
        if "arena_api_key" in updated:
            settings.api_keys = read_keys(ctx.options.arena_api_key)
        if "arena_queue_timeout" in updated:
            settings.queue_timeout = seconds("arena_queue_timeout", positive=True)
        if "arena_upstream_timeout" in updated:
            settings.upstream_timeout = seconds("arena_upstream_timeout", positive=True)
        if "arena_keepalive" in updated:
            settings.keepalive = seconds("arena_keepalive", positive=True)
        if "arena_page_wait" in updated:
            settings.page_wait = seconds("arena_page_wait")
        if "arena_failover_tries" in updated:
            if not 1 <= ctx.options.arena_failover_tries <= 10:
                raise exceptions.OptionsError("arena_failover_tries must be between 1 and 10")
            settings.failover_tries = ctx.options.arena_failover_tries
        if "arena_fresh_conversations" in updated:
            settings.fresh_when_empty = ctx.options.arena_fresh_conversations
        if "arena_api_port" in updated and not 0 <= ctx.options.arena_api_port < 65536:
            raise exceptions.OptionsError("arena_api_port must be between 0 and 65535")
        if "arena_store" in updated:
            self._open_store(ctx.options.arena_store)
        if {"arena_log_dir", "arena_log_max_mb"} & updated:
            if ctx.options.arena_log_max_mb < 1:
                raise exceptions.OptionsError("arena_log_max_mb must be at least 1")
            listeners = self.services.requests.listeners
            if self.journal is not None and self.journal in listeners:
                listeners.remove(self.journal)
            self.journal = None
            if ctx.options.arena_log_dir:
                directory = os.path.abspath(os.path.expanduser(ctx.options.arena_log_dir))
                self.journal = RequestJournal(directory, ctx.options.arena_log_max_mb * 1024 * 1024)
                listeners.append(self.journal)
        if ({"arena_api_host", "arena_api_port"} & updated) and self.server is not None:
            log.warning("the API address changes only after a restart")

    def _open_store(self, path: str) -> None:
        path = os.path.abspath(os.path.expanduser(path)) if path else ""
        if path == self.store_path:
            return
        if self.store is not None:
            self.store.close()
        try:
            store = TinyPoolStore(path or None)
            pool = SessionPool(store=store)
        except (OSError, ValueError) as e:
            raise exceptions.OptionsError(f"arena_store: cannot open {path}: {e}") from e
        self.store, self.store_path = store, path
        self.services.use_pool(pool)
        log.info("pool file %s: %d conversations", path or "(memory)", len(pool))

    async def running(self) -> None:
        if self.task is not None:
            return
        host, port = ctx.options.arena_api_host, ctx.options.arena_api_port
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
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
            create_app(self.services, self.chat, self.prefiller, self.canary),
            log_config=None,
            access_log=False,
            lifespan="off",
            ws="wsproto",
            ws_ping_interval=None,  # the channel pings on its own; protocol pings only add log lines
            timeout_graceful_shutdown=2,
        )
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
            self.store.close()
