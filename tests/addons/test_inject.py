"""Injector: the page script goes into arena HTML pages, under the page's CSP; page models are learned."""

from __future__ import annotations

import json

import pytest
from mitmproxy import exceptions, http

from addons.inject import Injector, csp_nonce
from tests.addons.flows import classified, make_flow

PAGE = "<html><head><title>x</title></head><body>hi</body></html>"


def page_flow(csp: str | None, html: str = PAGE) -> http.HTTPFlow:
    flow = classified("GET", "https://lmarena.ai/?mode=direct")
    headers = {"content-type": "text/html; charset=utf-8"}
    if csp:
        headers["content-security-policy"] = csp
    flow.response = http.Response.make(200, html.encode(), headers)
    return flow


def test_inject_reuses_the_csp_nonce(services):
    injector = Injector(services.pages, services.models)
    flow = page_flow("default-src 'self'; script-src 'self' 'nonce-abc123' 'strict-dynamic'")
    injector.response(flow)
    text = flow.response.get_text()
    assert '<head><script nonce="abc123" data-lmarena-bridge>' in text
    assert f'"secret": "{services.pages.secret}"' in text
    assert "nonce-abc123" in flow.response.headers["content-security-policy"]


def test_inject_strips_a_csp_without_nonce(services):
    injector = Injector(services.pages, services.models)
    flow = page_flow("default-src 'self'; script-src 'self'")
    injector.response(flow)
    assert "content-security-policy" not in flow.response.headers
    assert "data-lmarena-bridge" in flow.response.get_text()


def test_inject_learns_the_page_models(services):
    models = [{"id": "019b0000-0000-7000-8000-000000000001", "publicName": "page-only-model", "capabilities": {}}]
    flight = json.dumps("0:" + json.dumps({"initialModels": models}))
    html = PAGE.replace("</body>", f"<script>self.__next_f.push([1,{flight}])</script></body>")
    Injector(services.pages, services.models).response(page_flow(None, html))
    assert services.models.resolve("PAGE-ONLY-MODEL").id == models[0]["id"]


def test_inject_leaves_other_responses_alone(services):
    injector = Injector(services.pages, services.models)
    flow = classified("GET", "https://lmarena.ai/data.json")
    flow.response = http.Response.make(200, b'{"a":1}', {"content-type": "application/json"})
    injector.response(flow)
    assert flow.response.content == b'{"a":1}'
    other = make_flow("GET", "https://example.com/")
    other.response = http.Response.make(200, PAGE.encode(), {"content-type": "text/html"})
    injector.response(other)
    assert "data-lmarena-bridge" not in other.response.get_text()


def test_csp_nonce_parsing():
    assert csp_nonce("script-src 'nonce-x1' 'self'") == "x1"
    assert csp_nonce("default-src 'self' 'nonce-dd'; img-src *") == "dd"
    assert csp_nonce("img-src 'nonce-img'") is None


@pytest.mark.parametrize("bad", ["soon", "-1", "0", "nan", "inf"])
def test_challenge_reload_must_be_a_positive_duration(mitmproxy_context, services, bad):
    injector = Injector(services.pages, services.models)
    mitmproxy_context.master.addons.add(injector)
    with pytest.raises(exceptions.OptionsError, match="arena_challenge_reload: .*seconds"):
        mitmproxy_context.configure(injector, arena_challenge_reload=bad)
    mitmproxy_context.configure(injector, arena_challenge_reload="2.5")
    assert injector.challenge_reload_ms == 2500


def test_a_chat_page_without_its_model_list_is_drift(services):
    injector = Injector(services.pages, services.models, services.drift)
    injector.response(page_flow(None))
    assert [(d["kind"], d["shape"]) for d in services.drift.describe()] == [
        ("page_models", "/: no model list in the page")]
    other = classified("GET", "https://lmarena.ai/leaderboard")
    other.response = http.Response.make(200, PAGE.encode(), {"content-type": "text/html"})
    injector.response(other)
    assert len(services.drift.describe()) == 1, "other pages have no model list to miss"
