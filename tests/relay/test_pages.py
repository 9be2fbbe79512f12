"""The page channel: the secret, and a page's messages fuzzed (malformed, oversized, out of order): the hub
drops what it cannot use, logs each kind once, and keeps serving."""

from __future__ import annotations

import json
import logging

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from openai_front.app import create_app
from relay.core import assemble
from relay.pages import MAX_PAGE_MESSAGE
from sites import lmarena as site


@pytest.fixture
def client():
    core = assemble()
    with TestClient(create_app(core)) as c:
        c.core = core  # type: ignore[attr-defined]
        yield c


def hello(client, **extra):
    secret = client.core.services.pages.secret
    return json.dumps({"type": "hello", "secret": secret, "page": "p1", "url": "https://arena.ai/text/direct",
                       "state": "ready", **extra})


@pytest.mark.parametrize("first", ["not json", "[1, 2]", json.dumps({"type": "hello", "secret": "wrong"}), "{}"])
def test_a_channel_without_the_secret_is_closed(client, first):
    with client.websocket_connect("/__bridge/ws", headers={"x-bridge-identity": "user:1"}) as ws:
        ws.send_text(first)
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
    assert closed.value.code in (4400, 4401)
    assert not client.core.services.pages.pages


def test_garbage_from_a_page_is_dropped_and_the_channel_keeps_serving(client, caplog):
    caplog.set_level(logging.WARNING)
    with client.websocket_connect("/__bridge/ws", headers={"x-bridge-identity": "user:1"}) as ws:
        ws.send_text(hello(client))
        assert json.loads(ws.receive_text())["type"] == "welcome"
        garbage = ["not json", "[1]", "null", '"text"', "x" * (MAX_PAGE_MESSAGE + 1),
                   json.dumps({"type": "state", "state": {"nested": True}}),
                   json.dumps({"type": "state", "state": "hacked"}),
                   json.dumps({"type": "job_done", "job": 12345}),
                   json.dumps({"type": "job_error", "job": "no-such-job", "message": "x"}),
                   json.dumps({"type": "job_done", "job": "no-such-job", "recaptcha": "not a dict"}),
                   json.dumps({"type": "surprise"}), "\ud800"]
        for text in garbage * 2:
            ws.send_text(text)
        ws.send_text(json.dumps({"type": "state", "state": "challenge", "url": "https://arena.ai/x"}))
        pages = client.core.services.pages
        for _ in range(100):
            if pages.pages["p1"].state == "challenge":
                break
            ws.send_text(json.dumps({"type": "pong"}))
        assert pages.pages["p1"].state == "challenge", "it still reads what it understands"
    drops = [r.getMessage() for r in caplog.records if "drops" in r.getMessage()]
    kinds = {m.split("(", 1)[1].split(")", 1)[0] for m in drops}
    assert kinds == {"not JSON", "not an object", "too large", "an unknown page state", "a job message without a job",
                     "a job this page was not given", "an unknown kind"}
    assert len(drops) == len(kinds), "each kind logged once"


def test_word_about_another_page_s_job_is_dropped_and_a_late_word_about_its_own_is_ignored(client, caplog):
    caplog.set_level(logging.WARNING)
    jobs = client.core.services.jobs
    others = jobs.new_create("gemini-2.5-pro", None, "chat", [], site.BodyFormat.USER_MESSAGE)
    others.page_id = "p2"
    finished = jobs.new_create("gemini-2.5-pro", None, "chat", [], site.BodyFormat.USER_MESSAGE)
    finished.page_id = "p1"
    jobs.discard(finished)
    with client.websocket_connect("/__bridge/ws", headers={"x-bridge-identity": "user:1"}) as ws:
        ws.send_text(hello(client))
        assert json.loads(ws.receive_text())["type"] == "welcome"
        ws.send_text(json.dumps({"type": "job_done", "job": finished.id}))  # after the proxy saw the end: normal
        ws.send_text(json.dumps({"type": "job_error", "job": others.id, "message": "made up"}))
        ws.send_text(json.dumps({"type": "surprise"}))  # read after the two above: they have been handled
        for _ in range(100):
            if any("unknown kind" in r.getMessage() for r in caplog.records):
                break
            ws.send_text(json.dumps({"type": "pong"}))
    drops = [r.getMessage() for r in caplog.records if "drops" in r.getMessage()]
    assert any("a job this page was not given" in m for m in drops)
    assert len(drops) == 2, drops
    assert others.queue.empty() and not others.ended, "another page cannot fail a job it was not given"
