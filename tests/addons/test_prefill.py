"""PrefillAddon's options (the start-up prompt itself is tested under tmux, end to end)."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions

from addons.prefill import PrefillAddon
from relay.core import assemble


@pytest.fixture
def addon(mitmproxy_context) -> PrefillAddon:
    core = assemble()
    prefill = PrefillAddon(core.services, core.prefiller)
    mitmproxy_context.master.addons.add(prefill)
    return prefill


@pytest.mark.parametrize("option,bad,says", [
    ("arena_sessions_per_model", 0, "between 1 and 64"),
    ("arena_sessions_per_model", 65, "between 1 and 64"),
    ("arena_prefill_message", "   ", "must not be empty"),
    ("arena_prefill_interval", "fast", "number of seconds"),
    ("arena_prefill_delay", "-1", "zero or a positive"),
    ("arena_prefill_models", "text,no-such-model", "unknown models: no-such-model"),
    ("arena_prefill", "maybe", "one of"),
    ("arena_lang", "fr", "one of"),
])
def test_bad_values(mitmproxy_context, addon, option, bad, says):
    with pytest.raises(exceptions.OptionsError, match=says):
        mitmproxy_context.configure(addon, **{option: bad})


def test_good_values(mitmproxy_context, addon):
    mitmproxy_context.configure(addon, arena_sessions_per_model=2, arena_prefill_interval="0.5", arena_lang="zh",
                                arena_prefill_models="search,gemini-2.5-pro")
    assert addon.services.settings.sessions_per_model == 2 and addon.prefiller.interval == 0.5
    assert addon.lang == "zh" and addon.services.settings.lang == "zh"
