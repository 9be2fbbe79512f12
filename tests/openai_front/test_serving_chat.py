"""Answer shaping on the real samples: reasoning, citations, images, battle sides; chunks' JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from openai_front.serving_chat import Answer, ChunkJSON
from relay.jobs import JobDone
from relay.output import OutputSpec
from relay.reading import AnswerReader
from relay.settings import Settings
from sites import lmarena as site

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def sample_events(name: str) -> list[site.StreamEvent]:
    body = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))[0]["response_body"]
    return site.parse_stream(body.encode())


class Lines:
    """The engine's side of a replay, in a test: the answer's lines, then its end."""

    def __init__(self, events: list[site.StreamEvent]) -> None:
        self.events = events
        self.stopped = False

    async def items(self, replay):
        for event in self.events:
            yield event
        yield JobDone()

    def stop_early(self, replay) -> None:
        self.stopped = True


def answer_of(events: list[site.StreamEvent], side: str = "a", spec: OutputSpec | None = None,
              **settings: object) -> Answer:
    replay = SimpleNamespace(side=side, turns=[], model=None, record=None)
    return Answer(Settings(**settings), AnswerReader(Lines(events), replay, spec or OutputSpec()))  # type: ignore


def run(events: list[site.StreamEvent], side: str = "a", **settings: object) -> Answer:
    answer = answer_of(events, side, **settings)

    async def read() -> None:
        async for _ in answer.deltas():
            pass

    asyncio.run(read())
    return answer


def test_reasoning_stays_out_of_the_content():
    answer = run(sample_events("era_b_thinking_create"))
    assert answer.reasoning().startswith("哦，用户只发了一个简单的问候")
    assert answer.content().startswith("你好！👋") and "用户只发了" not in answer.content()


def test_reasoning_inline_as_think_tags():
    answer = run(sample_events("era_b_thinking_create"), reasoning_as_think=True)
    content = answer.content()
    assert content.startswith("<think>哦，用户") and "</think>\n\n你好！👋" in content
    assert answer.reasoning() == "" and content.count("<think>") == 1 and content.count("</think>") == 1


def test_search_sources_are_appended_and_kept():
    answer = run(sample_events("era_b_search_create"))
    assert [s["url"] for s in answer.sources] == [
        "https://blog.google/products/gemini/gemini-3/",
        "https://blog.google/products/search/gemini-3-search-ai-mode/",
        "https://deepmind.google/models/",
    ]
    assert answer.sources[0]["title"] == "A new era of intelligence with Gemini 3"
    assert answer.content().endswith(
        "\n\nSources:\n1. [A new era of intelligence with Gemini 3](https://blog.google/products/gemini/gemini-3/)\n"
        "2. [Google Search with Gemini 3: Our most intelligent search yet]"
        "(https://blog.google/products/search/gemini-3-search-ai-mode/)\n3. [Models](https://deepmind.google/models/)"
    )
    off = run(sample_events("era_b_search_create"), citations=False)
    assert "Sources:" not in off.content() and len(off.sources) == 3, "still available in the citations field"
    assert answer.finish_reason() == "stop", "the site's 'unknown' finish maps to stop"


def test_an_image_answer_is_a_markdown_image():
    answer = run(sample_events("era_b_image_create"))
    assert answer.images and answer.content() == f"![image]({answer.images[0]})"


def test_battle_answer_keeps_to_its_side():
    b = run(sample_events("era_a_battle_create"), side="b")
    assert b.content() == "hello" and b.finish_reason() == "stop"


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["role", "content", "reasoning_content"]), st.text() | st.none()),
       st.sampled_from([None, "stop", "length", "content_filter"]), st.text())
def test_a_chunk_encoded_from_its_shared_part_is_the_chunk(delta, finish, model):
    chunks = ChunkJSON({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model})
    assert json.loads(chunks.delta(delta, finish)) == chunks.chunk(delta, finish)
