"""The session pool: captured conversations, leased one request at a time.

Each model's concurrency is its number of usable conversations. A request that finds them all
busy waits in a first-come-first-served queue for that model and is handed the next conversation
that frees up. Free conversations are used least recently used first, so load spreads.

Hot state (who holds which lease, who is waiting) lives in memory only; what must survive a
restart (ids, states, owners) goes to the store when it changes, never on every request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterator, Literal, Protocol, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

State = Literal["ready", "cooling", "retired"]
# What a person reads: a stored state, or busy while a request holds the conversation.
SHOWN_STATES = ("ready", "busy", "cooling", "retired")


@dataclass
class Conversation:
    """A site conversation that can be replayed. `session_id` is its key."""

    session_id: str
    message_id: str  # assistant message a retry regenerates
    model: str  # public model name ("" when hidden, as in battle mode)
    model_id: str | None = None
    identity: str | None = None  # browser identity that owns it (user id from the session cookie)
    mode: str = "direct"
    modality: str = "chat"
    side: str = "a"  # the side replayed (battle: the side the person last retried)
    message_id_b: str | None = None  # battle and side-by-side: side b's assistant message
    user_message_id: str | None = None
    host: str = ""
    prefix: str = ""  # the stream path prefix it was captured under; empty: what the site uses now
    source: str = "captured"  # captured (a person) | tool
    owner: str | None = None  # the client conversation it mirrors (then it serves that one only)
    greeting_only: bool = False  # made by the tool's prefill and holding just its greeting: safe to adopt
    created_at: float = field(default_factory=time.time)
    last_used: float = 0.0
    uses: int = 0
    failures: int = 0
    state: State = "ready"
    cooling_until: float = 0.0
    retired_reason: str = ""

    def retry_message_id(self) -> str:
        """The assistant message a retry regenerates: the replayed side's."""
        return self.message_id_b if self.side == "b" and self.message_id_b else self.message_id

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Conversation:
        known = {f.name for f in fields(cls)}
        record = dict(record)
        if "position" in record:  # files written before the field was named for what it is
            record.setdefault("side", record.pop("position"))
        return cls(**{k: v for k, v in record.items() if k in known})


class PoolStore(Protocol):
    def load(self) -> list[dict[str, Any]]: ...
    def save(self, record: dict[str, Any]) -> None: ...
    def delete(self, session_id: str) -> None: ...
    def load_targets(self) -> list[str]: ...
    def save_targets(self, models: list[str]) -> None: ...


class PoolTimeout(Exception):
    """No conversation of the model freed up within the wait limit."""


class NoConversation(Exception):
    """The model has no usable conversation at all: waiting would never end."""


@dataclass
class Lease:
    conversation: Conversation
    started: float
    waited: float
    released: bool = False


class SessionPool:
    def __init__(
        self,
        store: PoolStore | None = None,
        clock: Callable[[], float] = time.time,
        can_serve: Callable[[Conversation], bool] | None = None,
    ) -> None:
        self._store: PoolStore | None = None
        self._clock = clock
        # Whether a conversation can be served right now (a page of its identity is connected).
        self.can_serve: Callable[[Conversation], bool] = can_serve or (lambda conv: True)
        # Conversations on their way for a model (creations in flight): waiting for them can end.
        self.prospects: Callable[[str], int] = lambda model: 0
        # Called with the model when it loses a conversation (retired or removed): the keeper tops up.
        self.on_shrink: Callable[[str], None] = lambda model: None
        # Called with the model when a conversation joins (the canary may now have something to test with).
        self.on_grow: Callable[[str], None] = lambda model: None
        self._convs: dict[str, Conversation] = {}
        self._busy: set[str] = set()
        self._background: set[asyncio.Future[Any]] = set()  # waiters that let every other go first
        self._waiters: dict[str, deque[asyncio.Future[Conversation]]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._targets: set[str] = set()
        if store is not None:
            self.use_store(store)

    def use_store(self, store: PoolStore) -> None:
        """Serve what this store holds, and keep it there from now on (the store is opened once the
        options are known, after the pool was made)."""
        records, targets = store.load(), store.load_targets()  # may raise: then nothing changes
        self._store = store
        self._targets = set(targets)
        self._convs.clear()
        for record in records:
            try:
                conv = Conversation.from_record(record)
            except TypeError as e:
                log.warning("skipping an unreadable pool record: %s", e)
                continue
            self._convs[conv.session_id] = conv
        self.wake()

    # ------------------------------------------------------------------ records

    def __len__(self) -> int:
        return len(self._convs)

    def __iter__(self) -> Iterator[Conversation]:
        return iter(list(self._convs.values()))

    def get(self, session_id: str) -> Conversation | None:
        return self._convs.get(session_id)

    def state_of(self, conv: Conversation) -> str:
        """What a person reads: ready, busy, cooling, retired."""
        if conv.state == "retired":
            return "retired"
        if conv.session_id in self._busy:
            return "busy"
        if conv.state == "cooling" and conv.cooling_until > self._clock():
            return "cooling"
        return "ready"

    def upsert(self, conv: Conversation) -> Conversation:
        """Add a conversation, or update the ids of a known one (a new turn moves the retry target)."""
        known = self._convs.get(conv.session_id)
        if known is None:
            self._convs[conv.session_id] = conv
            known = conv
            self.on_grow(conv.model)
        else:
            known.message_id = conv.message_id
            known.message_id_b = conv.message_id_b or known.message_id_b
            known.user_message_id = conv.user_message_id or known.user_message_id
            known.model = conv.model or known.model
            known.model_id = conv.model_id or known.model_id
            known.identity = conv.identity or known.identity
            known.owner = known.owner or conv.owner
            known.greeting_only = False  # a new turn: it holds more than the greeting now
        self._persist(known)
        self.wake(known.model)
        return known

    def remove(self, session_id: str) -> bool:
        conv = self._convs.pop(session_id, None)
        if conv is None:
            return False
        if self._store is not None:
            self._store.delete(session_id)
        self.on_shrink(conv.model)
        return True

    def retire(self, session_id: str, reason: str) -> None:
        conv = self._convs.get(session_id)
        if conv is None or conv.state == "retired":
            return
        conv.state = "retired"
        conv.retired_reason = reason
        log.info("retired conversation %s (%s): %s", session_id, conv.model, reason)
        self._persist(conv)
        self.on_shrink(conv.model)

    def retire_where(self, reason: str, model: str | None = None, identity: str | None = None) -> int:
        """Retire every conversation of a model and/or a browser identity; returns how many."""
        count = 0
        for conv in list(self._convs.values()):
            if conv.state == "retired":
                continue
            if (model is None or conv.model == model) and (identity is None or conv.identity == identity):
                self.retire(conv.session_id, reason)
                count += 1
        return count

    # ------------------------------------------------------------------ targets

    def targets(self) -> set[str]:
        """Models the tool keeps at their target number of conversations: the ones the user asked for (a
        prefill, or /api/targets), never one only because a request used it."""
        return set(self._targets)

    def add_target(self, model: str) -> None:
        if model not in self._targets:
            self._targets.add(model)
            self._save_targets()

    def remove_target(self, model: str) -> bool:
        if model not in self._targets:
            return False
        self._targets.discard(model)
        self._save_targets()
        return True

    def _save_targets(self) -> None:
        if self._store is not None:
            self._store.save_targets(sorted(self._targets))

    def cool_down(self, session_id: str, seconds: float) -> None:
        conv = self._convs.get(session_id)
        if conv is None or conv.state == "retired":
            return
        conv.state = "cooling"
        conv.cooling_until = self._clock() + seconds
        self._persist(conv)
        self._schedule_wake(conv.model, seconds)

    def choose_side(self, session_id: str, side: str) -> None:
        conv = self._convs.get(session_id)
        if conv is not None and conv.side != side:
            conv.side = side
            self._persist(conv)

    def mark_used(self, session_id: str, ok: bool) -> None:
        conv = self._convs.get(session_id)
        if conv is None:
            return
        conv.last_used = self._clock()
        conv.uses += 1
        if not ok:
            conv.failures += 1

    # ------------------------------------------------------------------ leasing

    def _usable(self, conv: Conversation) -> bool:
        if conv.state == "retired":
            return False
        if conv.state == "cooling" and conv.cooling_until > self._clock():
            return False
        return self.can_serve(conv)

    def servable_count(self, model: str) -> int:
        """Free conversations (no client conversation owns them) a page can serve now or later: ready, busy
        or cooling."""
        return sum(
            1 for c in self._convs.values()
            if c.model == model and c.state != "retired" and c.owner is None and self.can_serve(c)
        )

    def ready_now(self, model: str) -> bool:
        """A request of `model` arriving now would lease a conversation at once."""
        return not self.waiting(model) and any(
            c.model == model and c.owner is None and c.session_id not in self._busy and self._usable(c)
            for c in self._convs.values()
        )

    def has_prospect(self, model: str) -> bool:
        """True when waiting can end: a conversation is usable or cooling, or one is being created."""
        return self.servable_count(model) > 0 or self.prospects(model) > 0

    def recheck(self, model: str) -> None:
        """After something ended: serve waiters, or fail them when nothing can ever serve them."""
        self.wake(model)
        if self.waiting(model) and not self.has_prospect(model):
            self.fail_waiters(model)

    def _free(self, model: str) -> list[Conversation]:
        free = [
            c
            for c in self._convs.values()
            if c.model == model and c.owner is None and c.session_id not in self._busy and self._usable(c)
        ]
        free.sort(key=lambda c: (c.last_used, c.created_at))
        return free

    # ------------------------------------------------------------------ owned conversations (mirroring)

    def adopt(self, model: str, owner: str) -> Conversation | None:
        """A free conversation of `model` that now belongs to the client conversation `owner`, at once or
        None. Only one that holds nothing but the prefill's greeting: never a person's own chat, nor one that
        carried another client's messages."""
        free = [c for c in self._free(model) if c.greeting_only]
        if not free:
            return None
        conv = free[0]
        self.own(conv.session_id, owner)
        return conv

    def own(self, session_id: str, owner: str | None) -> None:
        """Give a conversation to a client conversation (or, with None, take it back: only for a
        conversation that holds nothing of another's)."""
        conv = self._convs.get(session_id)
        if conv is None or conv.owner == owner:
            return
        conv.owner = owner
        self._persist(conv)
        if owner is not None:
            self.on_shrink(conv.model)  # one free conversation fewer: the keeper may top up

    def hold(self, session_id: str) -> bool:
        """Mark an owned conversation busy while its client conversation's request is served."""
        conv = self._convs.get(session_id)
        if conv is None or session_id in self._busy or not self._usable(conv):
            return False
        self._take(conv)
        return True

    def unhold(self, session_id: str, ok: bool) -> None:
        if session_id in self._busy:
            self.mark_used(session_id, ok)
            self._busy.discard(session_id)

    def _take(self, conv: Conversation) -> None:
        self._busy.add(conv.session_id)
        if conv.state == "cooling":
            conv.state = "ready"
            conv.cooling_until = 0.0
        conv.last_used = self._clock()

    async def lease(self, model: str, timeout: float, background: bool = False) -> Lease:
        """Wait (first come, first served) for a free conversation of `model`. A `background` request (a
        client's side call) waits behind every other: those go first."""
        start = self._clock()
        queue = self._waiters.setdefault(model, deque())
        if not queue:
            free = self._free(model)
            if free:
                self._take(free[0])
                return Lease(free[0], start, 0.0)
        if not self.has_prospect(model):
            raise NoConversation(model)
        fut: asyncio.Future[Conversation] = asyncio.get_running_loop().create_future()
        queue_up(queue, fut, background, self._background)
        try:
            conv = await wait_turn(queue, fut, timeout, self._give_back, self._background)
        except asyncio.TimeoutError:
            raise PoolTimeout(model) from None
        return Lease(conv, start, self._clock() - start)

    def release(self, lease: Lease) -> None:
        """Return a leased conversation. Safe to call twice."""
        if lease.released:
            return
        lease.released = True
        self._give_back(lease.conversation)

    def _give_back(self, conv: Conversation) -> None:
        self._busy.discard(conv.session_id)
        self.wake(conv.model)

    def wake(self, model: str | None = None) -> None:
        """Hand free conversations to waiters, oldest waiter first."""
        models = [model] if model is not None else list(self._waiters)
        for name in models:
            queue = self._waiters.get(name)
            while queue:
                while queue and queue[0].done():
                    queue.popleft()
                if not queue:
                    break
                free = self._free(name)
                if not free:
                    break
                fut = queue.popleft()
                self._take(free[0])
                fut.set_result(free[0])

    def fail_waiters(self, model: str) -> None:
        """Waiters of a model that lost its last usable conversation get NoConversation."""
        queue = self._waiters.get(model)
        while queue:
            fut = queue.popleft()
            if not fut.done():
                fut.set_exception(NoConversation(model))

    def _schedule_wake(self, model: str, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        old = self._timers.pop(model, None)
        if old:
            old.cancel()
        self._timers[model] = loop.call_later(max(0.0, delay) + 0.01, self.wake, model)

    def waiting(self, model: str) -> int:
        return sum(1 for f in self._waiters.get(model, ()) if not f.done())

    # ------------------------------------------------------------------ views

    def stats(self) -> dict[str, dict[str, int]]:
        """Per model: total, each shown state (ready, busy, cooling, retired), how many of the conversations
        belong to a client conversation (owned), and waiting requests."""
        out: dict[str, dict[str, int]] = {}
        for conv in self._convs.values():
            row = out.setdefault(conv.model or "(hidden)", empty_stats())
            row["total"] += 1
            state = self.state_of(conv)
            row[state] += 1
            if conv.owner is not None and state != "retired":
                row["owned"] += 1
        for model in self._waiters:
            if self.waiting(model):
                out.setdefault(model, empty_stats())["waiting"] = self.waiting(model)
        return out

    def describe(self, conv: Conversation) -> dict[str, Any]:
        record = conv.to_record()
        record["state"] = self.state_of(conv)
        record["free"] = conv.owner is None and record["state"] != "retired"
        return record

    def _persist(self, conv: Conversation) -> None:
        if self._store is not None:
            self._store.save(conv.to_record())


def empty_stats() -> dict[str, int]:
    return {"total": 0, **{state: 0 for state in SHOWN_STATES}, "owned": 0, "waiting": 0}


def queue_up(queue: deque[asyncio.Future[Any]], fut: asyncio.Future[Any], background: bool,
             background_set: set[asyncio.Future[Any]]) -> None:
    """Add a waiter: a background one at the end, any other before the first background one still waiting."""
    if background:
        background_set.add(fut)
        queue.append(fut)
        return
    for index, waiting in enumerate(queue):
        if waiting in background_set and not waiting.done():
            queue.insert(index, fut)
            return
    queue.append(fut)


async def wait_turn(queue: deque[asyncio.Future[T]], fut: asyncio.Future[T], timeout: float,
                    give_back: Callable[[T], None], background_set: set[asyncio.Future[Any]]) -> T:
    """Wait for what a releaser hands `fut`. On a timeout or a cancel, the waiter leaves the queue, and what it
    was handed in the same instant it gave up is passed on (`give_back`), so nothing is lost either way."""
    try:
        return await asyncio.wait_for(asyncio.shield(fut), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        if fut.done() and not fut.cancelled():
            give_back(fut.result())
        else:
            fut.cancel()
        try:
            queue.remove(fut)
        except ValueError:
            pass
        raise
    finally:
        background_set.discard(fut)
