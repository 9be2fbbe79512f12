"""The tool's whole API app in process (no sockets, no proxy): for unit tests that speak HTTP to it."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

import httpx
import openai

from openai_front.app import create_app
from relay.core import assemble
from relay.services import Services


@asynccontextmanager
async def api_http(services: Services, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(assemble(services)))
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


@asynccontextmanager
async def api_sdk(services: Services) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official openai SDK against the app."""
    async with api_http(services) as client:
        yield openai.AsyncOpenAI(base_url="http://test/v1", api_key="k", http_client=client, max_retries=0)
