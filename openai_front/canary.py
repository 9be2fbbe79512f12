"""The canary: does a rewritten retry really answer the rewritten content?

Since late 2025 the real site may ignore the messages a retry carries and answer the conversation's
own history instead (protocol §3.2). The canary asks, through each strategy in turn, for a nonce
word the conversation has never seen, and checks that the answer says it. In `auto` mode the first
strategy that passes serves requests until the next canary; a change is said in the log (the
console), in `/healthz` and in `GET /api/strategy`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

from openai_front.errors import APIError
from openai_front.protocol import ChatCompletionRequest, ChatMessage
from openai_front.services import STRATEGIES, Services
from openai_front.serving_chat import ChatService, close_record

log = logging.getLogger(__name__)


class Canary:
    def __init__(self, services: Services, chat: ChatService) -> None:
        self.s = services
        self.chat = chat
        self.interval = 900.0  # 0: only on demand
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def _subject(self) -> str | None:
        """The model to test with: the one with the most free direct-mode conversations."""
        stats = self.s.pool.stats()
        best, free = None, 0
        for conv in self.s.pool:
            if conv.mode != "direct" or self.s.pool.state_of(conv) != "ready" or not self.s.pool.can_serve(conv):
                continue
            idle = stats.get(conv.model, {}).get("idle", 0)
            if idle > free:
                best, free = conv.model, idle
        return best

    async def run(self) -> dict[str, Any]:
        async with self._lock:
            model = self._subject()
            result: dict[str, Any] = {"time": time.time(), "model": model, "probes": [], "ok": False}
            if model is None:
                result["detail"] = "no free conversation to test with"
                self.s.strategy.canary = result
                return result
            chosen = None
            for strategy in STRATEGIES:
                ok, detail = await self._probe(model, strategy)
                result["probes"].append({"strategy": strategy, "ok": ok, "detail": detail})
                if ok:
                    chosen = strategy
                    break
            result["ok"] = chosen is not None
            result["chosen"] = chosen
            state = self.s.strategy
            if chosen is not None and chosen != state.chosen:
                log.warning(
                    "strategy: %s → %s (canary on %s: %s)", state.chosen, chosen, model,
                    "; ".join(f"{p['strategy']}: {p['detail']}" for p in result["probes"]),
                )
                state.chosen = chosen
            elif chosen is None:
                log.error("strategy: no way of reaching the site passed the canary on %s; keeping %s",
                          model, state.chosen)
            else:
                log.info("canary on %s: %s still works", model, chosen)
            state.canary = result
            return result

    async def _probe(self, model: str, strategy: str) -> tuple[bool, str]:
        nonce = "canary" + secrets.token_hex(4)
        prompt = f"Reply with this single word and nothing else: {nonce}"
        request = ChatCompletionRequest(model=model, messages=[ChatMessage(role="user", content=prompt)])
        record = self.s.requests.start(model, False)
        record.canary = True
        try:
            replay = await asyncio.wait_for(self.chat.start(request, record, strategy=strategy), 120)
            answer = await self.chat.complete(replay)
        except (APIError, asyncio.TimeoutError) as e:
            close_record(record, getattr(e, "status", 504), str(e) or "timed out", "canary")
            return False, f"failed: {e or 'timed out'}"
        text = str(answer["choices"][0]["message"].get("content") or "")
        if nonce.lower() in text.lower():
            return True, "answered the rewritten content"
        return False, f"answered something else ({text[:80]!r})"

    # ------------------------------------------------------------------ schedule

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        """Once at start-up, as soon as there is something to test with; then every `interval`."""
        if self.interval <= 0:
            return
        while self._subject() is None or not self.s.pages.ready_pages():
            await asyncio.sleep(2)
        while True:
            try:
                await self.run()
            except Exception:
                log.exception("the canary failed")
            await asyncio.sleep(self.interval)
