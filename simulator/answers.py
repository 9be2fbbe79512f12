"""What the simulator answers: a pure function of the model and the conversation it received, so a
test can prove which conversation reached it; and how the answer's lines are cut into network chunks."""

from __future__ import annotations

import hashlib
import json
import re
import struct
import zlib
from typing import Any


def words(text: str) -> list[str]:
    """The answer's text deltas: a word each, with its trailing space."""
    parts = text.split(" ")
    return [w + (" " if i < len(parts) - 1 else "") for i, w in enumerate(parts)]


def interleave(into: list[str], other: list[str]) -> None:
    """Two sides' lines taken in turns, as a battle answer streams them."""
    merged: list[str] = []
    a, b = list(into), list(other)
    while a or b:
        if a:
            merged.append(a.pop(0))
        if b:
            merged.append(b.pop(0))
    into[:] = merged


def digest(history: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(history, ensure_ascii=False).encode()).hexdigest()[:10]


SIM_IMAGE_BASE = "https://messages-prod.sim.r2.cloudflarestorage.com/sim/"
SEARCH_SOURCES = [
    {"url": "https://example.org/arena/one", "id": "1", "title": "First source"},
    {"url": "https://example.org/arena/two", "id": "2", "title": "Second source"},
]


def _png_1x1() -> bytes:
    """A valid 1x1 PNG (one opaque pixel): what the simulator's image URLs return."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x5a\x8c\xd2\xff")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


PNG_1X1 = _png_1x1()


def answer_for(
    model: str, modality: str, history: list[tuple[str, str]], image_base: str = SIM_IMAGE_BASE
) -> tuple[list[str], str, str | None]:
    """The simulator's answer: a pure function of the model and the conversation it received."""
    last_user = next((c for r, c in reversed(history) if r == "user" and c.strip()), "")
    summary = last_user if len(last_user) <= 200 else last_user[:200] + "…"
    d = digest(history)
    text = structured_answer(history) or f"[{model}] You said: {summary} — 回答 ✓ (turns={len(history)}, digest={d})"
    reasoning: list[str] = []
    if "thinking" in model or "reason" in model:
        reasoning = ["", "Thinking ", "about ", "it… 🤔"]
    image = None
    if modality == "image":
        image = f"{image_base}{d}.png?X-Amz-Expires=3600"
        text = ""
    return reasoning, text, image


def split_chunks(lines: list[str]) -> list[bytes]:
    """Network chunks that cut every line, inside its first multi-byte UTF-8 character when it has
    one, a few bytes in otherwise, as a real connection may."""
    offsets = [3, 7, 1, 11, 5, 2]
    data = b""
    cuts = []
    for index, line in enumerate(lines):
        raw = (line + "\n").encode("utf-8")
        lead = next((j for j, byte in enumerate(raw) if byte >= 0xC0), None)
        cut = lead + 1 if lead is not None else min(len(raw) - 1, offsets[index % len(offsets)])
        cuts.append(len(data) + cut)
        data += raw
    bounds = [0] + cuts + [len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def answer_lines(side: str, modality: str, reasoning: list[str], text: str, image: str | None,
                 usage: dict[str, int] | None = None) -> list[str]:
    """One side's answer as the site's stream lines: reasoning, the image, the text a word a line (with
    citations between them for search), and the finish line (with token counts from 2026 on)."""
    part = [f"{side}g:{json.dumps(piece, ensure_ascii=False)}" for piece in reasoning]
    if image:
        part.append(f"{side}2:" + json.dumps([{"type": "image", "image": image, "mimeType": "image/png"}]))
    for index, piece in enumerate(words(text)):
        part.append(f"{side}0:{json.dumps(piece, ensure_ascii=False)}")
        if modality == "search" and index < len(SEARCH_SOURCES):
            # each source as it is cited, as the site does (see the search sample)
            delta = json.dumps({"source": {**SEARCH_SOURCES[index], "charLocation": [index]}})
            part.append(f"{side}c:" + json.dumps({"toolCallId": "citation-source", "argsTextDelta": delta}))
    if modality == "search":
        delta = json.dumps({"source": SEARCH_SOURCES})
        part.append(f"{side}c:" + json.dumps({"toolCallId": "citation-source", "argsTextDelta": delta}))
    finish: dict[str, object] = {"finishReason": "stop"}
    if usage is not None:
        finish["usage"] = usage
    part.append(f"{side}d:" + json.dumps(finish))
    return part


def with_heartbeats(lines: list[str], every: int) -> list[str]:
    """The 2026 keep-alive: a heartbeat line first (while the model thinks), then after every `every` lines."""
    beat = 'a2:[{"type":"heartbeat"}]'
    out = [beat]
    for index, line in enumerate(lines, 1):
        out.append(line)
        if index % every == 0:
            out.append(beat)
    return out


def uuid7_time(value: str) -> float | None:
    """The time (epoch seconds) inside a UUIDv7, or None for any other string."""
    hexits = value.replace("-", "")
    if len(hexits) != 32 or hexits[12] != "7":
        return None
    try:
        return int(hexits[:12], 16) / 1000
    except ValueError:
        return None


# ------------------------------------------------------------------------------------ tools and JSON

_TOOL_LINE = re.compile(r"^- ([A-Za-z0-9_-]+): .*\n  arguments schema: (.*)$", re.M)
_CALL_FORMAT = re.compile(r"^(<[a-z_]+>)\{.*\}(</[a-z_]+>)$", re.M)


def structured_answer(history: list[tuple[str, str]]) -> str | None:
    """What a model that follows the tool and JSON instructions it was given answers, decided by the
    conversation alone: a tool call when it must call one, or when the last message names a tool (its name,
    or a word of it longer than three letters: "weather" for get_weather); a sentence about a tool's result;
    a JSON value made from the asked schema."""
    system = "\n".join(c for _, c in history)  # what the model reads: instructions may be in any of it
    last = history[-1][1] if history else ""
    for marker in ("=== User ===\n", "User: "):  # a conversation written into one message: its last user message
        if marker in last:
            last = last.rsplit(marker, 1)[1]
            break
    calls = _tool_calls(system, last)
    if calls is not None:
        return calls
    if last.startswith("[Tool result of "):
        label, _, result = last.partition("\n")
        return f"The tool {label[len('[Tool result of '):].split(' ')[0].rstrip(']')} answered: {result}"
    if "# Answer format" in system:
        schema_text = system.split("matches this JSON Schema:\n", 1)
        if len(schema_text) == 2:
            return json.dumps(instance(json.loads(schema_text[1].split("\n", 1)[0]), last))
        return json.dumps(_object_answer(last))
    return None


def _object_answer(text: str) -> dict[str, Any]:
    """A JSON object for a prompt that names its keys ("with keys city and temp"), each `key=value` in the
    prompt taken as it is (a number as a number); else {"answer": the prompt}."""
    named = re.search(r"\bkeys?\s+([A-Za-z_]\w*(?:\s*(?:,|and)\s*[A-Za-z_]\w*)*)", text)
    if named is None:
        return {"answer": text[:200]}
    out: dict[str, Any] = {}
    for key in re.split(r"\s*(?:,|\band\b)\s*", named.group(1)):
        given = re.search(rf"\b{re.escape(key)}=([^\s,;]+)", text)
        raw = given.group(1) if given else instance({"type": "string"}, text, key)
        try:
            out[key] = json.loads(raw) if given else raw
        except ValueError:
            out[key] = raw
    return out


def _tool_calls(system: str, last: str) -> str | None:
    fmt = _CALL_FORMAT.search(system)
    tools = {name: json.loads(schema) for name, schema in _TOOL_LINE.findall(system)}
    if fmt is None or not tools or last.startswith("[Tool result of "):
        return None
    forced = re.search(r"You must call the tool '([^']+)'", system)
    if forced:
        chosen = [forced.group(1)]
    else:
        lowered = last.lower()
        chosen = [n for n in tools if n.lower() in lowered
                  or any(len(w) > 3 and w in lowered for w in re.split(r"[_-]", n.lower()))]
        if not chosen and "You must call at least one tool" in system:
            chosen = [next(iter(tools))]
    if "Call at most one tool" in system:
        chosen = chosen[:1]
    if not chosen:
        return None
    return "".join(fmt.group(1) + json.dumps({"name": n, "arguments": instance(tools.get(n, {}), last)})
                   + fmt.group(2) for n in chosen)


def instance(schema: Any, text: str, name: str = "", root: Any = None) -> Any:
    """A value that matches `schema`, made from `text` deterministically: `name=value` in the text for a
    property of that name, else its last capitalised word for strings, its first number for numbers."""
    root = schema if root is None else root
    if not isinstance(schema, dict):
        return None
    if isinstance(schema.get("$ref"), str):
        target: Any = root
        for part in [p for p in schema["$ref"].lstrip("#").split("/") if p]:
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return instance(target, text, name, root)
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if not (isinstance(o, dict) and o.get("type") == "null")]
        if options:
            return instance(options[0], text, name, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object" if "properties" in schema else "string")
    kind = next((k for k in kind if k != "null"), "null") if isinstance(kind, list) else kind
    if kind == "object":
        props = schema.get("properties") or {}
        wanted = schema.get("required") or list(props)
        return {key: instance(props.get(key, {}), text, key, root) for key in wanted}
    if kind == "array":
        return [instance(schema.get("items", {}), text, name, root) for _ in range(max(1, schema.get("minItems", 1)))]
    if kind in ("integer", "number"):
        found = re.search(r"-?\d+", text)
        value = int(found.group()) if found else 1
        return max(value, schema.get("minimum", value))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    given = re.search(rf"\b{re.escape(name)}=([^\s,;]+)", text) if name else None
    if given:
        return given.group(1)
    words = re.findall(r"[A-Z][\w-]*", text)
    return words[-1] if words else "value"
