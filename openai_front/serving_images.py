"""Image generation: `POST /v1/images/generations`, served by chat answers of image models.

The site gives one image per answer, so `n` images are `n` answers fetched in parallel (each on its
own conversation, waiting in the pool's queue like any request).
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import TYPE_CHECKING, Any

from openai_front.errors import APIError, InvalidRequest, ModelNotFound, UpstreamError
from openai_front.protocol import ChatCompletionRequest, ChatMessage, ImageRequest
from openai_front.serving_chat import ChatService
from relay.services import Services

if TYPE_CHECKING:
    import httpx


class ImageService:
    def __init__(self, services: Services, chat: ChatService) -> None:
        self.services = services
        self.chat = chat

    async def generate(self, request: ImageRequest) -> dict[str, Any]:
        model = self.services.models.resolve(request.model)
        if model is None:
            raise ModelNotFound(f"The model {request.model!r} does not exist", param="model")
        if not model.capabilities["image_output"]:
            raise InvalidRequest(f"The model {model.name!r} does not make images", param="model")
        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the others
                tasks = [group.create_task(self._one(model.name, request.prompt)) for _ in range(request.n)]
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        urls = [task.result() for task in tasks]
        if request.response_format == "b64_json":
            import httpx  # only here: a few MiB the tool's one process does not carry until it is used

            timeout = self.services.settings.image_fetch_timeout
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=True) as http:
                data = [{"b64_json": await self._fetch(http, url)} for url in urls]
        else:
            data = [{"url": url} for url in urls]
        return {"created": int(time.time()), "data": data}

    async def _one(self, model: str, prompt: str) -> str:
        record = self.services.requests.start(model, False)
        chat_request = ChatCompletionRequest(model=model, messages=[ChatMessage(role="user", content=prompt)])
        try:
            replay = await self.chat.start(chat_request, record)
            result = await self.chat.complete(replay)
        except APIError as e:
            record.close(e.status, e.message, e.source)
            raise
        except BaseException as e:  # cancelled: a sibling failed, or the client left
            record.close(499, str(e) or type(e).__name__, "client")
            raise
        images = result["choices"][0]["message"].get("images") or []
        if not images:
            raise UpstreamError(f"{model} answered without an image")
        return str(images[0])

    @staticmethod
    async def _fetch(http: httpx.AsyncClient, url: str) -> str:
        import httpx

        try:
            response = await http.get(url)
            response.raise_for_status()
        except httpx.HTTPError as e:
            raise UpstreamError(f"the generated image could not be fetched: {e}") from None
        return base64.b64encode(response.content).decode("ascii")
