"""What the simulator answers: a pure function of the model and the conversation it received, so a
test can prove which conversation reached it; and how the answer's lines are cut into network chunks."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib


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
    text = f"[{model}] You said: {summary} — 回答 ✓ (turns={len(history)}, digest={d})"
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
