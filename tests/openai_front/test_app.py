"""The OpenAI surface, with the official SDK as the client (conformance checklist items 1-9).

The page is a stand-in here: it answers each job by pushing parsed lines into the job, as the
proxy addons do. The end-to-end tests cover the real path through browser, proxy and simulator.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest

from openai_front.app import create_app
from pool_store.pool import Conversation
from relay.core import assemble
from relay.jobs import JobDone, JobFailed
from relay.pages import Page
from relay.services import Services
from relay.settings import Settings
from sites import lmarena as site
from tests.inprocess import api_http, api_sdk

Kind = site.FailureKind

MODEL = "gemini-2.5-pro"
ANSWER = 'a0:"Hello "\na0:"wörld 🌍, \\"quoted\\" \\\\ back"\nad:{"finishReason":"stop"}\n'


class FakeSocket:
    """What the page would do with each job: answer with `script` (raw site lines), or fail."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.script: str | None = ANSWER
        self.failure: JobFailed | None = None
        self.break_after: int | None = None
        self.sent: list[dict[str, Any]] = []
        self.fail_once: dict[str, list[JobFailed]] = {}  # session id -> failures for its next jobs
        self.scripts: list[str] = []  # answers for the next jobs, in order (then `script`)
        self.turns: list[list[site.ChatTurn]] = []  # what each job carried to the site
        self.delay = 0.0  # > 0: the answer's lines come this many seconds apart, as a stream does
        self._tasks: set[asyncio.Task[None]] = set()

    async def send_text(self, text: str) -> None:
        message = json.loads(text)
        self.sent.append(message)
        if message["type"] == "job":
            asyncio.get_running_loop().call_soon(self._answer, message["job"])

    def _answer(self, job_id: str) -> None:
        job = self.services.jobs.get(job_id)
        assert job is not None
        job.flow_seen = True
        self.turns.append(job.turns)
        queued = self.fail_once.get(job.conversation.session_id if job.conversation else "")
        if queued:
            job.push(queued.pop(0))
            return
        if self.failure is not None:
            job.push(self.failure)
            return
        script = self.scripts.pop(0) if self.scripts else self.script
        events = site.parse_stream((script or "").encode())
        if self.delay:
            task = asyncio.get_running_loop().create_task(self._stream(job, events))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        for index, event in enumerate(events):
            if self.break_after is not None and index == self.break_after:
                job.push(JobFailed("the answer stopped before its last line", 502, Kind.TRUNCATED))
                return
            job.push(event)
        job.push(JobDone())

    async def _stream(self, job: Any, events: list[site.StreamEvent]) -> None:
        for event in events:
            await asyncio.sleep(self.delay)
            job.push(event)
        job.push(JobDone())


@pytest.fixture
def services() -> Services:
    return Services(Settings(queue_timeout=0.5, upstream_timeout=2))


@pytest.fixture
def page(services: Services) -> FakeSocket:
    sock = FakeSocket(services)
    services.pages.pages["p1"] = Page("p1", "user:1", "https://lmarena.ai/", "ready", ws=sock)  # type: ignore[arg-type]
    services.pool.upsert(Conversation("s1", "m1", MODEL, model_id="id", identity="user:1"))
    return sock


@pytest.fixture
async def client(services: Services):
    async with api_sdk(services) as sdk:
        yield sdk


@pytest.fixture
async def raw(services: Services):
    async with api_http(services) as http_client:
        yield http_client


def assert_error_shape(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    if code is not None:
        assert body["error"]["code"] == code
    return body["error"]


MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]


async def test_models_list(client):
    models = await client.models.list()
    ids = [m.id for m in models.data]
    assert MODEL in ids and len(ids) > 100
    first = models.data[0]
    assert first.object == "model" and first.owned_by and first.created
    marked = {m.id: m.model_extra["available"] for m in models.data}
    assert marked[MODEL] is False, "no page: nothing can serve"


async def test_api_key(services, raw, page):
    services.settings.api_keys = ["key-one", "key-two"]
    assert_error_shape(await raw.get("/v1/models"), 401, "invalid_api_key")
    assert_error_shape(await raw.get("/v1/models", headers={"Authorization": "Bearer nope"}), 401, "invalid_api_key")
    assert (await raw.get("/v1/models", headers={"Authorization": "Bearer key-two"})).status_code == 200
    sdk = openai.AsyncOpenAI(base_url="http://test/v1", api_key="wrong", http_client=raw, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await sdk.chat.completions.create(model=MODEL, messages=MESSAGES)


async def test_unknown_model_is_404(client, page):
    with pytest.raises(openai.NotFoundError) as err:
        await client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert err.value.body["code"] == "model_not_found"


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b"{not json",
        json.dumps({"model": MODEL}).encode(),
        json.dumps({"model": MODEL, "messages": "hello"}).encode(),
        json.dumps({"model": MODEL, "messages": [{}]}).encode(),
        json.dumps({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}).encode(),
        json.dumps({"model": MODEL, "messages": []}).encode(),
        json.dumps({"messages": MESSAGES}).encode(),
        json.dumps({"model": MODEL, "messages": MESSAGES, "stream_options": {"include_usage": True}}).encode(),
        json.dumps({"model": MODEL, "messages": MESSAGES, "n": 2}).encode(),
        json.dumps({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "audio"}]}]}).encode(),
    ],
)
async def test_malformed_bodies_are_400(raw, page, body):
    response = await raw.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    error = assert_error_shape(response, 400)
    assert error["type"] == "invalid_request_error"


async def test_images_to_a_text_only_model_are_400(raw, page, services):
    services.pool.upsert(Conversation("s2", "m2", "Bailing-Lite-250220", identity="user:1"))
    content = [{"type": "text", "text": "what is this"},
               {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    response = await raw.post("/v1/chat/completions", json={
        "model": "Bailing-Lite-250220", "messages": [{"role": "user", "content": content}]})
    assert "does not accept images" in assert_error_shape(response, 400)["message"]


async def test_non_stream_completion(client, page, services):
    result = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert result.id.startswith("chatcmpl-") and result.object == "chat.completion"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == 'Hello wörld 🌍, "quoted" \\ back'
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens > 0
    assert services.pool.stats()[MODEL]["ready"] == 1, "the lease is back"


async def test_stream_framing_and_same_text_as_non_stream(client, page, raw):
    chunks = [c async for c in await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert sum(1 for c in chunks if c.choices and c.choices[0].finish_reason) == 1
    assert all(c.usage is None for c in chunks)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert streamed == whole.choices[0].message.content
    text = (await raw.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "stream": True})).text
    data_lines = [line for line in text.splitlines() if line.startswith("data:")]
    assert data_lines[-1].strip() == "data: [DONE]"


async def test_include_usage_adds_one_final_chunk(client, page):
    stream = await client.chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert all(c.usage is None for c in chunks[:-1])


async def test_reasoning_goes_to_reasoning_content(client, page):
    page.script = 'ag:""\nag:"think "\nag:"hard"\na0:"answer"\nad:{"finishReason":"stop"}\n'
    result = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    message = result.choices[0].message
    assert message.content == "answer" and message.model_extra["reasoning_content"] == "think hard"
    chunks = [c async for c in await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)]
    assert "".join(c.choices[0].delta.model_extra.get("reasoning_content") or "" for c in chunks) == "think hard"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "answer"


@pytest.mark.parametrize(
    "failure,error,status",
    [
        (JobFailed("Too many requests", 429, Kind.RATE_LIMITED, retry_after=30), openai.RateLimitError, 429),
        (JobFailed("User x does not have access", 401, Kind.FOREIGN_SESSION), openai.APIStatusError, 502),
        (JobFailed("Content violates our terms", 422, Kind.CONTENT_FILTER), openai.BadRequestError, 400),
    ],
)
async def test_failure_before_the_first_token_is_an_http_status(client, page, services, failure, error, status):
    page.failure = failure
    for stream in (False, True):
        with pytest.raises(error) as caught:
            await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream)
        assert caught.value.status_code == status
    assert services.pool.stats()[MODEL]["busy"] == 0


async def test_failure_mid_stream_is_in_band(client, page, raw, services):
    page.break_after = 1
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError, match="stopped before its last line"):
        async for chunk in stream:
            received.append(chunk)
    assert received[1].choices[0].delta.content == "Hello "
    text = (await raw.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES, "stream": True})).text
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    assert '"error"' in data[-2] and data[-1] == "[DONE]"
    assert services.pool.stats()[MODEL]["busy"] == 0


async def test_no_page_is_503_with_retry_after(raw, services):
    services.pool.upsert(Conversation("s1", "m1", MODEL, identity="user:1"))
    response = await raw.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES})
    assert_error_shape(response, 503, "service_unavailable")
    assert int(response.headers["retry-after"]) > 0


async def test_a_model_without_conversations_gets_a_new_one_for_the_request(client, page, services):
    result = await client.chat.completions.create(model="gpt-5-high", messages=MESSAGES)
    assert result.choices[0].message.content.startswith("Hello")
    job = [m for m in page.sent if m["type"] == "job"][-1]
    assert (job["method"], job["url"], job["action"]) == ("POST", "/nextjs-api/stream/create-evaluation",
                                                          "chat_submit")
    assert "gpt-5-high" not in services.pool.targets(), "one request does not make the pool keep it stocked"
    assert services.requests.recent()[-1]["strategy"] == "fresh"


async def test_no_conversation_is_503_when_new_ones_are_off(raw, page, services):
    services.settings.fresh_when_empty = False
    response = await raw.post("/v1/chat/completions", json={"model": "gpt-5-high", "messages": MESSAGES})
    assert "chat with it once" in assert_error_shape(response, 503)["message"]
    assert "retry-after" in response.headers


async def test_busy_past_the_queue_limit_is_429(raw, client, page, services):
    lease = await services.pool.lease(MODEL, timeout=1)
    response = await raw.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES})
    assert_error_shape(response, 429)
    assert "retry-after" in response.headers
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    services.pool.release(lease)
    assert services.pool.stats()[MODEL]["waiting"] == 0


async def test_upstream_silence_is_504_and_frees_the_conversation(client, page, services):
    page.script = None
    services.settings.upstream_timeout = 0.2
    page._answer = lambda job_id: None  # the page never sends anything
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == 504
    assert services.pool.stats()[MODEL] == {"total": 1, "ready": 1, "busy": 0, "cooling": 0, "retired": 0, "owned": 0,
                                            "waiting": 0}
    await asyncio.sleep(0.05)  # the abort goes out as its own task
    assert any(m["type"] == "abort" for m in page.sent), "the page is told to stop the request"


async def test_the_job_message_names_the_retry_of_the_pooled_conversation(client, page):
    await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    job = next(m for m in page.sent if m["type"] == "job")
    assert job["method"] == "PUT" and job["action"] == "chat_retry"
    assert job["url"] == "/nextjs-api/stream/retry-evaluation-session-message/s1/messages/m1"


async def test_healthz(raw, page):
    health = (await raw.get("/healthz")).json()
    assert health["status"] == "ok" and health["pages"] == {"connected": 1, "ready": 1}
    assert health["pool"][MODEL] == {"total": 1, "ready": 1, "busy": 0, "cooling": 0, "retired": 0, "owned": 0,
                                     "waiting": 0}


async def test_unknown_route_is_an_openai_error(raw):
    assert_error_shape(await raw.get("/v1/nothing"), 404)


async def test_failover_to_another_conversation_before_the_first_token(client, page, services):
    services.pool.upsert(Conversation("s2", "m2", MODEL, model_id="id", identity="user:1"))
    page.fail_once = {"s1": [JobFailed("User x does not have access", 401, Kind.FOREIGN_SESSION)],
                      "s2": [JobFailed("the answer stopped before its last line", 502, Kind.TRUNCATED)]}
    result = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert result.choices[0].message.content.startswith("Hello")
    record = services.requests.recent()[-1]
    assert record["attempts"] == 3 and record["status"] == 200
    used = [m["url"].rsplit("/", 3)[-3] for m in page.sent if m["type"] == "job"]
    assert used == ["s1", "s2", "s1"], "least recently used first, then the other, then back"


async def test_failover_is_bounded(client, page, services):
    services.settings.failover_tries = 2
    page.fail_once = {"s1": [JobFailed("boom", 500, Kind.UPSTREAM_ERROR)] * 5}
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == 502
    assert sum(1 for m in page.sent if m["type"] == "job") == 2
    assert services.pool.stats()[MODEL]["busy"] == 0


async def test_a_recaptcha_refusal_gets_one_fresh_try_on_the_same_conversation(client, page, services):
    page.fail_once = {"s1": [JobFailed("recaptcha validation failed", 403, Kind.RECAPTCHA)]}
    result = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert result.choices[0].message.content.startswith("Hello")
    jobs = [m for m in page.sent if m["type"] == "job"]
    assert len(jobs) == 2 and jobs[0]["url"] == jobs[1]["url"] and jobs[0]["job"] != jobs[1]["job"]


async def test_a_content_filter_refusal_is_not_retried_elsewhere(client, page, services):
    services.pool.upsert(Conversation("s2", "m2", MODEL, model_id="id", identity="user:1"))
    page.fail_once = {"s1": [JobFailed("Content violates our terms", 422, Kind.CONTENT_FILTER)]}
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.body["code"] == "content_filter"
    assert sum(1 for m in page.sent if m["type"] == "job") == 1


async def test_pool_api_lists_removes_and_retires(raw, page, services):
    services.pool.upsert(Conversation("s2", "m2", MODEL, identity="user:1"))
    listed = (await raw.get("/api/pool", params={"model": MODEL})).json()
    assert {c["session_id"] for c in listed["conversations"]} == {"s1", "s2"}
    assert (await raw.delete("/api/pool/s2")).json() == {"removed": "s2"}
    assert_error_shape(await raw.delete("/api/pool/s2"), 404)
    retired = (await raw.post("/api/pool/retire", json={"model": MODEL.upper()})).json()
    assert retired == {"model": MODEL, "retired": 1}
    assert services.pool.state_of(services.pool.get("s1")) == "retired"
    assert_error_shape(await raw.post("/api/pool/retire", json={"model": "nope"}), 404)


async def test_prefill_api_refuses_unknown_models_and_needs_a_page(raw, services, page):
    assert_error_shape(await raw.post("/api/prefill", json={"models": "nope"}), 404)
    services.pages.pages.clear()
    assert_error_shape(await raw.post("/api/prefill", json={"models": MODEL}), 503)


async def test_two_token_refusals_flag_the_page_until_a_person_chats(client, page, services):
    refusal = JobFailed("recaptcha validation failed", 403, Kind.RECAPTCHA)
    page.fail_once = {"s1": [refusal, refusal]}
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert caught.value.status_code == 503 and "send one message by hand" in caught.value.message
    assert services.pages.pages["p1"].state == "needs_human_check"
    services.settings.page_wait = 0.2
    with pytest.raises(openai.APIStatusError) as waited:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert waited.value.status_code == 503 and "needs_human_check" in waited.value.message
    services.pages.flag_identity("user:1", None)  # what the capture does when the person's own chat succeeds
    assert (await client.chat.completions.create(model=MODEL, messages=MESSAGES)).choices[0].message.content


async def test_a_model_that_is_only_cooling_down_waits_instead_of_creating(raw, page, services):
    services.pool.cool_down("s1", 60)
    services.settings.queue_timeout = 0.3
    response = await raw.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES})
    assert_error_shape(response, 429)
    assert not any(m["type"] == "job" for m in page.sent), "no new conversation thrown at a rate limit"


async def test_usage_counts_the_prompt_text_not_attached_files(client, page, services):
    services.pool.upsert(Conversation("s3", "m3", "gemini-2.0-flash-001", identity="user:1"))
    big = "data:image/png;base64," + "A" * 400_000
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": big}}]
    result = await client.chat.completions.create(model="gemini-2.0-flash-001",
                                                  messages=[{"role": "user", "content": content}])
    assert result.usage.prompt_tokens == 4, "13 characters of text, the image not counted"


async def test_route_prefix_and_rate_limit_through_the_app():
    services = Services(Settings(route_prefix="/arena", rate_limit=1))
    async with api_http(services, "http://t") as client:
        assert (await client.get("/arena/v1/models")).status_code == 200
        assert (await client.get("/v1/models")).status_code == 404
        assert (await client.get("/healthz")).status_code == 200
        body = {"model": "gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]}
        first = await client.post("/arena/v1/chat/completions", json=body)
        assert first.status_code == 503  # no page: counted all the same
        second = await client.post("/arena/v1/chat/completions", json=body)
        assert second.status_code == 429 and int(second.headers["retry-after"]) >= 1
        other = await client.post("/arena/v1/chat/completions", json=body, headers={"Authorization": "Bearer k2"})
        assert other.status_code == 503, "another client has its own budget"


def test_no_route_or_dependency_runs_in_the_thread_pool():
    """Regression: FastAPI runs a plain `def` endpoint or dependency in its thread pool, a thread hop on
    every request (it doubled the API's own share of the pool benchmark's waiting time)."""
    import inspect

    from fastapi.routing import APIRoute

    from openai_front.routes import admin, monitoring, v1

    def calls(dependant):
        yield dependant.call
        for sub in dependant.dependencies:
            yield from calls(sub)

    app = create_app(assemble(Services()))
    routes = [*app.routes, *v1.router.routes, *admin.router.routes, *monitoring.router.routes]
    found = [call for route in routes if isinstance(route, APIRoute) for call in calls(route.dependant)]
    assert len(found) > 20
    sync = [getattr(c, "__qualname__", repr(c)) for c in found if not inspect.iscoroutinefunction(c)]
    assert not sync, sync
