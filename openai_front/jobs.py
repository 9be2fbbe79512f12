"""Jobs: one replayed request each, from the page's fetch to the last parsed line.

The page script sends the job's request with an `X-Bridge-Job` header; the proxy addons find the
job by that id, write the client's conversation into the body, and push every parsed answer line
into the job's queue. The API side reads the queue. Every job ends exactly once.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Union

from pool_store.pool import Conversation
from sites import lmarena as site


@dataclass(frozen=True)
class JobDone:
    """The upstream answer ended normally."""


@dataclass(frozen=True)
class JobFailed:
    message: str
    status: int = 502
    kind: str = "upstream_error"  # see sites.lmarena.Failure.kind, plus page_gone, aborted, timeout
    retry_after: float | None = None
    source: str = "upstream"  # upstream | page | proxy | tool


JobItem = Union[site.StreamEvent, JobDone, JobFailed]


@dataclass
class Job:
    id: str
    # "retry": replay a pooled conversation's last answer with the turns written in; "post": the turns as a
    # new turn of a pooled conversation; "create": a new conversation carrying the turns
    kind: str
    turns: list[site.ChatTurn]
    model_id: str | None
    model: str
    conversation: Conversation | None = None  # retry only
    modality: str = "chat"
    era: str = "b"  # create: which body generation to write
    session_id: str | None = None  # create: chosen when the body is written
    created: float = field(default_factory=time.time)
    page_id: str | None = None
    queue: asyncio.Queue[JobItem] = field(default_factory=asyncio.Queue)
    ended: bool = False
    flow_seen: bool = False  # the proxy saw the page's request for this job

    def push(self, item: JobItem) -> None:
        if self.ended:
            return
        if isinstance(item, (JobDone, JobFailed)):
            self.ended = True
        self.queue.put_nowait(item)

    def fail(self, message: str, **kw: Any) -> None:
        self.push(JobFailed(message, **kw))


class JobTable:
    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def new(
        self, conversation: Conversation, turns: list[site.ChatTurn], model_id: str | None, kind: str = "retry",
        era: str = "b",
    ) -> Job:
        """A retry (or a new turn) of a pooled conversation with the client's turns written in."""
        job = Job(secrets.token_hex(16), kind, turns, model_id, conversation.model, conversation,
                  modality=conversation.modality, era=era)
        self._jobs[job.id] = job
        return job

    def new_create(self, model: str, model_id: str, modality: str, turns: list[site.ChatTurn], era: str) -> Job:
        """A new conversation of `model` whose first turn carries `turns`."""
        job = Job(secrets.token_hex(16), "create", turns, model_id, model, modality=modality, era=era)
        self._jobs[job.id] = job
        return job

    def creating(self, model: str) -> int:
        """Creations of this model in flight."""
        return sum(1 for j in self._jobs.values() if j.kind == "create" and j.model == model and not j.ended)

    def get(self, job_id: str | None) -> Job | None:
        return self._jobs.get(job_id) if job_id else None

    def discard(self, job: Job) -> None:
        self._jobs.pop(job.id, None)

    def for_page(self, page_id: str) -> list[Job]:
        return [j for j in self._jobs.values() if j.page_id == page_id and not j.ended]

    def __len__(self) -> int:
        return len(self._jobs)
