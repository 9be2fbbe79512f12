"""The simulator's answers: deterministic, and cut into chunks the way a network may cut them."""

from __future__ import annotations

from simulator.answers import answer_for, digest, split_chunks


def test_an_answer_is_a_function_of_the_model_and_the_conversation():
    history = [("system", "S"), ("user", "Hello")]
    _, text, image = answer_for("m", "chat", history)
    assert text == answer_for("m", "chat", list(history))[1] and image is None
    assert f"digest={digest(history)}" in text and "You said: Hello" in text
    assert answer_for("m", "chat", history + [("assistant", "x"), ("user", "Hello")])[1] != text
    _, empty, picture = answer_for("m", "image", history)
    assert empty == "" and picture and digest(history) in picture


def test_chunks_split_lines_and_utf8_characters_but_rejoin_exactly():
    lines = ['a0:"你好 👋 "', 'a0:"there"', 'ad:{"finishReason":"stop"}']
    chunks = split_chunks(lines)
    joined = b"".join(chunks)
    assert joined == "".join(line + "\n" for line in lines).encode()
    assert any(not c.endswith(b"\n") for c in chunks), "some chunk ends inside a line"
    broken = 0
    for c in chunks:
        try:
            c.decode("utf-8")
        except UnicodeDecodeError:
            broken += 1
    assert broken, "some chunk ends inside a UTF-8 character"


def test_the_simulated_model_follows_tool_and_json_instructions():
    from relay.output import OutputSpec, ToolSpec, with_instructions
    from simulator.answers import structured_answer
    from sites.lmarena import ChatTurn

    weather = ToolSpec("get_weather", "", {"type": "object", "properties": {"city": {"type": "string"}},
                                           "required": ["city"]})

    def answer(turns: list[ChatTurn], spec: OutputSpec) -> str | None:
        return structured_answer([(t.role, t.content) for t in with_instructions(turns, spec)])

    ask = [ChatTurn("user", "What is the weather in Paris?")]
    assert answer(ask, OutputSpec(tools=[weather])) == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>')
    assert answer([ChatTurn("user", "Hello")], OutputSpec(tools=[weather])) is None, "nothing asks for the tool"
    assert answer([ChatTurn("user", "Hello")], OutputSpec(tools=[weather], tool_choice="required")) is not None
    result = [*ask, ChatTurn("assistant", "<tool_call>…</tool_call>"),
              ChatTurn("user", "[Tool result of get_weather (call c1)]\n18 C")]
    assert answer(result, OutputSpec(tools=[weather])) == "The tool get_weather answered: 18 C"
    schema = {"type": "object", "properties": {"n": {"type": "integer"}, "tag": {"enum": ["a", "b"]}}}
    assert answer([ChatTurn("user", "Count to 3")], OutputSpec(json="schema", schema=schema)) == '{"n": 3, "tag": "a"}'
    assert answer([ChatTurn("user", "JSON with keys city and temp: city=Rome temp=20")],
                  OutputSpec(json="object")) == '{"city": "Rome", "temp": 20}'
