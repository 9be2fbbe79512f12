"""Side calls: what a chat client asks next to the person's own message (a title, tags, follow-up
questions, a search query, an autocompletion, a summary), recognised by the task prompts clients send.

Each costs the site a whole answer, and it usually arrives just before or after the person's message, on
the same model: with few conversations, the person's first token would wait for it. So a side call waits
`arena_side_call_delay` seconds and then behind every other request (`arena_side_calls=defer`, the default),
or goes to another model (`arena_side_calls=<model>`), or is refused (`refuse`) so the client falls back to
its own default; `same` treats it as any request.
"""

from __future__ import annotations

import re

from sites.lmarena import ChatTurn

# (what, how its prompt starts): matched against the last message, whatever its role
SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    # Open WebUI's task prompts: title, tags, follow-ups, search and retrieval queries, autocomplete, emoji
    ("open-webui task", re.compile(r"^\s*###\s*Task:", re.I)),
    # SillyTavern's quiet prompts (the Summarize extension's, and the like)
    ("sillytavern quiet prompt", re.compile(r"^\s*\[Pause your roleplay", re.I)),
    # LibreChat's and Lobe Chat's title prompts, and others in their shape
    ("title prompt", re.compile(r"^\s*(Please\s+)?(generate|create|write)\s+a\s+(concise\s+|short\s+)?title\b", re.I)),
)
ROUTES = ("defer", "same", "refuse")  # or the name of a model


def side_call(turns: list[ChatTurn]) -> str | None:
    """What kind of side call these turns are, or None for a person's own request."""
    if not turns:
        return None
    last = turns[-1].content
    for name, pattern in SHAPES:
        if pattern.search(last):
            return name
    return None
