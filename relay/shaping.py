"""Conversation shaping before the site sees it: LMArenaBridge's tavern and bypass modes.

- Tavern mode (for SillyTavern and the like, which scatter system prompts through the chat): all
  system messages are merged, in order, into one leading system message.
- Bypass mode: an extra user message " " at the end of a text conversation; and for images, a last
  user message ending in `--bypass` has its images moved into an assistant message before it.
"""

from __future__ import annotations

from dataclasses import replace

from sites.lmarena import ChatTurn

BYPASS_SUFFIX = "--bypass"


def tavern(turns: list[ChatTurn]) -> list[ChatTurn]:
    systems = [t for t in turns if t.role == "system"]
    if len(systems) <= 1 and (not systems or turns[0] is systems[0]):
        return turns
    merged = ChatTurn("system", "\n\n".join(t.content for t in systems if t.content.strip()),
                      [a for t in systems for a in t.attachments])
    return [merged] + [t for t in turns if t.role != "system"]


def bypass(turns: list[ChatTurn], modality: str) -> list[ChatTurn]:
    if not turns:
        return turns
    last = turns[-1]
    if last.role == "user" and last.content.rstrip().endswith(BYPASS_SUFFIX) and last.attachments:
        text = last.content.rstrip()[: -len(BYPASS_SUFFIX)].rstrip() or " "
        shaped = turns[:-1] + [ChatTurn("assistant", "", list(last.attachments)), ChatTurn("user", text)]
        if shaped[0].role == "assistant":
            shaped.insert(0, ChatTurn("user", "Hi"))
        return shaped
    if modality == "chat":
        return turns + [ChatTurn("user", " ")]
    return turns


def shape(turns: list[ChatTurn], modality: str, tavern_mode: bool, bypass_mode: bool) -> list[ChatTurn]:
    turns = [replace(t) for t in turns]
    if tavern_mode:
        turns = tavern(turns)
    if bypass_mode:
        turns = bypass(turns, modality)
    return turns
