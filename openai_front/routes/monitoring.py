"""What people and scrapers watch: the dashboard page, its live feed, Prometheus metrics."""

from __future__ import annotations

import asyncio
import functools
import json
from importlib import resources
from typing import AsyncIterator

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette.sse import EventSourceResponse

from openai_front.deps import MonitorDep, ServicesDep, require_key

router = APIRouter()
DASHBOARD_CSP = ("default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
                 "img-src 'self' data:")


@router.get("/api/events", dependencies=[Depends(require_key)])
async def events_stream(services: ServicesDep, monitor: MonitorDep, interval: float = 1.0) -> EventSourceResponse:
    """The dashboard's live feed: a snapshot every `interval` seconds."""

    async def snapshots() -> AsyncIterator[dict[str, str]]:
        while True:
            snap = monitor.snapshot()
            snap["recent"] = services.requests.recent(200)
            yield {"event": "snapshot", "data": json.dumps(snap, ensure_ascii=False)}
            await asyncio.sleep(min(max(interval, 0.2), 10.0))

    return EventSourceResponse(snapshots(), ping=15)


@router.get("/metrics", dependencies=[Depends(require_key)])
async def metrics(monitor: MonitorDep) -> Response:
    return Response(monitor.prometheus(), media_type=CONTENT_TYPE_LATEST)


@router.get("/dashboard")
async def dashboard() -> Response:
    # the page itself holds no data; everything it shows comes from the key-protected API
    return Response(_dashboard_html(), media_type="text/html; charset=utf-8",
                    headers={"Cache-Control": "no-store", "Content-Security-Policy": DASHBOARD_CSP})


@functools.cache
def _dashboard_html() -> str:
    return resources.files("openai_front").joinpath("static/dashboard.html").read_text("utf-8")
