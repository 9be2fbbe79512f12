"""One file a user can attach to a bug report: versions, options (no secrets), the doctor's verdicts, the drift
shapes, the last requests' timings and outcomes, the line codes of the last failures, the pages' states.

Everything in it goes through `scrub` last: ids (UUIDs), tokens and keys (long opaque strings), cookies,
e-mail addresses and quoted text are replaced, and an error message keeps only its first two parts ("who:
what") so no answer or message text can ride along. The tool never keeps message text anyway (the mirror
keeps hashes); this is the second line.
"""

from __future__ import annotations

import platform
import re
import sys
import time
from importlib import metadata
from typing import Any

from relay.services import Services

SECRET_NAME = re.compile(r"api_keys?$|secret|password|cookie", re.I)  # arena_api_key; never the site's public key
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_OPAQUE = re.compile(r"[A-Za-z0-9_\-+/=.]{20,}")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+")
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'|“[^”]*”|‘[^’]*’|「[^」]*」")
_COOKIE = re.compile(r"(?i)(cookie|set-cookie|authorization|x-api-key)\s*[:=]\s*[^;\n]*")
REQUEST_FIELDS = ("id", "model", "stream", "status", "error", "error_source", "strategy", "side_call", "attempts",
                  "canary", "codes")


def build(services: Services, doctor: dict[str, Any] | None, options: dict[str, Any],
          limit: int = 50) -> dict[str, Any]:
    now = time.time()
    requests = [_request(r, now) for r in services.requests.recent(limit)]
    report = scrub({
        "options": {name: _option(name, value) for name, value in sorted(options.items())},
        "doctor": doctor,
        "drift": services.drift.describe(),
        "strategy": services.strategy.describe(),
        "pages": [{"state": p.state, "host": p.host, "guest": p.guest, "sitekey_source": p.sitekey_source,
                   "jobs": p.jobs} for p in services.pages.pages.values()],
        "pool": services.pool.stats(),
        "requests": requests,
        "failures": [{"id": r["id"], "status": r["status"], "error_source": r["error_source"], "codes": r["codes"]}
                     for r in requests if r["status"] not in (None, 200) and r.get("codes")][-10:],
    })
    # package versions and the system's name are ours to write, and are what a bug report needs first
    return {"generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)), "versions": versions(), **report}


def versions() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "(not installed)"

    return {"tool": version("lmarena-enhanced-proxy"), "mitmproxy": version("mitmproxy"),
            "fastapi": version("fastapi"), "python": sys.version.split()[0], "system": platform.platform()}


def _option(name: str, value: Any) -> Any:
    if SECRET_NAME.search(name):
        return "(set)" if value else "(empty)"
    return value


def _request(record: dict[str, Any], now: float) -> dict[str, Any]:
    out = {k: record.get(k) for k in REQUEST_FIELDS}
    queued = record.get("queued_at") or now

    def after(key: str) -> float | None:
        at = record.get(key)
        return round(at - queued, 3) if isinstance(at, (int, float)) else None

    out.update(ago=round(now - queued, 1), waited=after("leased_at"), ttft=after("first_token_at"),
               total=after("ended_at"))
    error = out.get("error")
    if isinstance(error, str):
        out["error"] = _error(error)
    return out


def _error(message: str) -> str:
    """Who and what ("LMArena: rate limited"), never what followed (a provider's text may quote anything)."""
    parts = message.split(": ")
    return ": ".join(parts[:2]) + (": …" if len(parts) > 2 else "")


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {str(k): scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def scrub_text(text: str) -> str:
    text = _COOKIE.sub(lambda m: f"{m.group(1)}: <removed>", text)
    text = _UUID.sub("<id>", text)
    text = _EMAIL.sub("<email>", text)
    text = _QUOTED.sub('"…"', text)
    return _OPAQUE.sub("<opaque>", text)
