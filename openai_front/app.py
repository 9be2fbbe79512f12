"""The OpenAI-compatible server: thin routes over the services, errors registered in one place."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import logging
from importlib import resources
from typing import Any, AsyncIterator

from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.exceptions import HTTPException as StarletteHTTPException

from openai_front.canary import Canary
from openai_front.errors import (
    APIError,
    InvalidRequest,
    ModelNotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
    error_body,
)
from openai_front.monitor import Monitor
from openai_front.prefill import Prefiller, select_models
from openai_front.protocol import ChatCompletionRequest, ImageRequest, PrefillRequest, RetireRequest
from openai_front.ratelimit import RateLimiter
from openai_front.requestlog import RequestRecord
from openai_front.services import Services
from openai_front.serving_chat import ChatService, Replay, close_record
from openai_front.serving_images import ImageService

log = logging.getLogger(__name__)


def create_app(
    services: Services,
    chat: ChatService | None = None,
    prefiller: Prefiller | None = None,
    canary: Canary | None = None,
) -> FastAPI:
    """The app. The OpenAI and pool routes sit under `settings.route_prefix` (read once, here);
    `/healthz` and the page channel stay at the root."""
    app = FastAPI(title="lmarena-enhanced-proxy", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    chat = chat or ChatService(services)
    prefiller = prefiller or Prefiller(services, chat)
    canary = canary or Canary(services, chat)
    images = ImageService(services, chat)
    monitor = services.monitor if services.monitor is not None else Monitor(services)
    services.monitor = monitor
    limiter = RateLimiter(services.settings.rate_limit)
    api = APIRouter()
    _register_errors(app)

    async def require_key(request: Request) -> None:
        keys = services.settings.api_keys
        if not keys:
            return
        header = request.headers.get("authorization", "")
        given = header[7:].strip() if header[:7].lower() == "bearer " else ""
        # compare against every key, so timing tells nothing about which one nearly matched
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(given.encode(), key.encode())
        if not given or not matched:
            raise Unauthorized("Missing or invalid API key: send 'Authorization: Bearer <key>'")

    async def limit_rate(request: Request) -> None:
        limiter.per_minute = services.settings.rate_limit
        auth = request.headers.get("authorization", "")
        client = "key:" + hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else (
            "ip:" + (request.client.host if request.client else "?"))
        wait = limiter.check(client)
        if wait is not None:
            raise RateLimited(
                f"More than {limiter.per_minute} requests a minute from this client", retry_after=max(1.0, wait)
            )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return services.health()

    @api.get("/v1/models", dependencies=[Depends(require_key)])
    async def list_models() -> dict[str, Any]:
        stats = services.pool.stats()
        aliases: dict[str, list[str]] = {}
        for alias, name in services.models.aliases().items():
            aliases.setdefault(name, []).append(alias)
        data = []
        for model in services.models.all():
            row = stats.get(model.name, {})
            pooled = row.get("idle", 0) + row.get("busy", 0)
            data.append(
                {
                    "id": model.name,
                    "object": "model",
                    "created": services.models.created,
                    "owned_by": model.organization,
                    "capabilities": model.capabilities,
                    "modality": model.modality,
                    "pooled_conversations": pooled,
                    "available": pooled > 0,
                    "aliases": aliases.get(model.name, []),
                }
            )
        return {"object": "list", "data": data}

    @api.post("/v1/chat/completions", dependencies=[Depends(require_key), Depends(limit_rate)])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        record = services.requests.start(body.model, body.stream)
        pending = PendingStart(chat, chat.start(body, record))
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            # A stream whose answer has not begun within one keep-alive interval is committed:
            # 200 now, SSE comments while it waits, any later error in-band. Until then, and
            # always for non-streaming requests, errors are real HTTP statuses.
            wait = services.settings.keepalive if body.stream else None
            done, _ = await asyncio.wait({pending.task, gone}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            if pending.task not in done and gone in done:
                await pending.cancel()
                close_record(record, 499, "the client went away while waiting", "client")
                return Response(status_code=499)
            if pending.task in done:
                try:
                    replay: Replay | None = pending.claim_now()
                except APIError as e:
                    close_record(record, e.status, e.message, "tool")
                    raise
                if not body.stream:
                    assert replay is not None
                    return await _unless_gone(chat.complete(replay), gone, record)
            else:
                replay = None
        finally:
            gone.cancel()
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events() -> AsyncIterator[dict[str, str] | ServerSentEvent]:
            try:
                current = replay
                if current is None:
                    # committed before the answer began: say so at once, then keep-alives until it does
                    yield ServerSentEvent(comment=f"waiting for a conversation of {body.model}")
                    try:
                        current = await pending.claim()
                    except APIError as e:
                        close_record(record, e.status, e.message, "tool")
                        yield {"data": json.dumps(e.body(), ensure_ascii=False)}
                        yield {"data": "[DONE]"}
                        return
                async for chunk in chat.stream(current, include_usage):
                    yield {"data": json.dumps(chunk, ensure_ascii=False)}
                yield {"data": "[DONE]"}
            except asyncio.CancelledError:
                await pending.cancel()
                close_record(record, 499, "the client went away", "client")
                log.info("client went away during a %s request", body.model)
                raise

        return EventSourceResponse(
            events(), ping=services.settings.keepalive, headers={"Cache-Control": "no-cache"}
        )

    @api.get("/api/pool", dependencies=[Depends(require_key)])
    async def pool_list(model: str | None = None) -> dict[str, Any]:
        convs = [services.pool.describe(c) for c in services.pool if model is None or c.model == model]
        return {"conversations": convs, "stats": services.pool.stats()}

    @api.delete("/api/pool/{session_id}", dependencies=[Depends(require_key)])
    async def pool_remove(session_id: str) -> dict[str, Any]:
        if not services.pool.remove(session_id):
            raise APIError(f"No conversation {session_id} in the pool", status=404, code="not_found")
        return {"removed": session_id}

    @api.post("/api/pool/retire", dependencies=[Depends(require_key)])
    async def pool_retire(body: RetireRequest) -> dict[str, Any]:
        known = services.models.resolve(body.model)
        name = known.name if known else body.model
        if known is None and not any(c.model == name for c in services.pool):
            raise ModelNotFound(f"The model {body.model!r} does not exist", param="model")
        return {"model": name, "retired": services.pool.retire_where("retired through the API", model=name)}

    @api.post("/api/prefill", dependencies=[Depends(require_key)], status_code=202)
    async def prefill_start(body: PrefillRequest) -> dict[str, Any]:
        if prefiller.running:
            raise APIError("A prefill is already running", status=409, code="prefill_running")
        if not services.pages.ready_pages():
            raise Unavailable("No LMArena page is ready to create conversations", retry_after=10)
        spec = ",".join(body.models) if isinstance(body.models, list) else body.models
        try:
            models = select_models(services, spec or "text")
        except ValueError as e:
            raise ModelNotFound(str(e), param="models") from None
        per_model = body.per_model or services.settings.sessions_per_model
        run = prefiller.start(models, per_model, body.message or services.settings.prefill_message)
        return {"run": run.to_dict()}

    @api.get("/api/prefill", dependencies=[Depends(require_key)])
    async def prefill_status() -> dict[str, Any]:
        return {"run": prefiller.run.to_dict() if prefiller.run else None}

    @api.get("/api/strategy", dependencies=[Depends(require_key)])
    async def strategy_state() -> dict[str, Any]:
        return services.strategy.describe()

    @api.post("/api/canary", dependencies=[Depends(require_key)])
    async def canary_run() -> dict[str, Any]:
        await canary.run()  # the result becomes the strategy's last canary
        return services.strategy.describe()

    @api.get("/api/requests", dependencies=[Depends(require_key)])
    async def requests_recent(limit: int = 100, model: str | None = None) -> dict[str, Any]:
        return {"requests": services.requests.recent(min(max(limit, 1), 1000), model)}

    @api.get("/api/requests/{request_id}", dependencies=[Depends(require_key)])
    async def request_detail(request_id: int) -> dict[str, Any]:
        record = services.requests.find(request_id)
        if record is None:
            raise APIError(f"No request {request_id} in the recent log", status=404, code="not_found")
        return record.to_dict()

    @api.get("/api/events", dependencies=[Depends(require_key)])
    async def events_stream(interval: float = 1.0) -> EventSourceResponse:
        """The dashboard's live feed: a snapshot every `interval` seconds."""

        async def snapshots() -> AsyncIterator[dict[str, str]]:
            while True:
                snap = monitor.snapshot()
                snap["recent"] = services.requests.recent(200)
                yield {"event": "snapshot", "data": json.dumps(snap, ensure_ascii=False)}
                await asyncio.sleep(min(max(interval, 0.2), 10.0))

        return EventSourceResponse(snapshots(), ping=15)

    @api.get("/metrics", dependencies=[Depends(require_key)])
    async def metrics() -> Response:
        return Response(monitor.prometheus(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @api.get("/dashboard")
    async def dashboard() -> Response:
        # the page itself holds no data; everything it shows comes from the key-protected API
        return Response(_dashboard_html(), media_type="text/html; charset=utf-8",
                        headers={"Cache-Control": "no-store", "Content-Security-Policy":
                                 "default-src 'self'; style-src 'self' 'unsafe-inline'; "
                                 "script-src 'self' 'unsafe-inline'; img-src 'self' data:"})

    @api.get("/api/pages", dependencies=[Depends(require_key)])
    async def pages_list() -> dict[str, Any]:
        return {"pages": [p.describe() for p in services.pages.pages.values()]}

    @api.post("/v1/images/generations", dependencies=[Depends(require_key), Depends(limit_rate)])
    async def image_generations(body: ImageRequest, request: Request) -> Any:
        return await images.generate(body)

    app.include_router(api, prefix=services.settings.route_prefix)

    @app.websocket("/__bridge/ws")
    async def page_channel(ws: WebSocket) -> None:
        await services.pages.serve(ws)

    return app


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone away (the request body is already read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_gone(work: Any, gone: asyncio.Future[None], record: RequestRecord) -> Any:
    """Run `work` unless the client disconnects first; then stop it (freeing what it holds)."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        try:
            return task.result()
        except APIError as e:
            close_record(record, e.status, e.message, "upstream")
            raise
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    close_record(record, 499, "the client went away", "client")
    return Response(status_code=499)


class PendingStart:
    """A request's way to its first answer line, owned by exactly one consumer.

    If the result arrives and nobody claims it (the client left in the instant before its
    stream began), it is given back after a grace period, so no lease is ever left behind.
    """

    GRACE = 5.0

    def __init__(self, chat: ChatService, coro: Any) -> None:
        self.chat = chat
        self.claimed = False
        self.task: asyncio.Task[Replay] = asyncio.ensure_future(coro)
        self.task.add_done_callback(self._arrived)

    def _arrived(self, task: asyncio.Task[Replay]) -> None:
        if not self.claimed and not task.cancelled() and task.exception() is None:
            asyncio.get_running_loop().call_later(self.GRACE, self._orphaned)

    def _orphaned(self) -> None:
        if not self.claimed:
            self.claimed = True
            self.chat.abandon(self.task.result())

    def claim_now(self) -> Replay:
        self.claimed = True
        return self.task.result()

    async def claim(self) -> Replay:
        replay = await self.task
        self.claimed = True
        return replay

    async def cancel(self) -> None:
        """Stop it; if it already got its first line, give everything back."""
        if self.claimed and self.task.done():
            return
        was_claimed, self.claimed = self.claimed, True
        if self.task.done():
            if not was_claimed and not self.task.cancelled() and self.task.exception() is None:
                self.chat.abandon(self.task.result())
            return
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@functools.cache
def _dashboard_html() -> str:
    return resources.files("openai_front").joinpath("static/dashboard.html").read_text("utf-8")


def _register_errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        param = ".".join(loc) or None
        msg = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            msg = "The request body is not valid JSON"
        elif first.get("type") == "model_attributes_type":
            msg = "The request body must be a JSON object"
        err = InvalidRequest(f"{msg}" + (f" (at {param})" if param else ""), param=param)
        return JSONResponse(err.body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if exc.status_code == 404 else None
        return JSONResponse(
            error_body(str(exc.detail), "invalid_request_error", code), status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving %s", request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}"), status_code=500)
