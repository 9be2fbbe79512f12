"""OpenAI messages reduced to the site's turns: content parts, files, and the inline size limit."""

from __future__ import annotations

import base64

import pytest

from openai_front.errors import InvalidRequest, TooLarge
from openai_front.protocol import MAX_INLINE_BYTES, ChatMessage, to_turns


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
