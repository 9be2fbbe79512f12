"""The model table: names, aliases."""

from __future__ import annotations

from relay.models import ModelRegistry


def test_aliases_without_date_suffix_and_configured():
    registry = ModelRegistry()
    assert registry.resolve("claude-opus-4").name == "claude-opus-4-20250514"
    assert registry.resolve("CLAUDE-OPUS-4").name == "claude-opus-4-20250514"
    registry.set_aliases({"fast": "gemini-2.5-flash"}, auto=False)
    assert registry.resolve("fast").name == "gemini-2.5-flash" and registry.resolve("claude-opus-4") is None
