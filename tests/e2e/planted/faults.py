"""A second mitmproxy script for the fail-closed tests: it plants failures inside the tool's hooks.

Loaded after addons/bridge.py (`Stack.extra_scripts`), it replaces three functions of the already
imported modules so that they raise on a marker:

- the rewriter's body builder, for a job whose conversation contains PLANTED-REWRITE;
- the site module's request reader, for the person's request whose body contains PLANTED-CAPTURE;
- the injector's host check, for a page whose address contains planted-inject.
"""

from __future__ import annotations

from typing import Any

import addons.inject as inject
import addons.rewrite as rewrite
from sites import lmarena as site


class PlantedFailure(RuntimeError):
    pass


_job_body = rewrite.job_body
_parse_request = site.parse_request
_arena_host = inject.arena_host


def job_body(job: Any, original: bytes, turns: list[Any]) -> bytes:
    if any("PLANTED-REWRITE" in turn.content for turn in turns):
        raise PlantedFailure("planted in the rewriter")
    return _job_body(job, original, turns)


def parse_request(call: Any, body: bytes) -> Any:
    if b"PLANTED-CAPTURE" in body:
        raise PlantedFailure("planted in the capture")
    return _parse_request(call, body)


def arena_host(flow: Any) -> Any:
    if "planted-inject" in flow.request.url:
        raise PlantedFailure("planted in the injector")
    return _arena_host(flow)


rewrite.job_body = job_body
site.parse_request = parse_request
inject.arena_host = arena_host
