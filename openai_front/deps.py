"""Small dependencies the routes share: the services on `app.state`, the API key, the rate limit.

All `async def`: FastAPI runs a plain `def` dependency in its thread pool, a hop per request.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, Request

from openai_front.errors import RateLimited, Unauthorized
from openai_front.ratelimit import RateLimiter
from openai_front.serving_chat import ChatService
from openai_front.serving_images import ImageService
from relay.canary import Canary
from relay.doctor import Doctor
from relay.monitor import Monitor
from relay.prefill import Prefiller
from relay.services import Services


async def _services(request: Request) -> Services:
    return request.app.state.services


async def _chat(request: Request) -> ChatService:
    return request.app.state.chat


async def _images(request: Request) -> ImageService:
    return request.app.state.images


async def _prefiller(request: Request) -> Prefiller:
    return request.app.state.prefiller


async def _canary(request: Request) -> Canary:
    return request.app.state.canary


async def _doctor(request: Request) -> Doctor:
    return request.app.state.doctor


async def _monitor(request: Request) -> Monitor:
    return request.app.state.monitor


ServicesDep = Annotated[Services, Depends(_services)]
ChatDep = Annotated[ChatService, Depends(_chat)]
ImagesDep = Annotated[ImageService, Depends(_images)]
PrefillerDep = Annotated[Prefiller, Depends(_prefiller)]
CanaryDep = Annotated[Canary, Depends(_canary)]
DoctorDep = Annotated[Doctor, Depends(_doctor)]
MonitorDep = Annotated[Monitor, Depends(_monitor)]


async def require_key(request: Request) -> None:
    keys = request.app.state.services.settings.api_keys
    if not keys:
        return
    header = request.headers.get("authorization", "")
    # OpenAI's clients send a bearer token; Anthropic's (Claude Code, the SDKs) send x-api-key
    given = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "").strip()
    # compare against every key, so timing tells nothing about which one nearly matched
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given.encode(), key.encode())
    if not given or not matched:
        raise Unauthorized("Missing or invalid API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>')")


async def limit_rate(request: Request) -> None:
    limiter: RateLimiter = request.app.state.limiter
    limiter.per_minute = request.app.state.services.settings.rate_limit
    auth = request.headers.get("authorization", "") or request.headers.get("x-api-key", "")
    client = "key:" + hashlib.sha256(auth.encode()).hexdigest()[:16] if auth else (
        "ip:" + (request.client.host if request.client else "?"))
    wait = limiter.check(client)
    if wait is not None:
        raise RateLimited(f"More than {limiter.per_minute} requests a minute from this client",
                          retry_after=max(1.0, wait))
