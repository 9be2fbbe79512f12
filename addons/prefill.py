"""Prefill on start-up, as the user asked: once a page is connected and ready and the site has been
quiet for a while, ask on the console ("Press Enter to continue" / "按回车键继续"), then have the page
send "Hi" to every chosen model, N times, with a progress bar. Also runs the pool keeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
import time
from typing import Callable, Iterator

from mitmproxy import ctx

from addons.options import parsed
from relay.options import parse_choice, parse_int_range, parse_seconds, parse_text
from relay.prefill import Prefiller, PrefillItem, PrefillRun, select_models
from relay.services import Services
from terminal import console as ui

log = logging.getLogger(__name__)

PREFILL_CHOICES = ("ask", "auto", "off")
LANG_CHOICES = ("auto", "en", "zh")


@contextlib.contextmanager
def sigint_calls(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> Iterator[None]:
    """While inside, Ctrl+C calls `callback` instead of stopping the tool; mitmproxy's handler
    is put back afterwards."""
    handlers = getattr(loop, "_signal_handlers", None)
    previous = handlers.get(signal.SIGINT) if isinstance(handlers, dict) else None
    try:
        loop.add_signal_handler(signal.SIGINT, callback)
    except (NotImplementedError, RuntimeError, ValueError):
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGINT)
        if previous is not None:
            loop.add_signal_handler(signal.SIGINT, previous._callback, *previous._args)


class PrefillAddon:
    def __init__(self, services: Services, prefiller: Prefiller) -> None:
        self.services = services
        self.prefiller = prefiller
        self.console = ui.make_console()
        self.lang = "en"
        self.delay = 30.0
        self._task: asyncio.Task[None] | None = None
        self._display: ui.PrefillProgress | None = None

    def load(self, loader) -> None:
        loader.add_option(
            "arena_prefill", str, "ask",
            "Create conversations on start-up: ask (on the console; off without a terminal), auto, or off.",
            choices=PREFILL_CHOICES,
        )
        loader.add_option(
            "arena_prefill_delay", str, "30",
            "Seconds without traffic, once a page is ready, before the start-up prefill.",
        )
        loader.add_option(
            "arena_prefill_models", str, "text",
            "Models to prefill: text, search, image, video, all, or names, comma-separated.",
        )
        loader.add_option("arena_sessions_per_model", int, 4, "Conversations per model the pool aims for.")
        loader.add_option(
            "arena_prefill_message", str, "Hi", "The first message of each conversation the tool creates."
        )
        loader.add_option(
            "arena_prefill_interval", str, "2", "Seconds between two conversations the tool creates (pacing)."
        )
        loader.add_option(
            "arena_pool_heal", bool, True,
            "Create conversations in the background when a prefilled model falls below its target.",
        )
        loader.add_option(
            "arena_lang", str, "auto", "Console language: en, zh, or auto (the system locale).",
            choices=LANG_CHOICES,
        )

    def configure(self, updated: set[str]) -> None:
        settings = self.services.settings
        if "arena_sessions_per_model" in updated:
            settings.sessions_per_model = parsed("arena_sessions_per_model", parse_int_range, 1, 64)
        if "arena_prefill_message" in updated:
            settings.prefill_message = parsed("arena_prefill_message", parse_text)
        if "arena_prefill_interval" in updated:
            self.prefiller.interval = parsed("arena_prefill_interval", parse_seconds)
        if "arena_prefill_delay" in updated:
            self.delay = parsed("arena_prefill_delay", parse_seconds)
        if "arena_prefill_models" in updated:
            parsed("arena_prefill_models", lambda spec: select_models(self.services, spec))
        if "arena_pool_heal" in updated:
            self.prefiller.heal = ctx.options.arena_pool_heal
        if "arena_prefill" in updated:
            parsed("arena_prefill", parse_choice, PREFILL_CHOICES)
        if "arena_lang" in updated:
            self.lang = ui.language(parsed("arena_lang", parse_choice, LANG_CHOICES))
            settings.lang = self.lang

    def running(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._startup())
            self.prefiller.start_keeper()

    async def done(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.prefiller.stop()

    # ------------------------------------------------------------------ start-up prefill

    async def _startup(self) -> None:
        mode = ctx.options.arena_prefill
        if mode == "off":
            return
        delay = self.delay
        while not await self.services.pages.wait_ready(60):
            pass
        ready_since = time.time()
        log.info(ui.text(self.lang, "prefill_waiting", delay=delay))
        while True:
            quiet_since = max(self.services.observed.last_activity, ready_since)
            left = quiet_since + delay - time.time()
            if left <= 0 and self.services.pages.ready_pages():
                break
            await asyncio.sleep(min(max(left, 0.2), 1.0))
        per_model = self.services.settings.sessions_per_model
        models = select_models(self.services, ctx.options.arena_prefill_models)
        plan = self.prefiller.plan(models, per_model)
        if not plan:
            log.info(ui.text(self.lang, "prefill_full", per=per_model))
            return
        message = self.services.settings.prefill_message
        if mode == "ask":
            if not (sys.stdin is not None and sys.stdin.isatty()):
                log.warning(ui.text(self.lang, "prefill_no_tty"))
                return
            prompt = ui.text(self.lang, "prefill_prompt", per=per_model, models=len(plan),
                             total=sum(plan.values()), message=message)
            with self._terminal():
                if not await self._confirm(prompt):
                    log.info(ui.text(self.lang, "prefill_skipped"))
                    return
        if self.prefiller.running:
            return
        with self._terminal():
            self._display = ui.PrefillProgress(self.console, self.lang)
            self.prefiller.start(models, per_model, message, on_event=self._on_event)
            await self.prefiller.wait()

    def _terminal(self) -> contextlib.AbstractContextManager[None]:
        """The console view steps aside while the prompt and the progress bar use the terminal."""
        view = ctx.master.addons.get("consoleview")
        return view.paused() if view is not None else contextlib.nullcontext()

    async def _confirm(self, prompt: str) -> bool:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[bool] = loop.create_future()

        def settle(value: bool) -> None:
            if not answer.done():
                answer.set_result(value)

        def read() -> None:
            try:
                value = ui.ask_enter(self.console, prompt)
            except (EOFError, KeyboardInterrupt, OSError):
                value = False
            loop.call_soon_threadsafe(settle, value)

        # a daemon thread: if Ctrl+C answers, the blocked read must not keep the process alive
        threading.Thread(target=read, name="prefill-prompt", daemon=True).start()
        with sigint_calls(loop, lambda: settle(False)):
            return await answer

    def _on_event(self, run: PrefillRun, item: PrefillItem | None) -> None:
        if self._display is None:
            return
        if run.finished is not None and item is None:
            created = sum(1 for i in run.items if i.ok)
            self._display.close(created, len(run.items) - created)
            self._display = None
            return
        last = None
        if item is not None:
            last = f"{item.model}: {'ok' if item.ok else item.kind or 'failed'}"
        self._display.update(run.total, len(run.items), last)
