"""End to end with the real client packages: tools, structured output, limits, side calls and the Anthropic API,
against the 2026 simulator through a signed-in Chromium page, the proxy and the API (mirroring chosen by the
canary, as for a user).

Clients, unmodified from the registries: the openai Python SDK, LangChain (langchain-openai), the openai Node
SDK (tests/node, `npm ci`), the anthropic Python SDK; Open WebUI's side calls with its request shapes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel

from simulator.stack import Stack, sign_in
from tests.conftest import open_arena_page, running_stack, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"
NODE_DIR = Path(__file__).resolve().parent.parent / "node"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("clients", "2026", cadence_ms=2, arena_prefill="off", arena_canary_interval=900,
                       arena_page_wait=2, arena_sessions_per_model=1) as st:
        yield st


@pytest.fixture(scope="module")
def page(stack: Stack, browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = open_arena_page(stack, context, "https://arena.ai/text/direct")
    sign_in(tab)
    stack.wait_page_connected()
    # the first request of a new pool is sent fresh, and gives the canary its conversation: wait for its verdict
    sdk(stack).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}])
    wait_until(lambda: httpx.get(stack.api_base + "/api/strategy", timeout=10).json()["current"] == "mirror",
               timeout=30, what="the canary's verdict")
    yield tab
    context.close()


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_base + "/v1", api_key="unused", max_retries=0, timeout=60)


def last_request(stack: Stack) -> dict[str, Any]:
    return httpx.get(stack.api_base + "/api/requests?limit=1", timeout=10).json()["requests"][0]


def test_openai_python_tool_loop_continues_the_same_site_conversation(stack, page):
    client = sdk(stack)
    messages: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [choice.message, {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"}]
    second = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER])
    assert second.choices[0].message.content == "The tool get_weather answered: 18 C and sunny"
    assert last_request(stack)["strategy"] == "mirror/continue", "the tool's result went on in the same conversation"


def test_openai_python_streamed_tool_calls(stack, page):
    stream = sdk(stack).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Weather in Rome?"}], tools=[WEATHER], stream=True,
        tool_choice="required")
    name, arguments, finish = "", "", None
    for chunk in stream:
        for tc in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            name += tc.function.name or ""
            arguments += tc.function.arguments or ""
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert (name, json.loads(arguments), finish) == ("get_weather", {"city": "Rome"}, "tool_calls")


class Weather(BaseModel):
    city: str
    temp: int


def test_langchain_agent_loop_and_structured_output_in_all_three_methods(stack, page):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"21 C in {city}"

    llm = ChatOpenAI(model=MODEL, base_url=stack.api_base + "/v1", api_key="unused", max_retries=0, timeout=60)
    agent = llm.bind_tools([get_weather])
    history: list[Any] = [HumanMessage("How is the weather in Lisbon?")]
    asked = agent.invoke(history)
    assert [(c["name"], c["args"]) for c in asked.tool_calls] == [("get_weather", {"city": "Lisbon"})]
    history += [asked, ToolMessage(get_weather.invoke(asked.tool_calls[0]["args"]),
                                   tool_call_id=asked.tool_calls[0]["id"])]
    assert agent.invoke(history).content == "The tool get_weather answered: 21 C in Lisbon"

    prompt = "Give the weather report as JSON with keys city and temp: city=Madrid temp=31"
    for method in ("function_calling", "json_mode", "json_schema"):
        result = llm.with_structured_output(Weather, method=method).invoke(prompt)
        assert result == Weather(city="Madrid", temp=31), method


def node_scenario(stack: Stack, scenario: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "node is missing: apt-get install nodejs npm (scripts/test.sh does)"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "npm ci --prefix tests/node (scripts/test.sh does)"
    done = subprocess.run([node, str(NODE_DIR / "clients.mjs"), stack.api_base, scenario, MODEL],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_openai_node_sdk(stack, page):
    loop = node_scenario(stack, "toolLoop")
    assert loop == {"finish": "tool_calls", "name": "get_weather", "arguments": {"city": "Paris"},
                    "answer": "The tool get_weather answered: 18 C and sunny"}
    assert node_scenario(stack, "streamedTools") == {"finish": "tool_calls", "name": "get_weather",
                                                     "arguments": {"city": "Rome"}}
    models = node_scenario(stack, "models")
    assert models["id"] == MODEL and models["missing"] == {"status": 404, "code": "model_not_found"}
    assert models["first"] == MODEL, "the model with conversations is listed first"
    limits = node_scenario(stack, "limits")
    assert limits["cutFinish"] == "length" and len(limits["cut"]) <= 16
    assert limits["stoppedFinish"] == "stop" and "gamma" not in limits["stopped"]
    assert limits["stopped"].endswith("Say alpha beta ")


def test_a_token_budget_stops_the_site_s_generation(stack, page):
    httpx.post(stack.sim_base + "/__sim/config", json={"cadence_ms": 30}, timeout=10)
    try:
        stops_before = len(httpx.get(stack.sim_base + "/__sim/stops", timeout=10).json())
        result = sdk(stack).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "A long story please, about the sea and ships"}],
            max_tokens=3)
        assert result.choices[0].finish_reason == "length" and len(result.choices[0].message.content) <= 12
        wait_until(lambda: len(httpx.get(stack.sim_base + "/__sim/stops", timeout=10).json()) > stops_before,
                   timeout=10, what="the site's Stop call")
    finally:
        httpx.post(stack.sim_base + "/__sim/config", json={"cadence_ms": 2}, timeout=10)


def test_anthropic_sdk_tool_use_streaming_and_not(stack, page):
    claude = anthropic.Anthropic(base_url=stack.api_base, api_key="unused", max_retries=0)
    tools = [{"name": "get_weather", "description": "The weather in a city.",
              "input_schema": WEATHER["function"]["parameters"]}]  # type: ignore[index]
    with claude.messages.stream(model=MODEL, max_tokens=500, tools=tools,
                                messages=[{"role": "user", "content": "What's the weather in Oslo?"}]) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert (use.name, use.input) == ("get_weather", {"city": "Oslo"})
    second = claude.messages.create(model=MODEL, max_tokens=500, tools=tools, system="You are a weather bot.",
                                    messages=[{"role": "user", "content": "What's the weather in Oslo?"},
                                              {"role": "assistant", "content": first.content},
                                              {"role": "user", "content": [{"type": "tool_result",
                                                                            "tool_use_id": use.id,
                                                                            "content": "5 C"}]}])
    assert second.content[-1].text == "The tool get_weather answered: 5 C" and second.stop_reason == "end_turn"


OPEN_WEBUI_TITLE = ("### Task:\nGenerate a concise, 3-5 word title with an emoji summarizing the chat history.\n"
                    "### Output:\nJSON format: { \"title\": \"your concise title here\" }\n"
                    "### Chat History:\n<chat_history>\nUSER: Tell me about tides\n</chat_history>")


def test_open_webui_s_title_request_does_not_hold_up_the_person_s_answer(stack, page):
    httpx.post(stack.sim_base + "/__sim/config", json={"cadence_ms": 25}, timeout=10)  # answers of ~1 s
    try:
        titles: list[Any] = []
        title = threading.Thread(target=lambda: titles.append(sdk(stack).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": OPEN_WEBUI_TITLE}])))
        title.start()  # sent first, as Open WebUI does, with one conversation slot for the model
        time.sleep(0.15)
        t0 = time.monotonic()
        stream = sdk(stack).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Tell me about tides"}], stream=True)
        first_token = next(time.monotonic() - t0 for c in stream if c.choices and c.choices[0].delta.content)
        for _ in stream:
            pass
        title.join(30)
        assert titles and titles[0].choices[0].message.content
        records = httpx.get(stack.api_base + "/api/requests?limit=2", timeout=10).json()["requests"]
        side = next(r for r in records if r["side_call"])
        chat = next(r for r in records if not r["side_call"])
        assert side["side_call"] == "open-webui task"
        assert chat["first_token_at"] < side["first_token_at"], "the person's answer began first"
        assert first_token < 1.0, f"the first token waited {first_token:.2f} s (for the title's whole answer?)"
    finally:
        httpx.post(stack.sim_base + "/__sim/config", json={"cadence_ms": 2}, timeout=10)


def test_a_site_429_is_recorded_as_the_site_s_and_one_request_adds_no_target(stack, page):
    httpx.post(stack.sim_base + "/__sim/fault", json={"session": None, "status": 429, "body": '{"error":"limit"}',
                                                      "headers": {"retry-after": "30"}}, timeout=10)
    with pytest.raises(openai.RateLimitError):
        sdk(stack).chat.completions.create(model="gpt-5-high", messages=[{"role": "user", "content": "Hi"}])
    record = last_request(stack)
    assert (record["status"], record["error_source"]) == (429, "upstream")
    sessions = httpx.get(stack.sim_base + "/__sim/stats", timeout=10).json()["sessions"]
    sdk(stack).chat.completions.create(model="claude-opus-4-20250514", messages=[{"role": "user", "content": "Hi"}])
    assert httpx.get(stack.api_base + "/api/targets", timeout=10).json()["models"] == []
    time.sleep(1.0)
    assert httpx.get(stack.sim_base + "/__sim/stats", timeout=10).json()["sessions"] == sessions + 1, (
        "one new conversation for the one request, and no top-up of the model after it")
