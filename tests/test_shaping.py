"""Shaping of requests and answers: reasoning, citations and images on the real samples; tavern and
bypass modes; file parts and the inline size limit; model aliases; route prefix; per-client rate limit."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest

from openai_front.app import create_app
from openai_front.errors import InvalidRequest
from openai_front.models import ModelRegistry
from openai_front.protocol import MAX_INLINE_BYTES, ChatMessage, TooLarge, to_turns
from openai_front.ratelimit import RateLimiter
from openai_front.services import Services, Settings
from openai_front.serving_chat import Answer
from openai_front.shaping import shape
from sites import lmarena as site
from sites.lmarena import ChatTurn

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def sample_events(name: str) -> list[site.StreamEvent]:
    body = json.loads((FIXTURES / f"{name}.json").read_text("utf-8"))[0]["response_body"]
    return site.parse_stream(body.encode())


def run(events: list[site.StreamEvent], **settings: object) -> Answer:
    answer = Answer(Settings(**settings), "a")  # type: ignore[arg-type]
    for event in events:
        answer.feed(event)
    answer.close()
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
    assert answer.finish == "stop", "the site's 'unknown' finish maps to stop"


def test_an_image_answer_is_a_markdown_image():
    answer = run(sample_events("era_b_image_create"))
    assert answer.images and answer.content() == f"![image]({answer.images[0]})"


def test_battle_answer_keeps_to_its_side():
    events = sample_events("era_a_battle_create")
    b = Answer(Settings(), "b")
    for event in events:
        b.feed(event)
    assert b.content() == "hello" and b.finish == "stop"


def turns(*pairs: tuple[str, str]) -> list[ChatTurn]:
    return [ChatTurn(role, content) for role, content in pairs]


def test_tavern_mode_merges_system_messages_into_one_leading_message():
    shaped = shape(turns(("user", "u1"), ("system", "s1"), ("assistant", "a1"), ("system", "s2"), ("user", "u2")),
                   "chat", tavern_mode=True, bypass_mode=False)
    assert [(t.role, t.content) for t in shaped] == [("system", "s1\n\ns2"), ("user", "u1"), ("assistant", "a1"),
                                                     ("user", "u2")]


def test_bypass_mode_adds_an_empty_user_message_for_text_only():
    text = shape(turns(("user", "hi")), "chat", tavern_mode=False, bypass_mode=True)
    assert [(t.role, t.content) for t in text] == [("user", "hi"), ("user", " ")]
    image = shape(turns(("user", "a cat")), "image", tavern_mode=False, bypass_mode=True)
    assert [(t.role, t.content) for t in image] == [("user", "a cat")]


def test_bypass_suffix_moves_images_before_the_prompt():
    last = ChatTurn("user", "make it blue --bypass", [{"name": "x.png", "contentType": "image/png", "url": "data:,"}])
    shaped = shape([last], "image", tavern_mode=False, bypass_mode=True)
    assert [(t.role, t.content, len(t.attachments)) for t in shaped] == [
        ("user", "Hi", 0), ("assistant", "", 1), ("user", "make it blue", 0)]


def data_url(size: int, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(b"x" * size).decode()


def test_image_and_file_parts_become_attachments():
    msg = ChatMessage(role="user", content=[
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": data_url(10)}},
        {"type": "image_url", "image_url": {"url": "https://example.org/cat.jpg"}},
        {"type": "file", "file": {"file_data": data_url(10, "application/pdf"), "filename": "paper.pdf"}},
    ])
    [turn] = to_turns([msg])
    assert turn.content == "look"
    assert [(a["name"], a["contentType"]) for a in turn.attachments] == [
        ("file_0.png", "image/png"), ("file_1.png", "image/png"), ("paper.pdf", "application/pdf")]


def test_a_file_over_the_site_limit_is_413_before_anything_is_sent():
    too_big = data_url(MAX_INLINE_BYTES + 10)
    big = ChatMessage(role="user", content=[{"type": "image_url", "image_url": {"url": too_big}}])
    with pytest.raises(TooLarge) as caught:
        to_turns([big])
    assert caught.value.status == 413 and "5 MB" in caught.value.message
    with pytest.raises(InvalidRequest):
        to_turns([ChatMessage(role="user", content=[{"type": "file", "file": {"file_id": "file-123"}}])])


def test_aliases_without_date_suffix_and_configured():
    registry = ModelRegistry()
    assert registry.resolve("claude-opus-4").name == "claude-opus-4-20250514"
    assert registry.resolve("CLAUDE-OPUS-4").name == "claude-opus-4-20250514"
    registry.set_aliases({"fast": "gemini-2.5-flash"}, auto=False)
    assert registry.resolve("fast").name == "gemini-2.5-flash" and registry.resolve("claude-opus-4") is None


def test_rate_limiter_window():
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])
    assert limiter.check("a") is None and limiter.check("a") is None
    assert limiter.check("a") == pytest.approx(60.0)
    assert limiter.check("b") is None, "clients are counted apart"
    now[0] = 60.5
    assert limiter.check("a") is None


async def test_route_prefix_and_rate_limit_through_the_app():
    services = Services(Settings(route_prefix="/arena", rate_limit=1))
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/arena/v1/models")).status_code == 200
        assert (await client.get("/v1/models")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
        body = {"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]}
        first = await client.post("/arena/v1/chat/completions", json=body)
        assert first.status_code == 503  # no page: counted all the same
        second = await client.post("/arena/v1/chat/completions", json=body)
        assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
        other = await client.post("/arena/v1/chat/completions", json=body, headers={"Authorization": "Bearer k2"})
        assert other.status_code == 503, "another client has its own budget"
