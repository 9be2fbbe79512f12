"""The mirror's matcher: continue, regenerate, edit, new, what clients do to an answer; bounds; hashes only."""

from __future__ import annotations

import json

from pool_store.storage import TinyPoolStore
from relay.mirror_book import (
    ClientConversation,
    MirrorBook,
    chains,
    fingerprint,
    link,
    normalize,
    write_transcript,
)
from sites.lmarena import ChatTurn

ANSWER = "<think>Let me think.</think>Paris is the capital.\n\nSources:\n1. [France](https://example.org/fr)"


def t(role: str, text: str) -> ChatTurn:
    return ChatTurn(role, text)


def answered(book: MirrorBook, turns: list[ChatTurn], answer: str, key: str = "k1") -> ClientConversation:
    """What the mirror remembers once the site answered `turns` with `answer`."""
    asked = chains(turns)[-1]
    record = ClientConversation(key, "m", "session-" + key, asked, link(asked, fingerprint(t("assistant", answer))))
    book.remember(record)
    return record


FIRST = [t("system", "You are Ann."), t("user", "Capital of France?")]


def test_a_request_that_continues_an_earlier_one_posts_only_its_new_messages():
    book = MirrorBook()
    record = answered(book, FIRST, ANSWER)
    follow = FIRST + [t("assistant", ANSWER), t("user", "And of Spain?")]
    match = book.match(follow)
    assert (match.kind, match.record, [m.content for m in match.new_turns]) == ("continue", record, ["And of Spain?"])


def test_what_clients_do_to_an_answer_they_display_still_continues():
    book = MirrorBook()
    answered(book, FIRST, ANSWER)
    for shown in ("Paris is the capital.\n\nSources:\n1. [France](https://example.org/fr)",  # think block dropped
                  "  Paris is the capital.   \n\nSources:\n1. [France](https://example.org/fr)\n",  # whitespace
                  "Paris is the capital."):  # the appended sources dropped too
        assert book.match(FIRST + [t("assistant", shown), t("user", "Next?")]).kind == "continue", shown
    assert normalize(ANSWER) == "Paris is the capital."


def test_the_same_request_again_is_a_regenerate_and_an_edit_is_a_new_conversation():
    book = MirrorBook()
    record = answered(book, FIRST, ANSWER)
    assert book.match(list(FIRST)).kind == "regenerate" and book.match(list(FIRST)).record is record
    edited = [t("system", "You are Ann."), t("user", "Capital of Italy?")]
    assert book.match(edited).kind == "new"
    changed_answer = FIRST + [t("assistant", "Lyon."), t("user", "Sure?")]
    assert book.match(changed_answer).kind == "new", "a history that differs from what the site holds"
    assert book.match([t("user", "Hi")]).kind == "new"


def test_the_longest_earlier_transcript_wins():
    book = MirrorBook()
    answered(book, FIRST, ANSWER, key="short")
    second = FIRST + [t("assistant", ANSWER), t("user", "And of Spain?")]
    longer = answered(book, second, "Madrid.", key="long")
    third = second + [t("assistant", "Madrid."), t("user", "And of Portugal?")]
    match = book.match(third)
    assert match.record is longer and [m.content for m in match.new_turns] == ["And of Portugal?"]


def test_an_answer_not_known_makes_the_same_request_a_regenerate():
    book = MirrorBook()
    asked = chains(FIRST)[-1]
    book.remember(ClientConversation("k", "m", "s", asked, None))  # its answer broke off
    assert book.match(list(FIRST)).kind == "regenerate"
    assert book.match(FIRST + [t("assistant", "half an ans"), t("user", "go on")]).kind == "new"


def test_bounds_forget_the_least_recently_used_and_the_old():
    now = [1000.0]
    book = MirrorBook(limit=2, ttl=100, clock=lambda: now[0])
    for key in ("a", "b"):
        answered(book, [t("user", key)], "x", key=key)
        now[0] += 1
    gone = book.remember(ClientConversation("c", "m", "session-c", chains([t("user", "c")])[-1], None))
    assert [g.key for g in gone] == ["a"] and set(book.records) == {"b", "c"}
    now[0] += 500
    gone = book.remember(ClientConversation("d", "m", "session-d", chains([t("user", "d")])[-1], None))
    assert {g.key for g in gone} == {"b", "c"} and set(book.records) == {"d"}


def test_the_book_is_kept_in_the_pool_file_as_hashes_only(tmp_path):
    path = tmp_path / "pool.json"
    store = TinyPoolStore(str(path))
    book = MirrorBook()
    book.use_store(store)
    answered(book, [t("system", "secret system prompt"), t("user", "my private question")], "private answer")
    store.close()
    text = path.read_text("utf-8")
    assert "private" not in text and "secret" not in text
    again = MirrorBook()
    again.use_store(TinyPoolStore(str(path)))
    assert again.match([t("system", "secret system prompt"), t("user", "my private question")]).kind == "regenerate"
    assert json.loads(text)["mirrors"]


def test_history_is_written_once_in_the_documented_format():
    assert write_transcript([t("user", "Just this")]).content == "Just this"
    written = write_transcript([t("system", "Card"), t("user", "Hi"), t("assistant", "Hello"), t("user", "Go")])
    assert written.role == "user" and written.content == (
        "[The conversation so far. Answer its last user message as the assistant.]\n\n"
        "=== System ===\nCard\n\n=== User ===\nHi\n\n=== Assistant ===\nHello\n\n=== User ===\nGo")
    image = ChatTurn("user", "look", [{"name": "a.png", "contentType": "image/png", "url": "data:image/png;base64,AA"}])
    assert write_transcript([t("system", "S"), image]).attachments == image.attachments
    assert fingerprint(image) != fingerprint(t("user", "look")), "attachments are part of a message"


def test_a_conversation_that_moved_on_is_not_matched_by_its_old_first_message():
    book = MirrorBook()
    first = [ChatTurn("user", "What is the weather in Paris?")]
    record = ClientConversation("c1", "m", "s1", chains(first)[-1], None, 1, 0.0, 0.0)
    book.remember(record)
    later = [*first, ChatTurn("assistant", "<tool_call>...</tool_call>"), ChatTurn("user", "18 C")]
    record.asked = chains(later)[-1]  # the caller updates the record, then remembers it again
    book.remember(record)
    assert book.match(first).kind == "new", "another client starting the same way is a new conversation"
    assert book.match(later).kind == "regenerate"
