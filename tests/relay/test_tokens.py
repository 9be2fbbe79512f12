"""Tokens a step ahead (relay/tokens.py): the page is asked to mint when a request arrives that will be
sent at once, with the action of the call it will make; never for a request that waits; and a job after a
reCAPTCHA refusal takes no token minted ahead."""

from __future__ import annotations

import asyncio

from relay.core import assemble
from relay.jobs import JobFailed
from relay.settings import Strategy
from sites import lmarena as site
from tests.openai_front import test_app
from tests.openai_front.test_app import MESSAGES, MODEL

# the API's test fixtures: a fake page that answers jobs, one pooled conversation, an SDK client
services, page, client = test_app.services, test_app.page, test_app.client


def kinds(page) -> list[str]:
    return [m["type"] for m in page.sent]


async def test_a_request_served_at_once_has_its_token_minted_on_arrival(client, page):
    await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert kinds(page)[:2] == ["mint", "job"], "the mint is asked for before the job is written"
    mint, job = page.sent[0], page.sent[1]
    assert mint["action"] == job["action"] == site.ACTION_RETRY
    assert job["ahead"] is True


async def test_a_request_that_waits_mints_only_when_its_turn_comes(client, page, services):
    lease = await services.pool.lease(MODEL, timeout=1)  # the one conversation is busy
    waiting = asyncio.ensure_future(client.chat.completions.create(model=MODEL, messages=MESSAGES))
    await asyncio.sleep(0.1)
    assert "mint" not in kinds(page) and services.pool.waiting(MODEL) == 1
    services.pool.release(lease)
    await waiting
    assert kinds(page) == ["job"], "no token was minted ahead for a request that had to wait"


async def test_a_new_conversation_mints_with_the_submit_action(client, page, services):
    services.pool.retire("s1", "gone")  # nothing to replay: the request creates a conversation
    page.script = 'a0:"Hi"\nad:{"finishReason":"stop"}\n'
    await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    mint = next(m for m in page.sent if m["type"] == "mint")
    job = next(m for m in page.sent if m["type"] == "job")
    assert mint["action"] == job["action"] == site.ACTION_SUBMIT


async def test_after_a_refused_token_the_second_try_mints_its_own(client, page, services):
    refused = JobFailed("recaptcha validation failed", 403, site.FailureKind.RECAPTCHA, source="upstream")
    page.fail_once["s1"] = [refused]
    await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    jobs = [m for m in page.sent if m["type"] == "job"]
    assert [j["ahead"] for j in jobs] == [True, False]


async def test_keep_tokens_reaches_connected_pages_and_the_welcome(services, page):
    await services.pages.set_keep_tokens(1)
    assert page.sent[-1] == {"type": "reserve", "keep": 1}
    assert services.pages.keep_tokens == 1


async def test_mirroring_mints_for_a_free_slot_only(services, page):
    engine = assemble(services).engine
    model = services.models.resolve(MODEL)
    await engine.tokens.on_arrival(model, Strategy.MIRROR)
    assert kinds(page) == ["mint"] and page.sent[0]["action"] == site.ACTION_SUBMIT
    held = [await engine.slots.acquire(MODEL, 1) for _ in range(services.settings.sessions_per_model)]
    await engine.tokens.on_arrival(model, Strategy.MIRROR)
    assert kinds(page) == ["mint"], "no free slot: the request will wait, so nothing is minted for it"
    for slot in held:
        engine.slots.release(slot)
