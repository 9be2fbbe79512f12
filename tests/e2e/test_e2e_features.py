"""End to end, what users had in LMArenaBridge and lmarena2api: images through chat and through
/v1/images/generations, image rate limits, search citations, reasoning, moderation, attachments,
aliases. Real parts: the tool, the simulator, headless Chromium, the openai SDK."""

from __future__ import annotations

import base64
import json
from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.answers import SEARCH_SOURCES, answer_for
from simulator.stack import Stack, chat_in_page, wait_js
from sites import lmarena as site
from tests.conftest import open_arena_page, running_stack

pytestmark = pytest.mark.e2e

IMAGE_MODEL = "dall-e-3"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("features", "retry-honoured", cadence_ms=5, arena_prefill="off", arena_keepalive=30,
                       arena_model_aliases="secret-image=battle-image") as st:
        yield st


@pytest.fixture(scope="module")
def page(stack: Stack, playwright_instance: Any) -> Iterator[Any]:
    browser = playwright_instance.chromium.launch(**stack.launch_args())
    yield open_arena_page(stack, browser)
    browser.close()


@pytest.fixture(autouse=True)
def _connected(page: Any) -> None:
    """Every test here needs the page connected."""


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_base + "/v1", api_key="x", max_retries=0, timeout=60)


def sim_log(stack: Stack) -> list[dict[str, Any]]:
    return httpx.get(stack.sim_base + "/__sim/log", timeout=10).json()


def fault(stack: Stack, **spec: Any) -> None:
    httpx.post(stack.sim_base + "/__sim/fault", json={"session": None, **spec}, timeout=10)


def test_an_image_model_answers_through_chat_with_a_markdown_image(stack):
    chunks = list(sdk(stack).chat.completions.create(
        model=IMAGE_MODEL, stream=True, messages=[{"role": "user", "content": "a red fox"}]))
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) == 1, "the image arrives in one piece, as soon as its line does"
    assert pieces[0].startswith(f"![image]({stack.sim_base}/__sim/image/") and pieces[0].endswith(")")
    create = [e for e in sim_log(stack) if e["path"].endswith("create-evaluation")][-1]
    assert create["body"]["modality"] == "image" and "featureFlags" in create["body"]


def test_image_generations_honours_n_and_b64_json(stack):
    client = sdk(stack)
    result = client.images.generate(model=IMAGE_MODEL, prompt="two owls", n=2)
    assert len(result.data) == 2 and all(d.url and "/__sim/image/" in d.url for d in result.data)
    assert result.created > 0
    encoded = client.images.generate(model=IMAGE_MODEL, prompt="one owl", response_format="b64_json")
    png = base64.b64decode(encoded.data[0].b64_json or "")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(openai.BadRequestError, match="does not make images"):
        client.images.generate(model="gemini-2.5-pro", prompt="x")


def test_the_image_rate_limit_is_a_429_with_retry_after(stack):
    fault(stack, status=429, body="Too many requests, please try again later.", media_type="text/plain",
          headers={"retry-after": "0", "ratelimit": "limit=1, remaining=0, reset=86400",
                   "ratelimit-modality": "image"})
    with pytest.raises(openai.RateLimitError) as caught:
        sdk(stack).images.generate(model=IMAGE_MODEL, prompt="a third owl")
    assert caught.value.response.headers["retry-after"] == "86400", "from the site's rate-limit headers"


def test_a_search_model_keeps_its_sources(stack):
    model = "gpt-5-search"
    result = sdk(stack).chat.completions.create(model=model, messages=[{"role": "user", "content": "find it"}])
    content = result.choices[0].message.content or ""
    listing = "\n".join(f"{i}. [{s['title']}]({s['url']})" for i, s in enumerate(SEARCH_SOURCES, 1))
    assert content.endswith("\n\nSources:\n" + listing)
    assert [c["url"] for c in result.model_extra["citations"]] == [s["url"] for s in SEARCH_SOURCES]
    raw = httpx.post(stack.api_base + "/v1/chat/completions", timeout=60, json={
        "model": model, "stream": True, "messages": [{"role": "user", "content": "find it again"}]}).text
    finals = [json.loads(line[5:]) for line in raw.splitlines()
              if line.startswith("data:") and "citations" in line]
    assert finals and finals[-1]["choices"][0]["finish_reason"] == "stop"


def test_a_reasoning_model_answers_with_reasoning_content(stack):
    model = "deepseek-v3.1-thinking"
    message = sdk(stack).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "think first"}]).choices[0].message
    assert message.model_extra["reasoning_content"] == "Thinking about it… 🤔"
    assert message.content == answer_for(model, "chat", [("user", "think first")])[1]


def test_moderation_is_a_400_content_filter(stack):
    fault(stack, status=422,
          body='{"error":"Request rejected: Content violates our terms of use for evaluation session id: x"}')
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(stack).chat.completions.create(model="gemini-2.5-pro",
                                           messages=[{"role": "user", "content": "something rude"}])
    assert caught.value.body["code"] == "content_filter"


def test_attachments_reach_the_site_on_create_and_on_retry(stack):
    image = "data:image/png;base64," + base64.b64encode(b"not really a png").decode()
    pdf = "data:application/pdf;base64,JVBERi0xLjQ="
    content = [{"type": "text", "text": "what is in it?"}, {"type": "image_url", "image_url": {"url": image}},
               {"type": "file", "file": {"filename": "notes.pdf", "file_data": pdf}}]
    messages = [{"role": "user", "content": content}]
    client = sdk(stack)
    model = "gemini-2.0-flash-001"
    for _ in range(2):  # the first creates a conversation, the second retries it
        client.chat.completions.create(model=model, messages=messages)
    log = sim_log(stack)
    create = [e for e in log if e["path"].endswith("create-evaluation")][-1]["body"]
    retry = [e for e in log if e["method"] == "PUT"][-1]["body"]
    for attachments in (create["userMessage"]["experimental_attachments"],
                        retry["messages"][-1]["experimental_attachments"]):
        assert [(a["name"], a["contentType"], a["url"]) for a in attachments] == [
            ("file_0.png", "image/png", image), ("notes.pdf", "application/pdf", pdf)]


def test_too_large_files_and_text_only_models_are_refused_before_anything_is_sent(stack):
    before = len(sim_log(stack))
    huge = "data:image/png;base64," + "A" * (7 * 1024 * 1024)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(stack).chat.completions.create(model="gemini-2.0-flash-001", messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": huge}}]}])
    assert caught.value.status_code == 413
    with pytest.raises(openai.BadRequestError, match="Bailing-Lite-250220"):
        sdk(stack).chat.completions.create(model="Bailing-Lite-250220", messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.org/x.png"}}]}])
    assert len(sim_log(stack)) == before


def test_a_name_without_its_date_suffix_reaches_the_dated_model(stack):
    models = {m.id: m for m in sdk(stack).models.list().data}
    assert "claude-opus-4" in models["claude-opus-4-20250514"].model_extra["aliases"]
    sdk(stack).chat.completions.create(model="claude-opus-4", messages=[{"role": "user", "content": "hello"}])
    create = [e for e in sim_log(stack) if e["path"].endswith("create-evaluation")][-1]["body"]
    builtin = {m["publicName"]: m["id"] for m in site.builtin_models()}
    assert create["modelAId"] == builtin["claude-opus-4-20250514"]


def battle_in_page(page: Any, model: str, text: str) -> list[dict[str, Any]]:
    """A person's battle on a fresh conversation: returns the answers of sides a and b."""
    page.goto("https://lmarena.ai/?mode=battle")
    wait_js(page, "window.__lmarenaBridge && window.__lmarenaBridge.connected")
    page.select_option("#mode", "battle")
    chat_in_page(page, model, text)
    wait_js(page, "window.__simAnswers.length >= 2")
    return page.evaluate("window.__simAnswers.slice(-2)")


def hidden_model(answer_text: str) -> str:
    return answer_text.split("]", 1)[0].lstrip("[")


def test_a_battle_is_pooled_and_replayed_on_the_side_the_person_chose(stack, page):
    side_a, side_b = battle_in_page(page, "gemini-2.5-pro", "which of you is better?")
    assert (side_a["position"], side_b["position"]) == ("a", "b")
    conv = next(c for c in httpx.get(stack.api_base + "/api/pool", timeout=10).json()["conversations"]
                if c["session_id"] == side_a["sessionId"])
    assert (conv["model"], conv["mode"], conv["model_id"], conv["side"]) == ("battle", "battle", None, "a")
    assert conv["message_id_b"] == side_b["messageId"]
    before = page.evaluate("window.__simAnswers.length")
    page.click(".retry-b")  # the person prefers side b and retries it
    wait_js(page, f"window.__simAnswers.length > {before}")
    chosen = [c for c in httpx.get(stack.api_base + "/api/pool", timeout=10).json()["conversations"]
                     if c["session_id"] == side_a["sessionId"]]
    assert chosen[0]["side"] == "b"
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "a battle question"}]
    result = sdk(stack).chat.completions.create(model="battle", messages=messages)
    expected = answer_for(hidden_model(side_b["text"]), "chat", [(m["role"], m["content"]) for m in messages])[1]
    assert result.choices[0].message.content == expected
    retry = [e for e in sim_log(stack) if e["method"] == "PUT"][-1]
    assert retry["path"].endswith(side_b["messageId"]) and retry["body"]["modelId"] is None
    assert {m["participantPosition"] for m in retry["body"]["messages"]} == {"b"}


def test_an_image_battle_serves_an_aliased_name(stack, page):
    side_a, _ = battle_in_page(page, IMAGE_MODEL, "a battle of foxes")
    assert side_a["text"].startswith("![image](")
    result = sdk(stack).chat.completions.create(model="secret-image", messages=[{"role": "user", "content": "owl"}])
    assert (result.choices[0].message.content or "").startswith("![image](")
    retry = [e for e in sim_log(stack) if e["method"] == "PUT"][-1]
    assert retry["path"].endswith(side_a["messageId"]) and retry["body"]["modelId"] is None
    assert all(m["status"] == "success" for m in retry["body"]["messages"]), "image replays mark all as success"


def test_files_go_through_the_site_s_upload_flow_when_asked(stack, page):
    stack.restart_tool(arena_upload_files="true")
    stack.wait_page_connected(timeout=30)
    payload = bytes(range(256)) * 28_000  # 7 MB: over the 5 MB inline limit, so only an upload can carry it
    pdf = "data:application/pdf;base64," + base64.b64encode(payload).decode()
    messages = [{"role": "user", "content": [{"type": "text", "text": "summarise the paper"},
                                             {"type": "file", "file": {"filename": "paper.pdf", "file_data": pdf}}]}]
    before = len(sim_log(stack))
    result = sdk(stack).chat.completions.create(model="gemini-2.0-flash-001", messages=messages)
    assert result.choices[0].message.content
    sent = sim_log(stack)[before:]
    assert all("__bridgeUploads" not in e["body"] for e in sent), "the page's note never reaches the site"
    body = sent[-1]["body"]
    attachments = (body["messages"][-1] if "messages" in body else body["userMessage"])["experimental_attachments"]
    [attachment] = attachments
    assert attachment["contentType"] == "application/pdf" and attachment["name"].endswith("-paper.pdf")
    assert "/__sim/r2/" in attachment["url"] and not attachment["url"].startswith("data:")
    uploads = httpx.get(stack.sim_base + "/__sim/uploads", timeout=10).json()
    assert uploads[attachment["name"]] == ["application/pdf", len(payload)], "the bytes arrived whole"
    stack.restart_tool(arena_upload_files="false")
    stack.wait_page_connected(timeout=30)
