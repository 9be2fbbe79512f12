"""Who failed, as the request log (and so the dashboard and the journal) records it: the site, the tool,
the page, the proxy or the client's own request; and no strategy for a request that never reached the site."""

from __future__ import annotations

import asyncio

import openai
import pytest

from pool_store.pool import Conversation
from relay.jobs import JobFailed, ToolFailure
from sites import lmarena as site
from tests.openai_front import test_app
from tests.openai_front.test_app import MESSAGES, MODEL

services, page, client, raw = test_app.services, test_app.page, test_app.client, test_app.raw


def last(services) -> dict:
    return services.requests.recent()[-1]


async def test_the_site_s_429_is_the_site_s(client, page, services):
    page.failure = JobFailed("rate limited", 429, site.FailureKind.RATE_LIMITED, source="upstream", retry_after=30)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    record = last(services)
    assert (record["status"], record["error_source"], record["strategy"]) == (429, "upstream", "retry")


async def test_a_queue_that_stayed_full_is_the_tool_s_and_was_never_sent(client, page, services):
    services.settings.queue_timeout = 0.2
    lease = await services.pool.lease(MODEL, timeout=1)
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    services.pool.release(lease)
    record = last(services)
    assert (record["status"], record["error_source"], record["strategy"]) == (429, "tool", None)


async def test_a_bad_request_is_the_client_s(raw, page, services):
    response = await raw.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "n": 3})
    assert response.status_code == 400
    assert (last(services)["error_source"], last(services)["strategy"]) == ("client", None)


async def test_no_page_is_the_page_s(raw, services):
    services.pool.upsert(Conversation("s1", "m1", MODEL, identity="user:1"))
    services.settings.page_wait = 0.1
    response = await raw.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES})
    assert response.status_code == 503 and last(services)["error_source"] == "page"


async def test_a_page_that_could_not_send_is_the_page_s_and_a_proxy_bug_the_proxy_s(client, page, services):
    page.failure = JobFailed("fetch failed", 502, ToolFailure.PAGE_ERROR, source="page")
    services.settings.failover_tries = 1
    with pytest.raises(openai.APIStatusError):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert last(services)["error_source"] == "page"
    page.failure = JobFailed("could not write", 500, ToolFailure.TOOL_ERROR, source="proxy")
    with pytest.raises(openai.InternalServerError):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    await asyncio.sleep(0)
    assert last(services)["error_source"] == "proxy"
