"""The tool's own routes: the pool, prefill, the strategy and its canary, recent requests, pages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from openai_front.deps import CanaryDep, DoctorDep, PrefillerDep, ServicesDep, require_key
from openai_front.errors import APIError, ModelNotFound, Unavailable
from openai_front.protocol import ModelBody, PrefillRequest
from relay import report
from relay.prefill import select_models

router = APIRouter(prefix="/api", dependencies=[Depends(require_key)])


@router.get("/pool")
async def pool_list(services: ServicesDep, model: str | None = None) -> dict[str, Any]:
    convs = [services.pool.describe(c) for c in services.pool if model is None or c.model == model]
    return {"conversations": convs, "stats": services.pool.stats()}


@router.delete("/pool/{session_id}")
async def pool_remove(session_id: str, services: ServicesDep) -> dict[str, Any]:
    if not services.pool.remove(session_id):
        raise APIError(f"No conversation {session_id} in the pool", status=404, code="not_found")
    return {"removed": session_id}


@router.post("/pool/retire")
async def pool_retire(body: ModelBody, services: ServicesDep) -> dict[str, Any]:
    known = services.models.resolve(body.model)
    name = known.name if known else body.model
    if known is None and not any(c.model == name for c in services.pool):
        raise ModelNotFound(f"The model {body.model!r} does not exist", param="model")
    return {"model": name, "retired": services.pool.retire_where("retired through the API", model=name)}


@router.get("/targets")
async def targets_list(services: ServicesDep) -> dict[str, Any]:
    """Models the pool keeps stocked (topped up to arena_sessions_per_model when one is lost)."""
    return {"models": sorted(services.pool.targets()), "per_model": services.settings.sessions_per_model}


@router.post("/targets")
async def targets_add(body: ModelBody, services: ServicesDep) -> dict[str, Any]:
    known = services.models.resolve(body.model)
    if known is None:
        raise ModelNotFound(f"The model {body.model!r} does not exist", param="model")
    services.pool.add_target(known.name)
    return {"models": sorted(services.pool.targets())}


@router.delete("/targets/{model:path}")
async def targets_remove(model: str, services: ServicesDep) -> dict[str, Any]:
    known = services.models.resolve(model)
    if not services.pool.remove_target(known.name if known else model):
        raise APIError(f"{model} is not kept stocked", status=404, code="not_found")
    return {"models": sorted(services.pool.targets())}


@router.post("/prefill", status_code=202)
async def prefill_start(body: PrefillRequest, services: ServicesDep, prefiller: PrefillerDep) -> dict[str, Any]:
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


@router.get("/prefill")
async def prefill_status(prefiller: PrefillerDep) -> dict[str, Any]:
    return {"run": prefiller.run.to_dict() if prefiller.run else None}


@router.get("/strategy")
async def strategy_state(services: ServicesDep) -> dict[str, Any]:
    return services.strategy.describe()


@router.post("/canary")
async def canary_run(services: ServicesDep, canary: CanaryDep) -> dict[str, Any]:
    await canary.run()  # the result becomes the strategy's last canary
    return services.strategy.describe()


@router.get("/doctor")
async def doctor_run(doctor: DoctorDep, model: Annotated[list[str] | None, Query()] = None,
                     probe: bool = False, token: bool = True) -> dict[str, Any]:
    """Each link of a request's way, ok / warning / broken, with the fix; `probe=true` also sends one real
    request (it spends a site answer); `token=false` mints no token in the page (the dashboard's view)."""
    return await doctor.examine(model or [], probe, token)


@router.get("/report")
async def report_build(services: ServicesDep, doctor: DoctorDep, limit: int = 50) -> dict[str, Any]:
    """What a bug report needs, with every id, token, cookie and message text removed (relay/report.py)."""
    return report.build(services, await doctor.examine(), services.describe_options(), min(max(limit, 1), 500))


@router.get("/drift")
async def drift_list(services: ServicesDep) -> dict[str, Any]:
    """What the site did that this tool does not know, by shape (never content), with counts and times."""
    shapes = services.drift.describe()
    return {"shapes": shapes, "count": len(shapes)}


@router.get("/requests")
async def requests_recent(services: ServicesDep, limit: int = 100, model: str | None = None) -> dict[str, Any]:
    return {"requests": services.requests.recent(min(max(limit, 1), 1000), model)}


@router.get("/requests/{request_id}")
async def request_detail(request_id: int, services: ServicesDep) -> dict[str, Any]:
    record = services.requests.find(request_id)
    if record is None:
        raise APIError(f"No request {request_id} in the recent log", status=404, code="not_found")
    return record.to_dict()


@router.get("/mirrors")
async def mirrors_list(services: ServicesDep, model: str | None = None) -> dict[str, Any]:
    """The client conversations mirroring serves, and the site conversation each has (hashes stay inside)."""
    rows = [r for r in services.mirrors.describe() if model is None or r["model"] == model]
    return {"client_conversations": rows, "count": len(rows)}


@router.get("/pages")
async def pages_list(services: ServicesDep) -> dict[str, Any]:
    return {"pages": [p.describe() for p in services.pages.pages.values()]}
