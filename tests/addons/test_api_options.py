"""ApiOptions' options: shaping, aliases, routes, reCAPTCHA, strategy, rate limit."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions

from addons.api_options import ApiOptions
from relay.core import assemble


@pytest.fixture
def options(mitmproxy_context) -> ApiOptions:
    core = assemble()
    addon = ApiOptions(core.services, core.canary)
    mitmproxy_context.master.addons.add(addon)
    return addon


@pytest.mark.parametrize("option,bad,says", [
    ("arena_model_aliases", "just-a-name", "is not alias=model"),
    ("arena_model_aliases", "fast=no-such-model", "unknown models: no-such-model"),
    ("arena_route_prefix", "arena", "a path such as /arena"),
    ("arena_route_prefix", "/a b", "a path such as /arena"),
    ("arena_upload_actions", "abc", "two hex action ids"),
    ("arena_upload_actions", "a" * 42 + ",b", "two hex action ids"),
    ("arena_recaptcha_sitekey", "short", "does not look like a reCAPTCHA key"),
    ("arena_recaptcha_actions", "chat_submit", "two actions"),
    ("arena_recaptcha_actions", "chat submit,chat_retry", "two actions"),
    ("arena_canary_interval", "often", "number of seconds"),
    ("arena_canary_interval", "-60", "zero or a positive"),
    ("arena_side_call_delay", "soon", "number of seconds"),
    ("arena_side_calls", "  ", "defer, same, refuse"),
    ("arena_rate_limit", -1, "must not be negative"),
    ("arena_strategy", "sometimes", "one of"),
])
def test_bad_values(mitmproxy_context, options, option, bad, says):
    with pytest.raises(exceptions.OptionsError, match=says):
        mitmproxy_context.configure(options, **{option: bad})


def test_good_values_reach_the_settings(mitmproxy_context, options):
    mitmproxy_context.configure(options, arena_route_prefix="/arena/", arena_recaptcha_actions="a_x,b_y",
                                arena_tavern_mode=True, arena_model_aliases="fast=gemini-2.5-pro",
                                arena_strategy="fresh")
    services = options.services
    assert services.settings.route_prefix == "/arena" and services.settings.tavern_mode is True
    assert (services.settings.recaptcha_actions.submit, services.settings.recaptcha_actions.retry) == ("a_x", "b_y")
    assert services.models.resolve("FAST").name == "gemini-2.5-pro"
    assert services.strategy.current == "fresh"
