"""Prefill logic: model selection, planning, skipping failures, healing."""

from __future__ import annotations

import pytest

from pool_store.pool import Conversation
from relay.core import assemble
from relay.jobs import JobDone, JobFailed
from relay.pages import Page
from relay.prefill import Prefiller, select_models
from relay.services import Services
from relay.slots import ModelSlots
from sites import lmarena as site


class FakeEngine:
    """Creates conversations the way the addons would record them; some fail."""

    def __init__(self, services: Services, fail: dict[str, JobFailed]) -> None:
        self.services = services
        self.fail = fail
        self.created: list[str] = []
        self.slots = ModelSlots(lambda: services.settings.sessions_per_model)

    async def create_job(self, model, turns, greeting=False):
        job = self.services.jobs.new_create(model.name, model.id, model.modality, turns,
                                            site.BodyFormat.USER_MESSAGE)
        job.session_id = f"{model.name}-{len(self.created)}"
        self.created.append(model.name)
        if model.name in self.fail:
            return job, self.fail[model.name]
        self.services.pool.upsert(Conversation(job.session_id, "m", model.name, identity="user:1"))
        return job, JobDone()

    def end_job(self, job):
        self.services.jobs.discard(job)


def with_page(s: Services) -> Services:
    """Wired as the tool wires it, with a ready page of identity user:1 (what makes that identity's
    conversations servable)."""
    s = assemble(s).services
    s.pages.pages["p"] = Page("p", "user:1", "https://lmarena.ai/", "ready")
    return s


def test_select_models_groups_and_names():
    s = Services()
    text = select_models(s, "text")
    assert text and all(m.modality == "chat" for m in text)
    assert not any(m.modality in ("image", "video") for m in text), "no quota-eating image/video by default"
    mixed = select_models(s, "image, GEMINI-2.5-PRO")
    assert "gemini-2.5-pro" in [m.name for m in mixed] and any(m.modality == "image" for m in mixed)
    with pytest.raises(ValueError, match="unknown models: nope"):
        select_models(s, "text,nope")


async def test_prefill_skips_failures_and_goes_on():
    s = Services()
    models = select_models(s, "gemini-2.5-pro,gpt-5-high,claude-opus-4-20250514")
    engine = FakeEngine(s, {"gpt-5-high": JobFailed("Too many requests", 429, site.FailureKind.RATE_LIMITED),
                        "claude-opus-4-20250514": JobFailed("boom", 502, site.FailureKind.UPSTREAM_ERROR)})
    prefiller = Prefiller(s, engine)  # type: ignore[arg-type]
    prefiller.interval = 0
    events = []
    run = prefiller.start(models, 2, "Hi", on_event=lambda r, item: events.append(item))
    await prefiller.wait()
    done = run.to_dict()
    assert done["created"] == 2 and not done["running"]
    # a rate limit skips the rest of that model; any other failure is logged and the next one is tried
    assert engine.created.count("gpt-5-high") == 1 and engine.created.count("claude-opus-4-20250514") == 2
    assert "gpt-5-high" in run.skipped
    assert [i.kind for i in run.items if i.model == "gpt-5-high"] == ["rate_limited", "skipped"]
    assert events[0] is None and events[-1] is None and len(events) == len(run.items) + 2
    assert s.pool.targets() == {m.name for m in models}


async def test_plan_counts_what_the_pool_already_has():
    s = with_page(Services())
    s.pool.upsert(Conversation("a", "m", "gemini-2.5-pro", identity="user:1"))
    s.pool.upsert(Conversation("b", "m", "gemini-2.5-pro", identity="user:1"))
    s.pool.upsert(Conversation("c", "m", "gemini-2.5-pro", identity="user:2"))  # no page: cannot serve
    s.pool.retire("b", "gone")
    prefiller = Prefiller(s, FakeEngine(s, {}))  # type: ignore[arg-type]
    assert prefiller.plan(select_models(s, "gemini-2.5-pro,gpt-5-high"), 4) == {"gemini-2.5-pro": 3,
                                                                              "gpt-5-high": 4}


async def test_healing_tops_targets_up_but_not_while_cooling():
    s = with_page(Services())
    s.settings.sessions_per_model = 3
    engine = FakeEngine(s, {})
    prefiller = Prefiller(s, engine)  # type: ignore[arg-type]
    prefiller.interval = 0
    s.pool.add_target("gemini-2.5-pro")
    s.pool.add_target("gpt-5-high")
    s.pool.upsert(Conversation("cool", "m", "gpt-5-high", identity="user:1"))
    s.pool.cool_down("cool", 60)
    assert await prefiller.heal_once() == 3
    assert engine.created == ["gemini-2.5-pro"] * 3, "a cooling model is left alone"
    assert await prefiller.heal_once() == 0
