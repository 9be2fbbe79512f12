"""Prefill and healing: conversations created by the tool itself, so nobody captures ids by hand.

A prefill sends the prefill message ("Hi") from the page to each chosen model, N times, paced so it
does not trip the site's rate limits; each success joins the pool through the passive capture. The
keeper tops models back up to their target when conversations retire. No console code here: the
console and the API watch a run through `on_event`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from relay.engine import ReplayEngine
from relay.jobs import JobDone, JobFailed, ToolFailure
from relay.models import ModelInfo
from relay.services import Services
from relay.slots import SlotTimeout
from sites import lmarena as site

log = logging.getLogger(__name__)

MODEL_GROUPS = ("text", "search", "image", "video", "all")
Kind = site.FailureKind
# After these the rest of that model is skipped; after the others of STOP_RUN_KINDS, the whole run stops:
# a login gate (the browser needs an account) and a clock the site distrusts stop every model alike.
SKIP_MODEL_KINDS = frozenset({Kind.RATE_LIMITED, Kind.CHALLENGE, Kind.NOT_FOUND})
STOP_RUN_KINDS = frozenset({Kind.LOGIN_GATE, Kind.SPOOFED_ID, Kind.MOVED})


@dataclass
class PrefillItem:
    model: str
    ok: bool
    session_id: str | None = None
    message_id: str | None = None
    error: str | None = None
    kind: str | None = None
    at: float = field(default_factory=time.time)


@dataclass
class PrefillRun:
    models: list[str]
    per_model: int
    message: str
    planned: dict[str, int]  # model -> conversations to create
    started: float = field(default_factory=time.time)
    finished: float | None = None
    items: list[PrefillItem] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # model -> why the rest was skipped
    stopped: bool = False  # a failure every model would meet ended the run

    @property
    def total(self) -> int:
        return sum(self.planned.values())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total"] = self.total
        data["done"] = len(self.items)
        data["created"] = sum(1 for i in self.items if i.ok)
        data["failed"] = sum(1 for i in self.items if not i.ok)
        data["running"] = self.finished is None
        return data


def select_models(services: Services, spec: str) -> list[ModelInfo]:
    """`text`, `search`, `image`, `video`, `all`, or names, comma-separated (groups and names mix).

    `text` is every model that answers in text; image and video models are left out unless asked,
    because a "Hi" to them spends scarce quota.
    """
    chosen: dict[str, ModelInfo] = {}
    unknown: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        group = part.lower()
        if group in MODEL_GROUPS:
            for model in services.models.all():
                if model.virtual:
                    continue  # battle conversations come from a person's battles only
                if group == "all" or (group == "text" and model.modality == "chat") or model.modality == group:
                    chosen[model.name] = model
            continue
        found = services.models.resolve(part)
        if found is None or found.virtual:
            unknown.append(part)
        else:
            chosen[found.name] = found
    if unknown:
        raise ValueError(f"unknown models: {', '.join(unknown)}")
    return list(chosen.values())


class Prefiller:
    def __init__(self, services: Services, engine: ReplayEngine) -> None:
        self.services = services
        self.engine = engine
        self.run: PrefillRun | None = None
        self._task: asyncio.Task[PrefillRun] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self.interval = 2.0  # seconds between two creations
        self.heal = True
        self.heal_every = 15.0
        self._kick = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def plan(self, models: list[ModelInfo], per_model: int) -> dict[str, int]:
        """Conversations missing per model: the target less what the pool already has or is creating."""
        plan = {}
        for model in models:
            have = self.services.pool.servable_count(model.name) + self.services.jobs.creating(model.name)
            if have < per_model:
                plan[model.name] = per_model - have
        return plan

    def start(
        self,
        models: list[ModelInfo],
        per_model: int,
        message: str,
        on_event: Callable[[PrefillRun, PrefillItem | None], None] | None = None,
    ) -> PrefillRun:
        if self.running:
            raise RuntimeError("a prefill is already running")
        run = PrefillRun([m.name for m in models], per_model, message, self.plan(models, per_model))
        self.run = run
        self._task = asyncio.get_running_loop().create_task(self._run(run, models, on_event or (lambda r, i: None)))
        return run

    async def wait(self) -> PrefillRun | None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        return self.run

    async def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(
        self, run: PrefillRun, models: list[ModelInfo], on_event: Callable[[PrefillRun, PrefillItem | None], None]
    ) -> PrefillRun:
        by_name = {m.name: m for m in models}
        log.info("prefill: %d conversations for %d models (message %r)", run.total, len(run.planned), run.message)
        on_event(run, None)
        try:
            first = True
            cause: PrefillItem | None = None
            for name, count in run.planned.items():
                model = by_name[name]
                self.services.pool.add_target(name)
                for _ in range(count):
                    if not first:
                        await asyncio.sleep(self.interval)
                    first = False
                    item = await self.create_one(model, run.message)
                    run.items.append(item)
                    on_event(run, item)
                    if not item.ok and item.kind in SKIP_MODEL_KINDS | STOP_RUN_KINDS:
                        self._skip(run, name, count, item, on_event)
                        cause = item
                        break
                if run.stopped and cause is not None:
                    for other in list(run.planned)[list(run.planned).index(name) + 1:]:
                        self._skip(run, other, run.planned[other], cause, on_event)
                    break
        finally:
            run.finished = time.time()
            created = sum(1 for i in run.items if i.ok)
            log.info("prefill finished: %d created, %d failed or skipped", created, len(run.items) - created)
            on_event(run, None)
        return run

    def _skip(self, run: PrefillRun, name: str, count: int, cause: PrefillItem,
              on_event: Callable[[PrefillRun, PrefillItem | None], None]) -> None:
        """The rest of a model's conversations are not tried (nor, for a failure every model would meet,
        any other model's)."""
        run.skipped[name] = cause.error or cause.kind or "failed"
        if cause.kind in STOP_RUN_KINDS and not run.stopped:
            run.stopped = True
            log.warning("prefill: stopping: %s", cause.error)
        elif not run.stopped:
            log.warning("prefill: skipping the rest of %s: %s", name, cause.error)
        for _ in range(count - sum(1 for i in run.items if i.model == name)):
            skipped = PrefillItem(name, False, error="skipped: " + (cause.kind or ""), kind="skipped")
            run.items.append(skipped)
            on_event(run, skipped)

    async def create_one(self, model: ModelInfo, message: str) -> PrefillItem:
        """One new conversation of `model` with `message` as its first turn."""
        job = None
        try:
            # it counts among the model's requests at the site, as a client's would
            slot = await self.engine.slots.acquire(model.name, self.services.settings.queue_timeout)
        except SlotTimeout:
            return PrefillItem(model.name, False, error="the model stayed busy", kind="busy")
        try:
            job, first = await self.engine.create_job(model, [site.ChatTurn("user", message)], greeting=True)
            item = first
            while not isinstance(item, (JobDone, JobFailed)):
                item = await self.engine.next_item(job)
        except Exception as e:  # an error here must not stop the whole prefill
            log.exception("prefill: creating a %s conversation failed", model.name)
            item = JobFailed(str(e), 500, ToolFailure.TOOL_ERROR, source="tool")
        finally:
            self.engine.slots.release(slot)
            if job is not None:
                self.engine.end_job(job)
        if isinstance(item, JobDone) and job is not None and job.session_id:
            conv = self.services.pool.get(job.session_id)
            log.info(
                "prefill: %s conversation %s message %s", model.name, job.session_id, conv.message_id if conv else "?"
            )
            return PrefillItem(model.name, True, job.session_id, conv.message_id if conv else None)
        assert isinstance(item, JobFailed)
        log.warning(
            "prefill: %s failed (%s, status %s, from the %s): %s", model.name, item.kind, item.status, item.source,
            item.message,
        )
        return PrefillItem(model.name, False, job.session_id if job else None, error=item.message, kind=item.kind)

    # ------------------------------------------------------------------ keeper

    def start_keeper(self) -> None:
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep())

    def kick(self, model: str | None = None) -> None:
        """A model lost a conversation: heal now rather than at the next round."""
        self._kick.set()

    async def stop(self) -> None:
        for task in (self._keeper, self._task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def _keep(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._kick.wait(), self.heal_every)
            except asyncio.TimeoutError:
                pass
            self._kick.clear()
            await asyncio.sleep(self.interval)  # pacing, and lets a burst of retirements settle
            try:
                await self.heal_once()
            except Exception:
                log.exception("pool healing failed")

    async def heal_once(self) -> int:
        """Top each target model (not cooling down) back up to its target. Returns how many were created."""
        if not self.heal or self.running or not self.services.pages.ready_pages():
            return 0
        created = 0
        for name in sorted(self.services.pool.targets()):
            model = self.services.models.resolve(name)
            if model is None:
                continue
            while not self._cooling(name) and self.plan([model], self.services.settings.sessions_per_model):
                item = await self.create_one(model, self.services.settings.prefill_message)
                log.info("pool healing: %s %s", name, "one more conversation" if item.ok else f"failed: {item.error}")
                await asyncio.sleep(self.interval)
                if not item.ok:
                    break  # try again at the next round
                created += 1
        return created

    def _cooling(self, model: str) -> bool:
        return any(self.services.pool.state_of(c) == "cooling" for c in self.services.pool if c.model == model)
