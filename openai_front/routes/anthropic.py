"""The Anthropic Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens` (Claude Code and the
Anthropic SDKs). The API key may come as `x-api-key` as these clients send it; errors take Anthropic's shape."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request

from openai_front.anthropic_protocol import CountTokensRequest, MessagesRequest, messages_turns
from openai_front.deps import ChatDep, ServicesDep, limit_rate, require_key
from openai_front.serving_messages import MessagesCall
from openai_front.streaming import answer
from relay.output import estimate_tokens

router = APIRouter(dependencies=[Depends(require_key)])
PATHS = ("/v1/messages", "/v1/messages/count_tokens")


@router.post("/v1/messages", dependencies=[Depends(limit_rate)])
async def messages(body: MessagesRequest, request: Request, services: ServicesDep, chat: ChatDep) -> Any:
    record = services.requests.start(body.model, body.stream)
    return await answer(MessagesCall(chat, body), request, record, services.settings.keepalive)


@router.post("/v1/messages/count_tokens")
async def count_tokens(body: CountTokensRequest) -> dict[str, int]:
    """An estimate (one token per CJK character, one per four others) of what the site would be sent."""
    turns = messages_turns(body.system, body.messages)
    text = "".join(t.content for t in turns) + (json.dumps(body.tools, ensure_ascii=False) if body.tools else "")
    return {"input_tokens": estimate_tokens(text)}
