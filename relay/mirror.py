"""Conversation mirroring: each client conversation gets a site conversation of its own, continued turn by
turn, never shared.

OpenAI clients send the whole conversation every time. A request is recognised by the chain of its
messages' fingerprints (role, normalised text, attachment digests; hashes only, never text):

- **continue**: an earlier request's messages, plus the answer the tool gave, plus new messages: only the
  new messages are posted to the same site conversation (the site already holds the rest);
- **regenerate**: the same messages as an earlier request: the site's own retry of that conversation's last
  answer (the retry endpoint used for what it really does);
- **new**: anything else (a new conversation, or an edited history): it adopts a free pooled conversation of
  its model (made ahead by prefill), or a new one carrying it, which from then on belongs to it only. A
  first request that already carries history is written once, as one message in `write_transcript`'s format.

At most `sessions_per_model` requests of a model reach the site at once (the rest wait, first come first
served); two requests of one client conversation are served one after the other.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING

from pool_store.pool import Conversation
from relay.errors import RateLimited
from relay.failures import FAILOVER_KINDS, failure_error
from relay.jobs import JobFailed
from relay.mirror_book import ClientConversation, Match, chains, fingerprint, link, write_transcript
from relay.models import ModelInfo
from relay.requestlog import RequestRecord
from relay.services import Services
from relay.slots import Slot, SlotTimeout
from sites import lmarena as site

if TYPE_CHECKING:
    from relay.engine import Replay, ReplayEngine

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- serving


class Mirror:
    """The mirror strategy of the replay engine."""

    def __init__(self, services: Services, engine: ReplayEngine) -> None:
        self.services = services
        self.engine = engine
        self.book = services.mirrors
        self.slots = engine.slots
        self._locks: dict[str, asyncio.Lock] = {}

    async def start(
        self, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord, prompt_tokens: int,
        adopt: bool = True, background: bool = False,
    ) -> Replay:
        """Everything up to the first answer token, as the engine's start does it for the other strategies.
        `adopt=False`: a new client conversation gets a new site conversation, never a pooled one (the canary,
        a side call). `background`: it waits for a slot behind every other request (a side call)."""
        deadline = time.monotonic() + self.services.settings.queue_timeout
        match, lock = await self._matched(turns, deadline)
        try:
            slot = await self.slots.acquire(model.name, max(0.0, deadline - time.monotonic()), background)
        except BaseException as e:
            if lock is not None:
                lock.release()
            if isinstance(e, SlotTimeout):
                raise RateLimited(
                    f"{model.name!r} had {self.slots.held(model.name)} requests at the site for "
                    f"{self.services.settings.queue_timeout:.0f} s",
                    retry_after=self.services.settings.unavailable_retry_after) from None
            raise
        try:
            replay, conv = await self._serve(match, model, turns, record, prompt_tokens, adopt)
        except BaseException:
            self.slots.release(slot)
            if lock is not None:
                lock.release()
            raise
        replay.on_end = lambda ok: self._ended(replay, match, conv, turns, slot, lock, ok)
        return replay

    async def _matched(self, turns: list[site.ChatTurn], deadline: float) -> tuple[Match, asyncio.Lock | None]:
        """The match, and the lock of its client conversation (held): a second request of the same
        conversation waits for the first, then is matched again against what the first left."""
        for _ in range(5):
            match = self.book.match(turns)
            if match.record is None:
                return match, None
            lock = self._locks.setdefault(match.record.key, asyncio.Lock())
            try:
                await asyncio.wait_for(lock.acquire(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise RateLimited("an earlier request of this conversation is still being answered",
                                  retry_after=self.services.settings.unavailable_retry_after) from None
            again = self.book.match(turns)
            if again.record is match.record:
                return again, lock
            lock.release()
        return Match("new", None, turns), None

    async def _serve(
        self, match: Match, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord, prompt_tokens: int,
        adopt: bool,
    ) -> tuple[Replay, Conversation | None]:
        """The first way that gets an answer going: the client conversation's own site conversation, else
        (it is gone, or failed before the first token) the whole conversation on a new one."""
        last: JobFailed | None = None
        for attempt in range(max(1, self.services.settings.failover_tries)):
            record.attempts = attempt + 1
            if attempt:  # what failed may have changed the pages (a login gate, a host that moved)
                await self.engine.wait_for_page(direct=not model.virtual)
            if match.record is not None and self._owned(match.record, model) is None:
                self.book.forget(match.record.key)
                match = Match("new", None, turns)
            record.strategy = f"mirror/{match.kind}"
            replay, conv, last = await self._attempt(match, model, turns, record, prompt_tokens, adopt)
            if replay is not None:
                return replay, conv
            assert last is not None
            if conv is not None:
                self._drop(match, conv, last)
            if last.kind not in FAILOVER_KINDS:
                break
            match = Match("new", None, turns)
        assert last is not None
        raise failure_error(last)

    def _owned(self, record: ClientConversation, model: ModelInfo) -> Conversation | None:
        """The client conversation's site conversation, if it can still serve; one cooling down means the
        site said to wait (a new conversation would meet the same limit)."""
        conv = self.services.pool.get(record.session_id)
        pool = self.services.pool
        if conv is None or conv.state == "retired" or conv.model != model.name or not pool.can_serve(conv):
            return None
        if pool.state_of(conv) == "cooling":
            raise RateLimited(f"the site asked to wait with {model.name!r}",
                              retry_after=max(1.0, conv.cooling_until - time.time()))
        return conv

    async def _attempt(
        self, match: Match, model: ModelInfo, turns: list[site.ChatTurn], record: RequestRecord, prompt_tokens: int,
        adopt: bool,
    ) -> tuple[Replay | None, Conversation | None, JobFailed | None]:
        """One way of serving the match: the replay when its answer began (and the conversation it holds),
        else what failed (and the conversation it failed on, if any)."""
        pool, engine = self.services.pool, self.engine
        owner = match.record.key if match.record else "c-" + secrets.token_hex(8)
        if match.record is not None:
            conv = pool.get(match.record.session_id)
        else:
            conv = pool.adopt(model.name, owner) if adopt else None
        if conv is None:  # nothing free to adopt: a new conversation that carries it, and belongs to it
            record.strategy = "mirror/new (created)"
            job, head, failed = await engine.create_for(model, [write_transcript(turns)], owner=owner)
            record.conversation = job.session_id
            if failed is not None:
                record.codes = list(job.codes)
                return None, None, failed
            return engine.replay_of(None, job, head, model, record, prompt_tokens, owner), None, None
        pool.hold(conv.session_id)
        record.leased_at = time.time()
        record.conversation = conv.session_id
        if match.kind == "regenerate":
            job, head, failed = await engine.run_on(conv, "retry", [], model, keep_body=True)
        else:
            message = write_transcript(match.new_turns if match.kind == "continue" else turns)
            job, head, failed = await engine.run_on(conv, "post", [message], model)
        if failed is not None:
            record.codes = list(job.codes)
            pool.unhold(conv.session_id, ok=False)
            return None, conv, failed
        return engine.replay_of(None, job, head, model, record, prompt_tokens, owner), conv, None

    def _drop(self, match: Match, conv: Conversation, failed: JobFailed) -> None:
        """A site conversation that failed its client conversation before the answer began: it may hold that
        conversation's text now, so it never goes back to the pool."""
        if failed.kind == site.FailureKind.RECAPTCHA and match.record is None:
            self.services.pool.own(conv.session_id, None)  # refused before anything was written into it
            return
        self.services.pool.retire(conv.session_id, f"failed its client conversation ({failed.kind})")
        if match.record is not None:
            self.book.forget(match.record.key)

    def _ended(
        self, replay: Replay, match: Match, conv: Conversation | None, turns: list[site.ChatTurn], slot: Slot,
        lock: asyncio.Lock | None, ok: bool,
    ) -> None:
        """The request is over: remember what the site now holds, and give the slot, the conversation and
        the client conversation's turn back."""
        try:
            self._remember(replay, match, turns, ok)
        finally:
            self.slots.release(slot)
            if conv is not None:
                self.services.pool.unhold(conv.session_id, ok)
            if lock is not None:
                lock.release()
                if match.record is not None and match.record.key not in self.book.records:
                    self._locks.pop(match.record.key, None)

    def _remember(self, replay: Replay, match: Match, turns: list[site.ChatTurn], ok: bool) -> None:
        job = replay.job
        if not job.flow_seen:  # nothing reached the site
            if match.record is None and job.conversation is not None:
                self.services.pool.own(job.conversation.session_id, None)
            return
        asked = chains(turns)[-1]
        now = time.time()
        record = match.record or ClientConversation(
            replay.owner or "", replay.model.name, job.target_session or "", asked, None, 0, now, now)
        record.asked = asked
        # the answer is known only when it finished; else the same request again regenerates it
        record.chain = link(asked, fingerprint(site.ChatTurn("assistant", replay.text))) if ok else None
        record.turns += 1
        for gone in self.book.remember(record):
            self.services.pool.retire(gone.session_id, "its client conversation was forgotten (too old or too many)")

    def forget_request(self, turns: list[site.ChatTurn], reason: str) -> None:
        """Forget the client conversation of these messages, and retire its site conversation."""
        match = self.book.match(turns)
        if match.record is not None:
            self.book.forget(match.record.key)
            self.services.pool.retire(match.record.session_id, reason)
