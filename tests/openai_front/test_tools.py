"""Tools, JSON output and limits through the API (the openai SDK against the app, a stand-in page that
answers each job with given site lines): what the site is sent, and what the client gets back."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from relay.output import CALL_CLOSE, CALL_OPEN
from tests.openai_front import test_app
from tests.openai_front.test_app import MODEL

services, page, client, raw = test_app.services, test_app.page, test_app.client, test_app.raw

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "Weather in Paris?"}]


def lines(*texts: str) -> str:
    """The site's lines for an answer made of these text pieces."""
    return "".join(f"a0:{json.dumps(t)}\n" for t in texts) + 'ad:{"finishReason":"stop"}\n'


def call(name: str, **arguments: object) -> str:
    return CALL_OPEN + json.dumps({"name": name, "arguments": arguments}) + CALL_CLOSE


async def test_a_forced_tool_call_comes_back_as_tool_calls(client, page):
    page.script = lines("Sure. ", call("get_weather", city="Paris")[:20], call("get_weather", city="Paris")[20:])
    result = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER],
                                                  tool_choice={"type": "function", "function": {"name": "get_weather"}})
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Sure. "
    [tool_call] = choice.message.tool_calls
    assert tool_call.function.name == "get_weather" and json.loads(tool_call.function.arguments) == {"city": "Paris"}
    assert tool_call.id.startswith("call_") and tool_call.type == "function"
    system = page.turns[-1][0]
    assert system.role == "system" and "You must call the tool 'get_weather'" in system.content


async def test_streamed_tool_calls_accumulate_as_the_sdk_expects(client, page):
    page.script = lines(call("get_weather", city="Oslo"), call("get_weather", city="Rome"))
    stream = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], stream=True)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        delta = chunk.choices[0].delta if chunk.choices else None
        for tc in (delta.tool_calls or []) if delta else []:
            entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
            entry["name"] += tc.function.name or ""
            entry["arguments"] += tc.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == [
        ("get_weather", {"city": "Oslo"}), ("get_weather", {"city": "Rome"})]


async def test_no_call_made_up_and_none_when_asked_for_none(client, page):
    page.script = lines("I would use <tool_call>{broken</tool_call> but here is text.")
    result = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER])
    assert result.choices[0].finish_reason == "stop" and not result.choices[0].message.tool_calls
    assert result.choices[0].message.content == "I would use <tool_call>{broken</tool_call> but here is text."
    page.script = lines(call("get_weather", city="Oslo"))
    result = await client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="none")
    assert not result.choices[0].message.tool_calls and "# Tools" not in page.turns[-1][0].content


async def test_tool_history_is_written_back_as_labelled_text(client, page):
    messages = [*ASK,
                {"role": "assistant", "content": None, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                      "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18 C, sunny"}]
    await client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    sent = page.turns[-1]
    assert [t.role for t in sent] == ["system", "user", "assistant", "user"]
    assert sent[2].content == call("get_weather", city="Paris")
    assert sent[3].content == "[Tool result of get_weather (call call_1)]\n18 C, sunny"


async def test_max_tokens_cuts_the_answer_and_stops_the_site(client, page):
    page.script = lines(*(w + " " for w in "one two three four five six seven eight nine ten".split()))
    page.delay = 0.01  # still streaming when the budget is reached
    result = await client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=3)
    assert result.choices[0].message.content == "one two thre" and result.choices[0].finish_reason == "length"
    await asyncio.sleep(0.05)
    assert any(m["type"] == "abort" for m in page.sent), "the site's generation is stopped"


async def test_a_stop_string_ends_the_stream_before_it(client, page, services):
    page.script = lines("alpha ", "beta ", "gam", "ma delta")
    stream = await client.chat.completions.create(model=MODEL, messages=ASK, stop=["gamma", "zeta"], stream=True)
    text, finish = "", None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    assert text == "alpha beta " and finish == "stop"
    assert services.pool.stats()[MODEL]["busy"] == 0 and services.pool.stats()[MODEL]["ready"] == 1


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "temp": {"type": "integer"}},
          "required": ["city", "temp"], "additionalProperties": False}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA, "strict": True}}


async def test_json_that_fails_the_schema_is_asked_for_once_more(client, page):
    page.scripts = [lines('{"city": "Paris", "temp": "warm"}'), lines('```json\n{"city": "Paris", "temp": 18}\n```')]
    result = await client.chat.completions.create(model=MODEL, messages=ASK, response_format=JSON_SCHEMA)
    assert json.loads(result.choices[0].message.content) == {"city": "Paris", "temp": 18}
    retry = page.turns[-1]
    assert retry[-2].role == "assistant" and retry[-2].content == '{"city": "Paris", "temp": "warm"}'
    assert retry[-1].role == "user" and "$.temp: expected integer, got string" in retry[-1].content
    assert "matches this JSON Schema" in retry[0].content


async def test_json_still_wrong_after_the_retry_is_a_clear_error(client, page, services):
    page.scripts = [lines("Sure! Here it is"), lines("still not json")]
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model=MODEL, messages=ASK, response_format={"type": "json_object"})
    assert caught.value.status_code == 502 and caught.value.code == "invalid_output"
    assert "not the JSON asked for, also after one retry" in caught.value.message
    assert services.pool.stats()[MODEL]["busy"] == 0


@pytest.mark.parametrize("extra, param", [
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
    ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "tools[0].function.name"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
])
async def test_what_cannot_be_done_is_a_400_naming_the_field(client, page, extra, param):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=ASK, **extra)
    assert caught.value.body["param"] == param


async def test_a_model_is_retrieved_by_name_and_a_missing_one_is_model_not_found(client, page):
    model = await client.models.retrieve(MODEL)
    assert model.id == MODEL and model.model_extra["pooled_conversations"] == 1
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


async def test_models_with_conversations_come_first_then_by_name(client, page):
    ids = [m.id async for m in client.models.list()]
    assert ids[0] == MODEL, "the one model with a pooled conversation first"
    rest = ids[1:]
    assert rest == sorted(rest, key=str.lower)


async def test_targets_are_only_what_the_user_asked_to_keep_stocked(raw, page, services):
    await raw.post("/v1/chat/completions", json={"model": "gpt-5-high", "messages": ASK})
    assert (await raw.get("/api/targets")).json()["models"] == [], "a request alone adds no target"
    assert (await raw.post("/api/targets", json={"model": "gpt-5-high"})).json()["models"] == ["gpt-5-high"]
    assert (await raw.delete("/api/targets/gpt-5-high")).json()["models"] == []
    assert (await raw.delete("/api/targets/gpt-5-high")).status_code == 404
