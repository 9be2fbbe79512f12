"""ConsoleView: its option, and the URLs it shows."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions

from addons.channel import ApiAddress
from addons.console_view import ConsoleView
from relay.core import assemble


def test_console_mode_is_one_of_its_choices(mitmproxy_context):
    core = assemble()
    view = ConsoleView(core.services, core.monitor, ApiAddress("127.0.0.1", 5102))
    mitmproxy_context.master.addons.add(view)
    with pytest.raises(exceptions.OptionsError, match="arena_console: one of auto, live, plain, not 'fancy'"):
        mitmproxy_context.configure(view, arena_console="fancy")
    core.services.settings.route_prefix = "/arena"
    urls = view.urls()
    assert urls["api"] == "http://127.0.0.1:5102/arena/v1" and urls["dashboard"].endswith("/arena/dashboard")
