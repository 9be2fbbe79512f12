"""The HTTP app: routers over the core, errors registered in one place.

The OpenAI, admin and monitoring routes sit under `settings.route_prefix` (read once, here);
`/healthz` and the page channel stay at the root.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Callable

from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from openai_front.anthropic_protocol import error_body as anthropic_error
from openai_front.errors import APIError, InvalidRequest, error_body, from_core
from openai_front.ratelimit import RateLimiter
from openai_front.routes import admin, anthropic, monitoring, v1
from openai_front.serving_chat import ChatService
from openai_front.serving_images import ImageService
from relay.core import Core
from relay.errors import RelayError

log = logging.getLogger(__name__)


def create_app(core: Core) -> FastAPI:
    app = FastAPI(title="lmarena-enhanced-proxy", docs_url=None, redoc_url=None, openapi_url=None)
    services = core.services
    chat = ChatService(services, core.engine)
    app.state.services = services
    app.state.chat = chat
    app.state.images = ImageService(services, chat)
    app.state.prefiller = core.prefiller
    app.state.canary = core.canary
    app.state.doctor = core.doctor
    app.state.monitor = core.monitor
    app.state.limiter = RateLimiter(services.settings.rate_limit)
    prefix = services.settings.route_prefix
    for router in (v1.router, anthropic.router, admin.router, monitoring.router):
        app.include_router(router, prefix=prefix)
    app.add_middleware(BodyLimit, limit=lambda: services.settings.max_request_bytes)
    _register_errors(app)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return services.health()

    @app.websocket("/__bridge/ws")
    async def page_channel(ws: WebSocket) -> None:
        await services.pages.serve(ws)

    return app


class BodyLimit:
    """A request body over the limit gets 413 before the app reads it all (counted as it arrives, so a
    chunked body without a length is held to it too)."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(scope, send, limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # raised while the app reads the body: the error handlers answer it
                    raise StarletteHTTPException(413, _too_large(limit))
            return message

        await self.app(scope, counted, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, limit: int) -> None:
        body = error_body(_too_large(limit), "invalid_request_error", "request_too_large")
        await JSONResponse(body, status_code=413)(scope, _drain, send)


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit // 1048576} MB (arena_max_request_mb)"


async def _drain() -> Message:
    return {"type": "http.disconnect"}


_UNION_MEMBER = re.compile(r"(str|int|float|bool|none|list|dict|function-\w+)(\[.*\])?")


def _shaped(request: Request, exc: APIError) -> JSONResponse:
    """An error in the shape of the API the request was for (Anthropic's for its routes, OpenAI's otherwise)."""
    anthropic_route = request.url.path.rstrip("/").endswith(anthropic.PATHS)
    body = anthropic_error(exc) if anthropic_route else exc.body()
    return JSONResponse(body, status_code=exc.status, headers=exc.headers())


def _register_errors(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _shaped(request, exc)

    @app.exception_handler(RelayError)
    async def core_error(request: Request, exc: RelayError) -> JSONResponse:
        return await api_error(request, from_core(exc))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        # the field's path, without the names pydantic gives a union's members ("str", "list[...]")
        loc = [str(p) for p in first.get("loc", ()) if p != "body" and not _UNION_MEMBER.fullmatch(str(p))]
        param = ".".join(loc) or None
        msg = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            msg = "The request body is not valid JSON"
        elif first.get("type") == "model_attributes_type":
            msg = "The request body must be a JSON object"
        err = InvalidRequest(f"{msg}" + (f" (at {param})" if param else ""), param=param)
        return _shaped(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 413: "request_too_large"}.get(exc.status_code)
        message = str(exc.detail)
        if exc.status_code == 400 and message == "There was an error parsing the body":  # FastAPI's words
            message = "The request body could not be read: it must be JSON in UTF-8, nested less deeply than 500"
        return _shaped(request, InvalidRequest(message, code=code, status=exc.status_code))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error while serving %s", request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}"), status_code=500)
