"""The canary: does a rewritten retry really answer the rewritten content?

Since late 2025 the real site may ignore the messages a retry carries and answer the conversation's
own history instead (its own client has sent token-only retries since December 2025). The canary
asks, through each strategy in turn, for a nonce word the conversation has never seen, and checks
that the answer says it. In `auto` mode the first strategy that passes serves requests until the
next canary; a change is said in the log (the console), in `/healthz` and in `GET /api/strategy`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from relay.engine import ReplayEngine
from relay.errors import RelayError
from relay.services import Services
from relay.settings import STRATEGIES, Strategy
from sites import lmarena as site

log = logging.getLogger(__name__)


class Canary:
    def __init__(self, services: Services, engine: ReplayEngine) -> None:
        self.services = services
        self.engine = engine
        self.interval = 900.0  # 0: only on demand
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()  # a conversation appeared: there may be something to test with now

    def _subject(self) -> str | None:
        """The model to test with: the one with the most ready direct-mode conversations."""
        pool = self.services.pool
        stats = pool.stats()
        best, most = None, 0
        for conv in pool:
            if not site.is_direct(conv.mode) or pool.state_of(conv) != "ready" or not pool.can_serve(conv):
                continue
            ready = stats.get(conv.model, {}).get("ready", 0)
            if ready > most:
                best, most = conv.model, ready
        return best

    async def run(self) -> dict[str, Any]:
        async with self._lock:
            model = self._subject()
            result: dict[str, Any] = {"time": time.time(), "model": model, "probes": [], "ok": False}
            if model is None:
                result["detail"] = "no free conversation to test with"
                self.services.strategy.canary = result
                return result
            chosen = None
            for strategy in STRATEGIES:
                ok, detail = await self._probe(model, strategy)
                result["probes"].append({"strategy": strategy, "ok": ok, "detail": detail})
                if ok:
                    chosen = strategy
                    break
            result["ok"] = chosen is not None
            result["chosen"] = None if chosen is None else str(chosen)
            state = self.services.strategy
            if chosen is not None and chosen != state.chosen:
                log.warning(
                    "strategy: %s → %s (canary on %s: %s)", state.chosen, chosen, model,
                    "; ".join(f"{p['strategy']}: {p['detail']}" for p in result["probes"]),
                )
                state.choose(chosen)
            elif chosen is None:
                log.error("strategy: no way of reaching the site passed the canary on %s; keeping %s",
                          model, state.chosen)
            else:
                log.info("canary on %s: %s still works", model, chosen)
            state.canary = result
            return result

    async def _probe(self, model_name: str, strategy: Strategy) -> tuple[bool, str]:
        nonce = "canary" + secrets.token_hex(4)
        prompt = f"Reply with this single word and nothing else: {nonce}"
        model = self.services.models.resolve(model_name)
        if model is None:
            return False, f"the model {model_name!r} is not known"
        record = self.services.requests.start(model.name, False)
        record.canary = True
        turns = [site.ChatTurn("user", prompt)]
        try:
            # a mirror probe never takes a conversation out of the pool: it gets a new one of its own
            replay = await asyncio.wait_for(self.engine.start(model, turns, record, strategy=strategy, adopt=False),
                                            120)
            answer = await self.engine.collect(replay)
        except (RelayError, asyncio.TimeoutError) as e:
            record.close(504 if isinstance(e, asyncio.TimeoutError) else 502, str(e) or "timed out", "canary")
            return False, f"failed: {e or 'timed out'}"
        if answer.failure is not None:
            record.close(answer.failure.status, answer.failure.message, answer.failure.source)
            return False, f"failed: {answer.failure.message}"
        record.close(200)
        if strategy == Strategy.MIRROR and self.engine.mirror is not None:
            # the probe made a client conversation of its own: its site conversation holds the nonce now
            self.engine.mirror.forget_request(turns, "used by the canary")
        if nonce.lower() in answer.text.lower():
            return True, "answered the rewritten content"
        return False, f"answered something else ({answer.text[:80]!r})"

    # ------------------------------------------------------------------ schedule

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def kick(self, model: str | None = None) -> None:
        """The pool gained a conversation."""
        self._kick.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        """Once at start-up, as soon as there is something to test with; then every `interval`."""
        if self.interval <= 0:
            return
        while self._subject() is None or not self.services.pages.ready_pages(direct=True):
            self._kick.clear()
            try:
                await asyncio.wait_for(self._kick.wait(), 2)
            except asyncio.TimeoutError:
                pass
        # until this first run has said which strategy works, requests wait for it rather than use a
        # strategy nobody has checked
        first = self.services.strategy.first_run = asyncio.get_running_loop().create_future()
        while True:
            try:
                await self.run()
            except Exception:
                log.exception("the canary failed")
            finally:
                if first is not None and not first.done():
                    first.set_result(None)
            await asyncio.sleep(self.interval)
