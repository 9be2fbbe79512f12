"""Channel: the page's same-origin socket goes to the in-process API with the identity, never the cookies."""

from __future__ import annotations

from addons.channel import ApiAddress, Channel
from tests.addons.flows import USER, classified


def test_channel_routes_to_the_api_with_identity_and_without_cookies():
    channel = Channel(ApiAddress("127.0.0.1", 5999))
    flow = classified("GET", "https://lmarena.ai/__bridge/ws", headers={"x-bridge-identity": "user:spoofed"})
    channel.request(flow)
    assert (flow.request.scheme, flow.request.host, flow.request.port) == ("http", "127.0.0.1", 5999)
    assert flow.request.headers["x-bridge-identity"] == f"user:{USER}"
    assert "cookie" not in flow.request.headers


def test_channel_ignores_other_paths():
    channel = Channel(ApiAddress("127.0.0.1", 5999))
    flow = classified("GET", "https://lmarena.ai/?x=1")
    channel.request(flow)
    assert flow.request.host == "lmarena.ai"
