"""The Anthropic Messages API through the official anthropic SDK (against the app, a stand-in page that answers
each job with given site lines): text, streaming events, tool use, stop sequences, errors, the key header."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest

from openai_front.app import create_app
from relay.core import assemble
from relay.output import CALL_CLOSE, CALL_OPEN
from tests.openai_front import test_app
from tests.openai_front.test_app import MODEL

services, page = test_app.services, test_app.page

WEATHER = {"name": "get_weather", "description": "The weather in a city.",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def lines(*texts: str, reasoning: str = "") -> str:
    head = f"ag:{json.dumps(reasoning)}\n" if reasoning else ""
    return head + "".join(f"a0:{json.dumps(t)}\n" for t in texts) + 'ad:{"finishReason":"stop"}\n'


@pytest.fixture
async def claude(services):
    services.settings.api_keys = ["sk-test"]
    transport = httpx2.ASGITransport(app=create_app(assemble(services)))  # the anthropic SDK's HTTP client
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as http_client:
        yield anthropic.AsyncAnthropic(base_url="http://test", api_key="sk-test", http_client=http_client,
                                       max_retries=0)


async def test_a_message_with_a_system_prompt(claude, page):
    page.script = lines("Hello ", "there.", reasoning="Thinking it over")
    message = await claude.messages.create(model=MODEL, max_tokens=100, system="Be brief.",
                                           messages=[{"role": "user", "content": "Hi"}])
    assert message.role == "assistant" and message.stop_reason == "end_turn" and message.model == MODEL
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[0].thinking == "Thinking it over" and message.content[1].text == "Hello there."
    assert message.usage.output_tokens > 0 and message.usage.input_tokens > 0
    assert [(t.role, t.content) for t in page.turns[-1]] == [("system", "Be brief."), ("user", "Hi")]


async def test_streamed_events_build_the_same_message(claude, page):
    page.script = lines("Hello ", "there.")
    async with claude.messages.stream(model=MODEL, max_tokens=100,
                                      messages=[{"role": "user", "content": "Hi"}]) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()
    assert texts == ["Hello ", "there."]
    assert final.content[0].text == "Hello there." and final.stop_reason == "end_turn"


async def test_tool_use_and_its_result(claude, page):
    page.script = lines("Checking. ", CALL_OPEN + json.dumps({"name": "get_weather", "arguments": {"city": "Oslo"}})
                        + CALL_CLOSE)
    async with claude.messages.stream(model=MODEL, max_tokens=200, tools=[WEATHER],
                                      messages=[{"role": "user", "content": "Weather in Oslo?"}]) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    text, use = final.content
    assert text.text == "Checking. " and use.type == "tool_use" and use.name == "get_weather"
    assert use.input == {"city": "Oslo"} and use.id.startswith("toolu_")
    page.script = lines("It is 5 C in Oslo.")
    answer = await claude.messages.create(model=MODEL, max_tokens=100, tools=[WEATHER], messages=[
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": use.id, "name": "get_weather",
                                           "input": {"city": "Oslo"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "5 C"}]}])
    assert answer.content[0].text == "It is 5 C in Oslo."
    sent = page.turns[-1]
    assert sent[-1].content == f"[Tool result of get_weather (call {use.id})]\n5 C"
    assert "# Tools" in sent[0].content


async def test_a_stop_sequence_is_reported(claude, page):
    page.script = lines("one two ", "END three")
    message = await claude.messages.create(model=MODEL, max_tokens=100, stop_sequences=["END"],
                                           messages=[{"role": "user", "content": "Count"}])
    assert message.content[0].text == "one two "
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")


async def test_errors_have_anthropic_s_shape(claude, page, services):
    with pytest.raises(anthropic.NotFoundError) as missing:
        await claude.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        await claude.messages.create(model=MODEL, max_tokens=10, messages=[])
    assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"
    wrong = anthropic.AsyncAnthropic(base_url="http://test", api_key="sk-wrong", max_retries=0,
                                     http_client=claude._client)
    with pytest.raises(anthropic.AuthenticationError):
        await wrong.messages.create(model=MODEL, max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert services.pool.stats()[MODEL]["busy"] == 0


async def test_count_tokens(claude, page):
    counted = await claude.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "a" * 40}])
    assert counted.input_tokens == 10
