"""Mirroring, served through the API to the openai SDK, with a stand-in for the page, the proxy and a site
that keeps its conversations' history (what the simulator's history-kept and 2026 generations do, end to
end in tests/e2e/test_e2e_mirror.py)."""

from __future__ import annotations

import asyncio
import json
import uuid

import openai
import pytest

from pool_store.pool import Conversation
from relay.jobs import JobDone
from relay.pages import Page
from relay.services import Services
from relay.settings import Settings, Strategy
from sites import lmarena as site
from tests.inprocess import api_sdk

MODEL = "gemini-2.5-pro"


class HistorySite:
    """The page, the proxy and a history-keeping site in one: each job is answered from the site
    conversation it names, as the site would after the proxy wrote the job's body."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.history: dict[str, list[tuple[str, str]]] = {}
        self.calls: list[tuple[str, str]] = []  # (call, session)
        self.in_flight = 0
        self.max_in_flight = 0
        self.delay = 0.0
        self.tasks: set[asyncio.Task[None]] = set()

    def seed(self, count: int) -> None:
        for _ in range(count):  # prefilled: "Hi" and a greeting
            sid = str(uuid.uuid4())
            self.history[sid] = [("user", "Hi"), ("assistant", "Hello!")]
            self.services.pool.upsert(Conversation(sid, "m-" + sid, MODEL, model_id="id", identity="user:1",
                                                   source="tool", mode="direct-battle", greeting_only=True))

    async def send_text(self, text: str) -> None:
        message = json.loads(text)
        if message["type"] == "job":
            task = asyncio.get_running_loop().create_task(self._answer(message["job"]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _answer(self, job_id: str) -> None:
        job = self.services.jobs.get(job_id)
        assert job is not None
        job.flow_seen = True
        if job.call == "create":
            job.session_id = str(uuid.uuid4())
            self.history[job.session_id] = []
        sid = job.target_session or ""
        self.calls.append((job.call, sid))
        history = self.history[sid]
        if job.call == "retry":
            assert job.keep_body, "a regenerate goes as the page wrote it: token only"
            history.pop()
        else:
            history.append(("user", site.flatten_turns(job.turns)))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            answer = f"[{MODEL}] {history[-1][1][-60:]} (turns={len(history)})"
            history.append(("assistant", answer))
            if job.call == "create":
                self.services.pool.upsert(Conversation(sid, "m-" + sid, MODEL, model_id="id", identity="user:1",
                                                       source="tool", owner=job.owner, mode="direct-battle"))
            for event in site.parse_stream(f'a0:{json.dumps(answer)}\nad:{{"finishReason":"stop"}}\n'.encode()):
                job.push(event)
            job.push(JobDone())
        finally:
            self.in_flight -= 1


@pytest.fixture
def services() -> Services:
    s = Services(Settings(queue_timeout=5, upstream_timeout=5, sessions_per_model=4))
    s.strategy.mode = str(Strategy.MIRROR)
    return s


@pytest.fixture
def fake(services: Services) -> HistorySite:
    sock = HistorySite(services)
    services.pages.pages["p1"] = Page("p1", "user:1", "https://arena.ai/", "ready", ws=sock)  # type: ignore[arg-type]
    return sock


@pytest.fixture
async def client(services: Services):
    async with api_sdk(services) as sdk:
        yield sdk


async def ask(client: openai.AsyncOpenAI, messages: list[dict[str, str]]) -> str:
    result = await client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    return result.choices[0].message.content or ""


async def test_a_conversation_adopts_a_pooled_one_and_continues_it_turn_by_turn(services, fake, client):
    fake.seed(2)
    messages = [{"role": "user", "content": "one"}]
    for n in ("two", "three", "four"):
        answer = await ask(client, messages)
        messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": n}]
    await ask(client, messages)
    [sid] = {s for _, s in fake.calls}
    assert [c for c, _ in fake.calls] == ["post"] * 4
    # the site holds each turn once: the greeting, then one message per turn, never the transcript again
    assert [text for role, text in fake.history[sid] if role == "user"] == ["Hi", "one", "two", "three", "four"]
    conv = services.pool.get(sid)
    assert conv is not None and conv.owner is not None and services.pool.servable_count(MODEL) == 1
    assert [r["turns"] for r in services.mirrors.describe()] == [4]


async def test_a_regenerate_is_the_site_s_retry_and_the_conversation_goes_on_from_the_new_answer(services, fake,
                                                                                                   client):
    fake.seed(1)
    first = [{"role": "user", "content": "tell me a joke"}]
    await ask(client, first)
    again = await ask(client, first)  # the client's "regenerate"
    assert [c for c, _ in fake.calls] == ["post", "retry"]
    [sid] = {s for _, s in fake.calls}
    assert len(fake.history[sid]) == 4, "the answer was replaced, not added to"
    await ask(client, first + [{"role": "assistant", "content": again}, {"role": "user", "content": "another"}])
    assert fake.calls[-1] == ("post", sid)


async def test_two_client_conversations_never_share_a_site_conversation(services, fake, client):
    fake.seed(4)
    x = [{"role": "user", "content": "X: nonce-xxx"}]
    y = [{"role": "system", "content": "You are Y"}, {"role": "user", "content": "Y: nonce-yyy"}]
    ax, ay = await ask(client, x), await ask(client, y)
    ax2 = await ask(client, x + [{"role": "assistant", "content": ax}, {"role": "user", "content": "X again"}])
    ay2 = await ask(client, y + [{"role": "assistant", "content": ay}, {"role": "user", "content": "Y again"}])
    sessions = {s for _, s in fake.calls}
    assert len(sessions) == 2
    for sid in sessions:
        text = json.dumps(fake.history[sid])
        assert ("nonce-xxx" in text) != ("nonce-yyy" in text), "each site conversation holds one client's text"
    assert "nonce-xxx" not in ay2 and "nonce-yyy" not in ax2
    # a first request with history is written once, in the documented format
    y_session = next(s for s in sessions if "nonce-yyy" in json.dumps(fake.history[s]))
    assert fake.history[y_session][2][1].startswith("[The conversation so far.")


async def test_eight_conversations_on_four_pooled_ones_never_put_more_than_four_requests_at_the_site(
        services, fake, client):
    fake.seed(4)
    fake.delay = 0.05
    answers = await asyncio.gather(*(ask(client, [{"role": "user", "content": f"conversation {i}"}])
                                     for i in range(8)))
    assert all(f"conversation {i}" in a for i, a in enumerate(answers))
    assert fake.max_in_flight == 4
    assert len({s for _, s in fake.calls}) == 8, "each client conversation has a site conversation of its own"
    assert [c for c, _ in fake.calls].count("create") == 4, "four adopted, four new ones carrying their request"
    assert all(c.owner is not None for c in services.pool)


async def test_two_requests_of_one_conversation_at_once_are_served_one_after_the_other(services, fake, client):
    fake.seed(1)
    fake.delay = 0.05
    first = [{"role": "user", "content": "hello"}]
    await ask(client, first)
    follow = first + [{"role": "assistant", "content": fake.history[fake.calls[0][1]][-1][1]},
                      {"role": "user", "content": "twice"}]
    await asyncio.gather(ask(client, follow), ask(client, follow))
    assert fake.max_in_flight == 1
    assert [c for c, _ in fake.calls] == ["post", "post", "retry"], "the second one regenerates the first's answer"


async def test_a_conversation_whose_site_conversation_is_gone_moves_to_a_new_one_with_its_history(
        services, fake, client):
    fake.seed(2)
    first = [{"role": "user", "content": "remember: 42"}]
    answer = await ask(client, first)
    services.pool.retire(fake.calls[0][1], "gone")
    await ask(client, first + [{"role": "assistant", "content": answer}, {"role": "user", "content": "what number?"}])
    new_session = fake.calls[-1][1]
    assert new_session != fake.calls[0][1]
    written = fake.history[new_session][2][1]
    assert "remember: 42" in written and "what number?" in written, "the whole conversation, once"


async def test_only_a_conversation_holding_just_the_prefill_greeting_is_ever_adopted(services, fake, client):
    person = Conversation("person-chat", "m", MODEL, model_id="id", identity="user:1", source="captured",
                          mode="direct-battle")
    services.pool.upsert(person)
    fake.history["person-chat"] = [("user", "my own private chat"), ("assistant", "...")]
    await ask(client, [{"role": "user", "content": "a client's question"}])
    assert fake.calls[-1][0] == "create", "the person's chat is never given to a client conversation"
    assert services.pool.get("person-chat").owner is None
