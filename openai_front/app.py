"""The OpenAI-compatible server: thin routes over the services, errors registered in one place."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openai_front.errors import APIError, InvalidRequest, Unauthorized, error_body
from openai_front.protocol import ChatCompletionRequest
from openai_front.services import Services
from openai_front.serving_chat import ChatService, estimate_tokens

log = logging.getLogger(__name__)


def create_app(services: Services) -> FastAPI:
    app = FastAPI(title="lmarena-enhanced-proxy", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.services = services
    chat = ChatService(services)
    _register_errors(app)

    def require_key(request: Request) -> None:
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

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return services.health()

    @app.get("/v1/models", dependencies=[Depends(require_key)])
    async def list_models() -> dict[str, Any]:
        stats = services.pool.stats()
        data = []
        for model in services.models.all():
            row = stats.get(model.name, {})
            data.append(
                {
                    "id": model.name,
                    "object": "model",
                    "created": services.models.created,
                    "owned_by": model.organization,
                    "capabilities": model.capabilities,
                    "modality": model.modality,
                    "pooled_conversations": row.get("idle", 0) + row.get("busy", 0),
                }
            )
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", dependencies=[Depends(require_key)])
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        replay = await chat.start(body)
        prompt_tokens = estimate_tokens("".join(str(m.content or "") for m in body.messages))
        if not body.stream:
            return await chat.complete(replay, prompt_tokens)
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                async for chunk in chat.stream(replay, include_usage, prompt_tokens):
                    yield {"data": json.dumps(chunk, ensure_ascii=False)}
                yield {"data": "[DONE]"}
            except asyncio.CancelledError:
                log.info("client went away during a %s answer", replay.model.name)
                raise

        return EventSourceResponse(events(), ping=15, headers={"Cache-Control": "no-cache"})

    @app.get("/api/pool", dependencies=[Depends(require_key)])
    async def pool_list(model: str | None = None) -> dict[str, Any]:
        convs = [services.pool.describe(c) for c in services.pool if model is None or c.model == model]
        return {"conversations": convs, "stats": services.pool.stats()}

    @app.delete("/api/pool/{session_id}", dependencies=[Depends(require_key)])
    async def pool_remove(session_id: str) -> dict[str, Any]:
        if not services.pool.remove(session_id):
            raise APIError(f"No conversation {session_id} in the pool", status=404, code="not_found")
        return {"removed": session_id}

    @app.get("/api/pages", dependencies=[Depends(require_key)])
    async def pages_list() -> dict[str, Any]:
        return {"pages": [p.describe() for p in services.pages.pages.values()]}

    @app.websocket("/__bridge/ws")
    async def page_channel(ws: WebSocket) -> None:
        await services.pages.serve(ws)

    return app


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
