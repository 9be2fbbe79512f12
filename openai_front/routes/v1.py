"""The OpenAI routes: models, chat completions, image generations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from openai_front.deps import ChatDep, ImagesDep, ServicesDep, limit_rate, require_key
from openai_front.errors import ModelNotFound
from openai_front.protocol import ChatCompletionRequest, ImageRequest
from openai_front.streaming import answer_chat
from relay.models import ModelInfo
from relay.services import Services

router = APIRouter(dependencies=[Depends(require_key)])


@router.get("/v1/models")
async def list_models(services: ServicesDep) -> dict[str, Any]:
    """Every model; those with conversations ready to serve first, then by name (case-insensitive): a
    client that preselects the first name picks one that answers at once."""
    stats, aliases = services.pool.stats(), _aliases(services)
    data = [_model_entry(services, model, stats, aliases) for model in services.models.all()]
    data.sort(key=lambda m: (not m["available"], m["id"].lower()))
    return {"object": "list", "data": data}


@router.get("/v1/models/{model_id:path}")
async def retrieve_model(model_id: str, services: ServicesDep) -> dict[str, Any]:
    model = services.models.resolve(model_id)
    if model is None:
        raise ModelNotFound(f"The model {model_id!r} does not exist", param="model")
    return _model_entry(services, model, services.pool.stats(), _aliases(services))


def _aliases(services: Services) -> dict[str, list[str]]:
    aliases: dict[str, list[str]] = {}
    for alias, name in services.models.aliases().items():
        aliases.setdefault(name, []).append(alias)
    return aliases


def _model_entry(services: Services, model: ModelInfo, stats: dict[str, dict[str, int]],
                 aliases: dict[str, list[str]]) -> dict[str, Any]:
    row = stats.get(model.name, {})
    pooled = row.get("ready", 0) + row.get("busy", 0)
    entry = {
        "id": model.name,
        "object": "model",
        "created": services.models.created,
        "owned_by": model.organization,
        "capabilities": model.capabilities,
        "modality": model.modality,
        "pooled_conversations": pooled,
        "available": pooled > 0,
        "aliases": aliases.get(model.name, []),
        "router": model.router,
    }
    if model.router:
        entry["description"] = "the site's router: it picks a model for each prompt, not one model itself"
    return entry


@router.post("/v1/chat/completions", dependencies=[Depends(limit_rate)])
async def chat_completions(body: ChatCompletionRequest, request: Request, services: ServicesDep,
                           chat: ChatDep) -> Any:
    record = services.requests.start(body.model, body.stream)
    return await answer_chat(chat, body, request, record, services.settings.keepalive)


@router.post("/v1/images/generations", dependencies=[Depends(limit_rate)])
async def image_generations(body: ImageRequest, images: ImagesDep) -> Any:
    return await images.generate(body)
