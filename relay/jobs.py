"""Jobs: one request the page sends for the tool, from the page's fetch to the last parsed line.

The page script sends the job's request with an `X-Bridge-Job` header; the proxy addons find the
job by that id, write the client's conversation into the body, and push every parsed answer line
into the job's queue. The API side reads the queue. Every job ends exactly once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Union

from pool_store.pool import Conversation
from sites import lmarena as site


class ToolFailure(StrEnum):
    """What went wrong on the tool's side of a job (the site's own are `site.FailureKind`)."""

    PAGE_GONE = "page_gone"  # the page closed or lost its channel
    PAGE_ERROR = "page_error"  # the page could not send the request
    PROXY_MISSED = "proxy_missed"  # the page's request never passed through the proxy
    TIMEOUT = "timeout"  # no answer line in time
    TOOL_ERROR = "tool_error"  # a bug of the tool's own
    OUTPUT_INVALID = "output_invalid"  # the model's answer is not the JSON asked for, also after one retry


FailureKind = Union[site.FailureKind, ToolFailure]


@dataclass(frozen=True)
class JobDone:
    """The upstream answer ended normally."""


@dataclass(frozen=True)
class JobFailed:
    message: str
    status: int = 502
    kind: FailureKind = site.FailureKind.UPSTREAM_ERROR
    retry_after: float | None = None
    source: str = "upstream"  # upstream | page | proxy | tool: who failed, as the logs say it


JobItem = Union[site.StreamEvent, JobDone, JobFailed]


@dataclass
class Job:
    id: str
    call: site.CallKind  # the site endpoint the page calls: create, post or retry
    turns: list[site.ChatTurn]
    model_id: str | None
    model: str
    conversation: Conversation | None = None  # post and retry: the pooled conversation
    modality: str = "chat"
    body_format: site.BodyFormat = site.BodyFormat.USER_MESSAGE  # create and post: how to write the body
    mode: str = site.DIRECT_MODE_2026  # create and post: the mode the body says
    session_id: str | None = None  # create: chosen when the body is written
    user_message_id: str | None = None  # the turn's user message (the site's Stop names it); set by the rewriter
    token_report: dict[str, Any] | None = None  # how the page made its reCAPTCHA token (never the token)
    owner: str | None = None  # create: the client conversation the new conversation belongs to (mirroring)
    greeting: bool = False  # create: the prefill's greeting, so the new conversation may be adopted later
    keep_body: bool = False  # send the page's own body (a token-only retry: the site's own regenerate)
    fresh_token: bool = False  # the page must mint a token for this job, not take one minted ahead
    codes: Any = field(default_factory=list)  # the answer's line codes so far (its parser's, set by the proxy)
    created: float = field(default_factory=time.time)
    page_id: str | None = None
    queue: asyncio.Queue[JobItem] = field(default_factory=asyncio.Queue)
    ended: bool = False
    flow_seen: bool = False  # the proxy saw the page's request for this job
    last_item_at: float = field(default_factory=time.monotonic)  # when the last item came (the silence watch)
    _watch: asyncio.TimerHandle | None = field(default=None, repr=False)

    def push(self, item: JobItem) -> None:
        if self.ended:
            return
        self.last_item_at = time.monotonic()
        if isinstance(item, (JobDone, JobFailed)):
            self.ended = True
            if self._watch is not None:
                self._watch.cancel()
                self._watch = None
        self.queue.put_nowait(item)

    def watch_silence(self, timeout: float) -> None:
        """Fail the job once `timeout` seconds pass without an item. One timer per job, re-armed only
        when it fires: waiting for each answer line costs no timer of its own."""
        if self._watch is not None or self.ended:
            return
        loop = asyncio.get_running_loop()

        def check() -> None:
            self._watch = None
            if self.ended:
                return
            quiet = time.monotonic() - self.last_item_at
            if quiet >= timeout:  # the reader gives up; the answer has not ended (the engine stops it)
                self.queue.put_nowait(JobFailed(f"no answer line within {timeout:.0f} s", 504, ToolFailure.TIMEOUT,
                                                source="tool"))
            else:
                self._watch = loop.call_later(timeout - quiet, check)

        self.last_item_at = time.monotonic()
        self._watch = loop.call_later(timeout, check)

    def fail(self, message: str, status: int = 502, kind: FailureKind = ToolFailure.TOOL_ERROR,
             source: str = "tool") -> None:
        self.push(JobFailed(message, status, kind, source=source))

    @property
    def target_session(self) -> str | None:
        """The conversation this job's request is about (a create's once its body is written)."""
        return self.conversation.session_id if self.conversation else self.session_id


ENDED_REMEMBERED = 256  # ids of ended jobs kept, so a page's late word about one is told from a made-up id


class JobTable:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._ended: dict[str, str] = {}  # job id -> its page, most recent last

    def new(
        self,
        conversation: Conversation,
        turns: list[site.ChatTurn],
        model_id: str | None,
        call: site.CallKind = "retry",
        body_format: site.BodyFormat = site.BodyFormat.USER_MESSAGE,
    ) -> Job:
        """A retry (or a new turn) of a pooled conversation with the client's turns written in."""
        job = Job(secrets.token_hex(16), call, turns, model_id, conversation.model, conversation,
                  modality=conversation.modality, body_format=body_format, mode=conversation.mode,
                  user_message_id=conversation.user_message_id)
        self._jobs[job.id] = job
        return job

    def new_create(
        self, model: str, model_id: str | None, modality: str, turns: list[site.ChatTurn], body_format: site.BodyFormat,
        mode: str = site.DIRECT_MODE_2026,
    ) -> Job:
        """A new conversation of `model` whose first turn carries `turns`."""
        job = Job(secrets.token_hex(16), "create", turns, model_id, model, modality=modality, body_format=body_format,
                  mode=mode)
        self._jobs[job.id] = job
        return job

    def creating(self, model: str) -> int:
        """Creations of this model in flight."""
        return sum(1 for j in self._jobs.values() if j.call == "create" and j.model == model and not j.ended)

    def get(self, job_id: str | None) -> Job | None:
        return self._jobs.get(job_id) if job_id else None

    def discard(self, job: Job) -> None:
        if self._jobs.pop(job.id, None) is not None:
            self._ended[job.id] = job.page_id or ""
            while len(self._ended) > ENDED_REMEMBERED:
                del self._ended[next(iter(self._ended))]

    def ended_on(self, job_id: str, page_id: str) -> bool:
        """Whether `job_id` was a job of this page that has ended (its page may still report on it)."""
        return self._ended.get(job_id) == page_id

    def for_page(self, page_id: str) -> list[Job]:
        return [j for j in self._jobs.values() if j.page_id == page_id and not j.ended]

    def __len__(self) -> int:
        return len(self._jobs)
