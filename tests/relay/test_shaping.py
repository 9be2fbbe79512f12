"""Tavern and bypass modes: what the site sees of a client's conversation."""

from __future__ import annotations

from relay.shaping import shape
from sites.lmarena import ChatTurn


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
