"""The client conversations of mirroring, as hashes: what each request's messages were, what the site
conversation of each holds, and how a new request relates to them (see relay/mirror.py).

A message's fingerprint is a hash of its role, its normalised text and its attachments' digests; a
conversation's chain links the fingerprints in order, so one hash names a whole transcript. Nothing here
ever holds message text.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, Protocol

from sites import lmarena as site

log = logging.getLogger(__name__)

_THINK = re.compile(r"<think>.*?(</think>|$)", re.S)
_SOURCES = re.compile(r"\n+Sources:\n(?:\d+\. \[[^\n]*\]\([^\n]*\)\n?)+\s*$")


# ---------------------------------------------------------------------------- fingerprints


def normalize(text: str) -> str:
    """A message's text as it is compared: without a <think> block or the tool's appended list of sources,
    with every run of whitespace made one space (what clients do to an answer they display)."""
    return " ".join(_SOURCES.sub("", _THINK.sub("", text)).split())


def fingerprint(turn: site.ChatTurn) -> str:
    digests = ",".join(hashlib.sha256(a.get("url", "").encode()).hexdigest()[:16] for a in turn.attachments)
    raw = f"{turn.role}\x00{normalize(turn.content)}\x00{digests}"
    return hashlib.sha256(raw.encode("utf-8", "replace")).hexdigest()[:32]


def link(previous: str, print_: str) -> str:
    """The chain of a conversation one message longer."""
    return hashlib.sha256(f"{previous}|{print_}".encode()).hexdigest()[:32]


def chains(turns: list[site.ChatTurn]) -> list[str]:
    """The chain of every prefix of a conversation: chains(t)[k-1] names its first k messages."""
    out, current = [], ""
    for turn in turns:
        current = link(current, fingerprint(turn))
        out.append(current)
    return out


ROLE_TITLES = {"system": "System", "user": "User", "assistant": "Assistant"}


def write_transcript(turns: list[site.ChatTurn]) -> site.ChatTurn:
    """Several messages as the one message the site takes per turn. One user message is sent as it is;
    anything more (a conversation opened mid-way, a tool result with a question) in a delimited format:

        [The conversation so far. Answer its last user message as the assistant.]
        === System ===
        ...
        === User ===
        ...
        === Assistant ===
        ...
    """
    if len(turns) == 1 and turns[0].role == "user":
        return turns[0]
    blocks = [f"=== {ROLE_TITLES.get(t.role, t.role.title())} ===\n{t.content}" for t in turns]
    intro = "[The conversation so far. Answer its last user message as the assistant.]"
    return site.ChatTurn("user", "\n\n".join([intro, *blocks]), [a for t in turns for a in t.attachments])


# ---------------------------------------------------------------------------- the book


@dataclass
class ClientConversation:
    """What the tool remembers of one client conversation: hashes, the site conversation, times."""

    key: str
    model: str
    session_id: str
    asked: str  # chain of the client's messages in its last request (a regenerate repeats them)
    chain: str | None  # chain of those messages and the answer; None while the last answer is not known
    turns: int = 0  # requests served
    created: float = 0.0
    updated: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ClientConversation:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in record.items() if k in known})


class MirrorStore(Protocol):
    def load_mirrors(self) -> list[dict[str, Any]]: ...
    def save_mirror(self, record: dict[str, Any]) -> None: ...
    def delete_mirror(self, key: str) -> None: ...


@dataclass
class Match:
    kind: Literal["new", "continue", "regenerate"]
    record: ClientConversation | None
    new_turns: list[site.ChatTurn]


class MirrorBook:
    """The client conversations by their chains; bounded (least recently used first out, and after `ttl`),
    persisted in the pool's file when it has one."""

    def __init__(self, limit: int = 2000, ttl: float = 7 * 86400.0, clock: Any = time.time) -> None:
        self.limit = limit
        self.ttl = ttl
        self._clock = clock
        self._store: MirrorStore | None = None
        self.records: dict[str, ClientConversation] = {}
        self._by_chain: dict[str, ClientConversation] = {}
        self._by_asked: dict[str, ClientConversation] = {}
        # what each record is indexed under: its chains when it was indexed (a caller that updates a record
        # changes its fields first, and the old entries must still go)
        self._indexed: dict[str, tuple[str, str | None]] = {}

    def use_store(self, store: MirrorStore) -> None:
        records = store.load_mirrors()
        self._store = store
        self.records.clear()
        self._by_chain.clear()
        self._by_asked.clear()
        self._indexed.clear()
        for record in records:
            try:
                self._index(ClientConversation.from_record(record))
            except TypeError as e:
                log.warning("skipping an unreadable client conversation record: %s", e)

    def match(self, turns: list[site.ChatTurn]) -> Match:
        prefixes = chains(turns)
        if not prefixes:
            return Match("new", None, turns)
        same = self._by_asked.get(prefixes[-1])
        if same is not None:
            return Match("regenerate", same, [])
        for k in range(len(prefixes) - 1, 0, -1):  # the longest earlier transcript this one continues
            earlier = self._by_chain.get(prefixes[k - 1])
            if earlier is not None:
                return Match("continue", earlier, turns[k:])
        return Match("new", None, turns)

    def remember(self, record: ClientConversation) -> list[ClientConversation]:
        """Add or update a record; returns the records that had to go to keep within the bounds."""
        record.updated = self._clock()
        self._unindex(record.key)
        self._index(record)
        if self._store is not None:
            self._store.save_mirror(record.to_record())
        return self._evict()

    def forget(self, key: str) -> ClientConversation | None:
        record = self._unindex(key)
        if record is not None and self._store is not None:
            self._store.delete_mirror(key)
        return record

    def _index(self, record: ClientConversation) -> None:
        self.records[record.key] = record
        self._indexed[record.key] = (record.asked, record.chain)
        self._by_asked[record.asked] = record
        if record.chain:
            self._by_chain[record.chain] = record

    def _unindex(self, key: str) -> ClientConversation | None:
        record = self.records.pop(key, None)
        asked, chain = self._indexed.pop(key, (None, None))
        if record is not None:
            if asked is not None and self._by_asked.get(asked) is record:
                del self._by_asked[asked]
            if chain and self._by_chain.get(chain) is record:
                del self._by_chain[chain]
        return record

    def _evict(self) -> list[ClientConversation]:
        now = self._clock()
        gone = [r for r in self.records.values() if r.updated < now - self.ttl]
        survivors = sorted((r for r in self.records.values() if r.updated >= now - self.ttl),
                           key=lambda r: r.updated)
        gone += survivors[: max(0, len(survivors) - self.limit)]
        return [r for r in (self.forget(g.key) for g in gone) if r is not None]

    def describe(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.to_record().items() if k not in ("asked", "chain")}
                for r in sorted(self.records.values(), key=lambda r: -r.updated)]
