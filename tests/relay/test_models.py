"""The model table: names, aliases."""

from __future__ import annotations

from relay.models import ModelRegistry


def test_aliases_without_date_suffix_and_configured():
    registry = ModelRegistry()
    assert registry.resolve("claude-opus-4").name == "claude-opus-4-20250514"
    assert registry.resolve("CLAUDE-OPUS-4").name == "claude-opus-4-20250514"
    registry.set_aliases({"fast": "gemini-2.5-flash"}, auto=False)
    assert registry.resolve("fast").name == "gemini-2.5-flash" and registry.resolve("claude-opus-4") is None


def test_a_second_entry_under_a_taken_name_does_not_take_it_unless_a_person_can_pick_it():
    caps = {"inputCapabilities": {"text": True}, "outputCapabilities": {"text": True}}
    registry = ModelRegistry(builtin=[])
    selectable = {"id": "id-pick", "publicName": "m", "capabilities": caps}
    hidden = {"id": "id-hidden", "publicName": "m", "userSelectable": False, "capabilities": caps}
    registry.merge_page_models([selectable, hidden])
    assert registry.resolve("m").id == "id-pick" and registry.by_id("id-hidden").name == "m"
    registry = ModelRegistry(builtin=[])
    registry.merge_page_models([hidden, selectable])  # either order
    assert registry.resolve("m").id == "id-pick"
    registry.merge_page_models([{"id": "r", "publicName": "Max", "organization": "boss-bandit", "capabilities": caps}])
    assert registry.resolve("max").router
