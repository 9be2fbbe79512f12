"""What a client asks of an answer beyond its text: tools the model may call, JSON it must be, where it stops.

The site knows none of these, so (as the best tools of 2026 do) they are asked for in the conversation the
site sees, and the answer is read back:

- **Tools**: the tools' schemas and one strict call format go into a system turn; calls in that format are
  parsed out of the answer as it streams (`ToolCallParser`). A block that does not parse, or names a tool that
  was not offered, stays text: no call is ever made up. Earlier calls and their results are written back into
  the conversation as labelled text (`call_text`, `result_text`).
- **JSON** (`response_format`): asked for in the same system turn, checked when the answer is whole
  (`check_json`, against the schema for the keywords relay/schema_check.py knows); the caller retries once
  with the error, then gives up with a clear error.
- **Limits**: stop strings and the token budget (`max_tokens`, an estimate: one token per CJK character, one
  per four others) cut the text as it streams (`Limiter`); the caller then stops the site's generation.

Protocol-neutral: the OpenAI and the Anthropic surfaces both build an `OutputSpec` and read `Piece`s.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from typing import Any, Literal

from relay import schema_check
from sites.lmarena import ChatTurn

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
MAX_CALL_CHARS = 200_000  # a block longer than this is not a call


def estimate_tokens(text: str) -> int:
    """Rough count when the site gives none: one token per CJK character, one per four other characters."""
    cjk = sum(1 for ch in text if _cjk(ch))
    return cjk + (len(text) - cjk + 3) // 4


def _cjk(ch: str) -> bool:
    return "\u3000" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]

    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass
class OutputSpec:
    tools: list[ToolSpec] = field(default_factory=list)
    tool_choice: str = "auto"  # auto | none | required | the name of one tool
    parallel: bool = True
    json: Literal["object", "schema"] | None = None
    schema: dict[str, Any] | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)

    @property
    def calls_tools(self) -> bool:
        return bool(self.tools) and self.tool_choice != "none"

    @property
    def limited(self) -> bool:
        return self.max_tokens is not None or bool(self.stop)


Piece = tuple[Literal["text"], str] | tuple[Literal["call"], ToolCall]


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


# ---------------------------------------------------------------------------------------- the conversation

def instructions(spec: OutputSpec) -> str | None:
    """The system text that asks the model for tool calls and JSON, or None when nothing is asked."""
    parts: list[str] = []
    if spec.calls_tools:
        example = f'{CALL_OPEN}{{"name": "<tool name>", "arguments": {{<arguments>}}}}{CALL_CLOSE}'
        choice = {
            "auto": "Call a tool only when it helps to answer; otherwise answer in plain text.",
            "required": "You must call at least one tool in this answer.",
        }.get(spec.tool_choice, f"You must call the tool {spec.tool_choice!r} in this answer.")
        lines = [
            "# Tools",
            "You can call tools (functions) that the user's application runs for you. To call one, write exactly",
            example,
            "with the arguments as one JSON object that follows the tool's schema, and write nothing after your "
            "tool calls: their results come back in the next message.",
            "You may call several tools, one block after another." if spec.parallel
            else "Call at most one tool in an answer.",
            choice,
            "Available tools:",
        ]
        for tool in spec.tools:
            lines.append(f"- {tool.name}: {tool.description.strip() or '(no description)'}")
            lines.append(f"  arguments schema: {json.dumps(tool.parameters or {}, ensure_ascii=False)}")
        parts.append("\n".join(lines))
    if spec.json == "object":
        parts.append("# Answer format\nAnswer with one JSON object only: no text before or after it, no code fence.")
    elif spec.json == "schema":
        parts.append("# Answer format\nAnswer with one JSON value only (no text before or after it, no code fence) "
                     "that matches this JSON Schema:\n" + json.dumps(spec.schema or {}, ensure_ascii=False))
    return "\n\n".join(parts) or None


def with_instructions(turns: list[ChatTurn], spec: OutputSpec) -> list[ChatTurn]:
    """The turns with the instructions in the leading system turn (added if there is none)."""
    text = instructions(spec)
    if text is None:
        return turns
    if turns and turns[0].role == "system":
        first = turns[0]
        return [ChatTurn("system", f"{first.content}\n\n{text}" if first.content.strip() else text,
                         first.attachments), *turns[1:]]
    return [ChatTurn("system", text), *turns]


def call_text(name: str, arguments: Any) -> str:
    """An earlier tool call, written back as the model wrote it."""
    return f"{CALL_OPEN}{json.dumps({'name': name, 'arguments': arguments}, ensure_ascii=False)}{CALL_CLOSE}"


def result_text(name: str | None, call_id: str | None, content: str) -> str:
    """A tool's result, written back as a labelled message."""
    label = f"[Tool result of {name or 'a tool'}{f' (call {call_id})' if call_id else ''}]"
    return f"{label}\n{content}"


# ---------------------------------------------------------------------------------------- the answer

class ToolCallParser:
    """Tool calls out of an answer's text as it streams. Text that may be the start of a call is held back
    until it is clear; a block that does not parse, or names a tool not offered, is given back as text."""

    def __init__(self, spec: OutputSpec) -> None:
        self.names = {tool.name for tool in spec.tools}
        self.parallel = spec.parallel
        self.calls: list[ToolCall] = []
        self._buf = ""
        self._in_call = False

    def feed(self, text: str) -> list[Piece]:
        self._buf += text
        out: list[Piece] = []
        while True:
            if self._in_call:
                end = self._buf.find(CALL_CLOSE)
                if end < 0:
                    if len(self._buf) > MAX_CALL_CHARS:  # never closes: it was text
                        out.append(("text", CALL_OPEN + self._buf))
                        self._buf, self._in_call = "", False
                    return out
                body, self._buf = self._buf[:end], self._buf[end + len(CALL_CLOSE):]
                self._in_call = False
                out.extend(self._block(body, CALL_OPEN + body + CALL_CLOSE))
                continue
            start = self._buf.find(CALL_OPEN)
            if start >= 0:
                if start:
                    out.append(("text", self._buf[:start]))
                self._buf, self._in_call = self._buf[start + len(CALL_OPEN):], True
                continue
            keep = _partial_suffix(self._buf, (CALL_OPEN,))
            if len(self._buf) > keep:
                out.append(("text", self._buf[: len(self._buf) - keep]))
                self._buf = self._buf[len(self._buf) - keep:]
            return out

    def close(self) -> list[Piece]:
        """The rest: a block left open is a call if what follows its opening parses whole, else text."""
        rest, self._buf = self._buf, ""
        if self._in_call:
            self._in_call = False
            return self._block(rest, CALL_OPEN + rest)
        return [("text", rest)] if rest else []

    def _block(self, body: str, raw: str) -> list[Piece]:
        call = self._parse(body)
        if call is None:
            return [("text", raw)]
        if self.calls and not self.parallel:
            return []  # one call was asked for: later ones are not made
        self.calls.append(call)
        return [("call", call)]

    def _parse(self, body: str) -> ToolCall | None:
        text = _unfence(body.strip())
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("name") not in self.names:
            return None
        arguments = data.get("arguments", data.get("parameters", {}))
        if isinstance(arguments, str):  # some models write the arguments as a JSON string
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                return None
        if not isinstance(arguments, dict):
            return None
        return ToolCall(new_call_id(), str(data["name"]), arguments)


class Limiter:
    """Stop strings and a token budget on streamed text: what may be shown now, and why it ended."""

    def __init__(self, max_tokens: int | None, stop: list[str]) -> None:
        self.max_tokens = max_tokens
        self.stop = [s for s in stop if s]
        self.finish: Literal["stop", "length"] | None = None
        self.matched: str | None = None  # the stop string that ended the text
        self._pending = ""
        self._cjk = 0
        self._other = 0

    def feed(self, text: str) -> str:
        if self.finish is not None:
            return ""
        self._pending += text
        hits = sorted((i, s) for s in self.stop if (i := self._pending.find(s)) >= 0)
        if hits:
            shown, self._pending = self._pending[: hits[0][0]], ""
            self.matched = hits[0][1]
            out = self._budget(shown)
            self.finish = self.finish or "stop"
            return out
        keep = _partial_suffix(self._pending, self.stop)
        shown, self._pending = self._pending[: len(self._pending) - keep], self._pending[len(self._pending) - keep:]
        return self._budget(shown)

    def flush(self) -> str:
        """Held-back text that can no longer start a stop string (the text ended, or a tool call follows)."""
        if self.finish is not None:
            return ""
        shown, self._pending = self._pending, ""
        return self._budget(shown)

    def _budget(self, text: str) -> str:
        if self.max_tokens is None or not text:
            return text
        for index, ch in enumerate(text):
            cjk, other = self._cjk + _cjk(ch), self._other + (not _cjk(ch))
            if cjk + (other + 3) // 4 > self.max_tokens:
                self.finish = "length"
                return text[:index]
            self._cjk, self._other = cjk, other
        return text


class OutputFilter:
    """An answer's text through the tool-call parser and the limits, as `Piece`s. In JSON mode the text is
    held until the end (a JSON answer is checked whole before anything is shown)."""

    def __init__(self, spec: OutputSpec) -> None:
        self.spec = spec
        self.parser = ToolCallParser(spec) if spec.calls_tools else None
        self.limiter = Limiter(spec.max_tokens, spec.stop) if spec.limited and not spec.json else None
        self.held: list[str] = []  # JSON mode: the whole text
        self.calls: list[ToolCall] = []  # the calls given to the client

    @property
    def done(self) -> bool:
        """Nothing more will be shown: the caller may stop the site's generation."""
        return self.limiter is not None and self.limiter.finish is not None

    @property
    def stopped_by(self) -> str | None:
        """The stop string that ended the text, if one did (and not the token budget before it)."""
        limiter = self.limiter
        return limiter.matched if limiter is not None and limiter.finish == "stop" else None

    def finish(self, site_finish: str) -> str:
        if self.calls:
            return "tool_calls"
        if self.limiter is not None and self.limiter.finish is not None:
            return self.limiter.finish
        return site_finish

    def feed(self, text: str) -> list[Piece]:
        if self.spec.json:
            self.held.append(text)
            return []
        pieces: list[Piece] = self.parser.feed(text) if self.parser else [("text", text)]
        return self._limit(pieces)

    def close(self) -> list[Piece]:
        if self.spec.json:
            return []
        pieces = self.parser.close() if self.parser else []
        out = self._limit(pieces)
        if self.limiter is not None:
            rest = self.limiter.flush()
            if rest:
                out.append(("text", rest))
        return out

    def _limit(self, pieces: list[Piece]) -> list[Piece]:
        out = self._cut(pieces)
        self.calls.extend(p[1] for p in out if p[0] == "call")
        return out

    def _cut(self, pieces: list[Piece]) -> list[Piece]:
        if self.limiter is None:
            return [p for p in pieces if p[0] == "call" or p[1]]
        out: list[Piece] = []
        for piece in pieces:
            if self.limiter.finish is not None:
                break
            if piece[0] == "call":
                rest = self.limiter.flush()
                if rest:
                    out.append(("text", rest))
                out.append(piece)
            else:
                shown = self.limiter.feed(piece[1])
                if shown:
                    out.append(("text", shown))
        return out


def check_json(text: str, spec: OutputSpec) -> tuple[str | None, str | None]:
    """(the JSON text to show, None) when the answer is what was asked for, else (None, what is wrong)."""
    body = _unfence(text.strip())
    try:
        value = json.loads(body)
    except ValueError as e:
        return None, f"the answer is not valid JSON ({e})"
    if spec.json == "object" and not isinstance(value, dict):
        return None, "the answer is JSON but not an object"
    if spec.json == "schema" and spec.schema:
        errors = schema_check.check(value, spec.schema)
        if errors:
            return None, "the answer does not match the schema: " + "; ".join(errors)
    return body, None


def correction(error: str, spec: OutputSpec) -> str:
    """The message that asks once more for what the format says."""
    what = "one JSON object" if spec.json == "object" else "one JSON value matching the schema"
    return f"{error[:500]}. Answer again with {what} only: no text before or after it, no code fence."


def _unfence(text: str) -> str:
    if text.startswith("```") and text.endswith("```") and len(text) >= 6:
        inner = text[3:-3]
        first, _, rest = inner.partition("\n")
        return (rest if first.strip().isalpha() or not first.strip() else inner).strip()
    return text


def _partial_suffix(text: str, needles: tuple[str, ...] | list[str]) -> int:
    """The length of the longest end of `text` that is the start of one of `needles` (held back: it may
    turn into one)."""
    best = 0
    for needle in needles:
        for size in range(min(len(needle) - 1, len(text)), best, -1):
            if needle.startswith(text[-size:]):
                best = size
                break
    return best
