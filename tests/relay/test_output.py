"""Tool calls, JSON and limits on an answer (relay/output.py, relay/schema_check.py): parsed as the text
streams, at every split of it; nothing made up; cut where the client said."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relay import schema_check
from relay.output import (
    CALL_CLOSE,
    CALL_OPEN,
    Limiter,
    OutputFilter,
    OutputSpec,
    ToolSpec,
    check_json,
    estimate_tokens,
    with_instructions,
)
from sites.lmarena import ChatTurn

WEATHER = ToolSpec("get_weather", "The weather in a city.",
                   {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
TIME = ToolSpec("get_time", "The time in a city.", {"type": "object", "properties": {"city": {"type": "string"}}})


def run(spec: OutputSpec, text: str, cuts: list[int] | None = None) -> tuple[str, list[tuple[str, dict]], str]:
    """Feed `text` cut at `cuts`; the shown text, the calls (name, arguments), and the finish reason."""
    out = OutputFilter(spec)
    bounds = [0, *(cuts or []), len(text)]
    pieces = []
    for a, b in zip(bounds, bounds[1:]):
        pieces += out.feed(text[a:b])
        if out.done:
            break
    pieces += out.close()
    shown = "".join(p[1] for p in pieces if p[0] == "text")
    calls = [(p[1].name, p[1].arguments) for p in pieces if p[0] == "call"]
    return shown, calls, out.finish("stop")


def block(name: str, **arguments: object) -> str:
    return f"{CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments})}{CALL_CLOSE}"


ANSWER = "Let me check. " + block("get_weather", city="Paris") + block("get_time", city="Paris")


@pytest.mark.parametrize("cut", range(0, len(ANSWER), 3))
def test_calls_are_parsed_wherever_the_stream_is_cut(cut):
    spec = OutputSpec(tools=[WEATHER, TIME])
    shown, calls, finish = run(spec, ANSWER, [cut])
    assert shown == "Let me check. "
    assert calls == [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Paris"})]
    assert finish == "tool_calls"


@given(st.lists(st.integers(min_value=0, max_value=len(ANSWER)), max_size=8).map(sorted))
@settings(max_examples=200, deadline=None)
def test_calls_are_parsed_at_any_set_of_cuts(cuts):
    assert run(OutputSpec(tools=[WEATHER, TIME]), ANSWER, cuts)[1:] == (
        [("get_weather", {"city": "Paris"}), ("get_time", {"city": "Paris"})], "tool_calls")


@pytest.mark.parametrize("text", [
    "I would call <tool_call>{not json}</tool_call> here.",
    "Unknown: " + block("launch_rockets", target="moon"),
    "Arguments not an object: <tool_call>{\"name\": \"get_weather\", \"arguments\": [1]}</tool_call>",
    "Talk about <tool_call without closing",
    "x < y and a <tool_ call",
])
def test_what_does_not_parse_stays_text_and_no_call_is_made_up(text):
    shown, calls, finish = run(OutputSpec(tools=[WEATHER]), text)
    assert calls == [] and finish == "stop"
    assert shown == text


def test_lenient_where_models_often_slip_but_never_inventive():
    fenced = CALL_OPEN + '```json\n{"name": "get_weather", "arguments": "{\\"city\\": \\"Oslo\\"}"}\n```' + CALL_CLOSE
    assert run(OutputSpec(tools=[WEATHER]), fenced)[1] == [("get_weather", {"city": "Oslo"})]
    unclosed = CALL_OPEN + '{"name": "get_weather", "arguments": {"city": "Rome"}}'
    assert run(OutputSpec(tools=[WEATHER]), unclosed)[1] == [("get_weather", {"city": "Rome"})]


def test_one_call_when_parallel_calls_are_off_and_none_when_tools_are_off():
    assert run(OutputSpec(tools=[WEATHER, TIME], parallel=False), ANSWER)[1] == [("get_weather", {"city": "Paris"})]
    shown, calls, _ = run(OutputSpec(tools=[WEATHER], tool_choice="none"), ANSWER)
    assert calls == [] and shown == ANSWER


def test_instructions_go_into_the_leading_system_turn():
    spec = OutputSpec(tools=[WEATHER], tool_choice="get_weather", parallel=False)
    turns = with_instructions([ChatTurn("system", "Be brief."), ChatTurn("user", "Hi")], spec)
    assert [t.role for t in turns] == ["system", "user"]
    assert turns[0].content.startswith("Be brief.\n\n# Tools")
    assert "You must call the tool 'get_weather'" in turns[0].content and "at most one tool" in turns[0].content
    assert json.dumps(WEATHER.parameters) in turns[0].content
    assert with_instructions([ChatTurn("user", "Hi")], OutputSpec(json="object"))[0].role == "system"
    assert with_instructions([ChatTurn("user", "Hi")], OutputSpec()) == [ChatTurn("user", "Hi")]


@pytest.mark.parametrize("cut", range(0, 40, 2))
def test_a_stop_string_ends_the_text_before_it_wherever_it_is_cut(cut):
    text = "one two three STOP four five"
    shown, _, finish = run(OutputSpec(stop=["STOP", "never"]), text, [cut])
    assert shown == "one two three " and finish == "stop"


def test_the_token_budget_cuts_the_text_and_says_length():
    shown, _, finish = run(OutputSpec(max_tokens=3), "abcdefghijklmnopqrstuvwxyz", [5, 11])
    assert shown == "abcdefghijkl" and finish == "length" and estimate_tokens(shown) == 3
    shown, _, finish = run(OutputSpec(max_tokens=2), "你好世界")
    assert shown == "你好" and finish == "length"
    shown, _, finish = run(OutputSpec(max_tokens=50), "short")
    assert shown == "short" and finish == "stop"


def test_a_held_back_partial_stop_string_is_shown_when_it_is_not_one():
    limiter = Limiter(None, ["END"])
    assert limiter.feed("the EN") == "the "
    assert limiter.feed("D") == "" and limiter.finish == "stop"
    limiter = Limiter(None, ["END"])
    assert limiter.feed("the EN") == "the " and limiter.feed("trance") == "ENtrance" and limiter.finish is None


def test_text_before_a_call_is_checked_against_the_limits_too():
    shown, calls, finish = run(OutputSpec(tools=[WEATHER], stop=["X"]), "aXb" + block("get_weather", city="A"))
    assert shown == "a" and calls == [] and finish == "stop"


def test_json_is_held_until_the_end_and_checked():
    spec = OutputSpec(json="schema", schema={"type": "object", "properties": {"n": {"type": "integer"}},
                                             "required": ["n"], "additionalProperties": False})
    assert run(spec, '{"n": 1}')[0] == "", "nothing is shown before the whole answer is checked"
    assert check_json('```json\n{"n": 3}\n```', spec) == ('{"n": 3}', None)
    assert check_json('{"n": "3"}', spec)[1] == (
        "the answer does not match the schema: $.n: expected integer, got string")
    assert "not valid JSON" in (check_json("Sure! {", spec)[1] or "")
    assert check_json("[1]", OutputSpec(json="object"))[1] == "the answer is JSON but not an object"


PERSON = {
    "$defs": {"Pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}, "required": ["kind"]}},
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "age": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
        "pets": {"type": "array", "items": {"$ref": "#/$defs/Pet"}, "maxItems": 2},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("value, errors", [
    ({"name": "Ann", "age": 3, "pets": [{"kind": "cat"}]}, []),
    ({"name": "Ann", "age": None}, []),
    ({"name": "", "age": 3}, ["$.name: shorter than 1 characters"]),
    ({"name": "Ann"}, ["$: missing required property 'age'"]),
    ({"name": "Ann", "age": -1}, ["$.age: matches none of the allowed shapes (anyOf)"]),
    ({"name": "Ann", "age": 1, "pets": [{"kind": "fish"}]}, ["$.pets[0].kind: must be one of ['cat', 'dog']"]),
    ({"name": "Ann", "age": 1, "x": 1}, ["$: property 'x' is not allowed"]),
    ({"name": True, "age": 1.0}, ["$.name: expected string, got boolean"]),
])
def test_the_schema_keywords_clients_use(value, errors):
    assert schema_check.check(value, PERSON) == errors
