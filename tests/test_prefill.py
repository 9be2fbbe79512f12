"""Prefill logic: model selection, planning, skipping failures, healing; the console strings."""

from __future__ import annotations

import pytest

from addons import console as ui
from openai_front.jobs import JobDone, JobFailed
from openai_front.pages import Page
from openai_front.prefill import Prefiller, select_models
from openai_front.services import Services
from pool_store.pool import Conversation


class FakeChat:
    """Creates conversations the way the addons would record them; some fail."""

    def __init__(self, services: Services, fail: dict[str, JobFailed]) -> None:
        self.s = services
        self.fail = fail
        self.created: list[str] = []

    async def create_job(self, model, turns):
        job = self.s.jobs.new_create(model.name, model.id, model.modality, turns, "b")
        job.session_id = f"{model.name}-{len(self.created)}"
        self.created.append(model.name)
        if model.name in self.fail:
            return job, self.fail[model.name]
        self.s.pool.upsert(Conversation(job.session_id, "m", model.name, identity="user:1"))
        return job, JobDone()

    def end_job(self, job):
        self.s.jobs.discard(job)


def with_page(s: Services) -> Services:
    """A ready page of identity user:1 (what makes that identity's conversations servable)."""
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
    chat = FakeChat(s, {"gpt-5-high": JobFailed("Too many requests", 429, "rate_limited"),
                        "claude-opus-4-20250514": JobFailed("boom", 502, "upstream_error")})
    prefiller = Prefiller(s, chat)  # type: ignore[arg-type]
    prefiller.interval = 0
    events = []
    run = prefiller.start(models, 2, "Hi", on_event=lambda r, item: events.append(item))
    await prefiller.wait()
    done = run.to_dict()
    assert done["created"] == 2 and not done["running"]
    # a rate limit skips the rest of that model; any other failure is logged and the next one is tried
    assert chat.created.count("gpt-5-high") == 1 and chat.created.count("claude-opus-4-20250514") == 2
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
    prefiller = Prefiller(s, FakeChat(s, {}))  # type: ignore[arg-type]
    assert prefiller.plan(select_models(s, "gemini-2.5-pro,gpt-5-high"), 4) == {"gemini-2.5-pro": 3,
                                                                              "gpt-5-high": 4}


async def test_healing_tops_targets_up_but_not_while_cooling():
    s = with_page(Services())
    s.settings.sessions_per_model = 3
    chat = FakeChat(s, {})
    prefiller = Prefiller(s, chat)  # type: ignore[arg-type]
    prefiller.interval = 0
    s.pool.add_target("gemini-2.5-pro")
    s.pool.add_target("gpt-5-high")
    s.pool.upsert(Conversation("cool", "m", "gpt-5-high", identity="user:1"))
    s.pool.cool_down("cool", 60)
    assert await prefiller.heal_once() == 3
    assert chat.created == ["gemini-2.5-pro"] * 3, "a cooling model is left alone"
    assert await prefiller.heal_once() == 0


def test_console_language_follows_the_locale():
    assert ui.language("auto", {"LANG": "zh_CN.UTF-8"}) == "zh"
    assert ui.language("auto", {"LANG": "en_US.UTF-8"}) == "en"
    assert ui.language("auto", {}) == "en"
    assert ui.language("zh", {"LANG": "en_US.UTF-8"}) == "zh"
    assert "按回车键继续" in ui.text("zh", "prefill_prompt", per=4, models=2, total=8, message="Hi")
    assert "Press Enter to continue" in ui.text("en", "prefill_prompt", per=4, models=2, total=8, message="Hi")


def test_pool_table_shows_every_state():
    import io

    from rich.console import Console

    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(
        ui.pool_table({"m": {"total": 5, "idle": 1, "busy": 2, "cooling": 1, "retired": 1, "waiting": 3}}, "en"))
    row = next(line for line in out.getvalue().splitlines() if line.strip().startswith("│ m") or " m " in line)
    assert [c for c in row.replace("│", " ").split() if c.isdigit()] == ["5", "1", "2", "1", "1", "3"]


