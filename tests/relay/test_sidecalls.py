"""Side calls (relay/sidecalls.py): recognised by the task prompts clients send, deferred behind the person's
own requests, sent to another model, or refused, as arena_side_calls says."""

from __future__ import annotations

import asyncio

import openai
import pytest

from pool_store.pool import Conversation, SessionPool
from relay.sidecalls import side_call
from sites.lmarena import ChatTurn
from tests.openai_front import test_app
from tests.openai_front.test_app import MODEL

services, page, client = test_app.services, test_app.page, test_app.client

# the shapes as the clients send them (Open WebUI 0.12's default task templates, SillyTavern's Summarize)
TITLE = ("### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n"
         "### Guidelines:\n- Write the title in the chat's primary language\n### Output:\nJSON format: "
         '{ "title": "your concise title here" }\n### Chat History:\n<chat_history>\nUSER: Hi\n</chat_history>')
FOLLOW_UPS = "### Task:\nSuggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next"
SUMMARY = "[Pause your roleplay. Summarize the most important facts and events in the story so far.]"


@pytest.mark.parametrize("text, kind", [
    (TITLE, "open-webui task"), (FOLLOW_UPS, "open-webui task"), (SUMMARY, "sillytavern quiet prompt"),
    ("Generate a concise title for this conversation.", "title prompt"),
    ("What is a task? ### Task: is how Open WebUI starts them", None),
    ("Please summarise our chat", None),
])
def test_side_calls_are_recognised_by_their_prompts(text, kind):
    assert side_call([ChatTurn("system", "You are helpful."), ChatTurn("user", text)]) == kind


async def test_a_background_waiter_lets_a_later_request_go_first():
    pool = SessionPool()
    pool.upsert(Conversation("s1", "m1", MODEL))
    held = await pool.lease(MODEL, 1)
    order: list[str] = []

    async def wait(name: str, background: bool) -> None:
        lease = await pool.lease(MODEL, 5, background=background)
        order.append(name)
        pool.release(lease)

    side = asyncio.ensure_future(wait("title", True))
    await asyncio.sleep(0.01)
    chat = asyncio.ensure_future(wait("chat", False))
    await asyncio.sleep(0.01)
    pool.release(held)
    await asyncio.gather(side, chat)
    assert order == ["chat", "title"]


async def test_a_title_request_just_before_the_chat_does_not_hold_up_its_first_token(client, page, services):
    services.settings.side_call_delay = 0.3
    page.delay = 0.05  # each answer takes a while
    title = asyncio.ensure_future(client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": TITLE}]))
    await asyncio.sleep(0.05)  # the chat comes a moment later, as Open WebUI sends them
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    await title
    recent = services.requests.recent()
    chat, side = (next(r for r in recent if r["side_call"] is None), next(r for r in recent if r["side_call"]))
    assert side["side_call"] == "open-webui task"
    assert chat["leased_at"] < side["leased_at"], "the person's request took the one conversation first"


async def test_side_calls_refused_or_sent_to_another_model(client, page, services):
    services.settings.side_calls = "refuse"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": TITLE}])
    assert caught.value.code == "side_call_refused"
    services.settings.side_calls, services.settings.side_call_delay = "gpt-5-high", 0
    services.pool.upsert(Conversation("s2", "m2", "gpt-5-high", model_id="id2", identity="user:1"))
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": TITLE}])
    record = services.requests.recent()[-1]
    assert record["model"] == "gpt-5-high" and record["conversation"] == "s2"
    services.settings.side_calls = "same"
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": TITLE}])
    assert services.requests.recent()[-1]["side_call"] is None and services.requests.recent()[-1]["model"] == MODEL
