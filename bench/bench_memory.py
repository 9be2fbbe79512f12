"""Memory of the tool's one process (proxy + API), against mitmdump alone doing the same browsing.

    .venv/bin/python bench/bench_memory.py [--models 20] [--queued 500]

1. mitmdump without the tool's script: a browser loads the (simulated) site through it and chats once.
2. The tool, idle: the same browsing, the page connected, one pooled conversation.
3. The tool with `--queued` streaming requests over `--models` models: each model gets one conversation
   (the tool's own prefill, one per model), the simulator then answers so slowly that the first request of
   each model holds its conversation and all the others wait in their model's queue.
4. The same tool once every client has gone (all leases back, all queues empty).

Prints the resident memory (VmRSS) of each, in MiB, then what loading each layer of the tool costs.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from bench.procstat import rss_mib  # noqa: E402
from simulator.stack import Stack, chat_in_page, wait_until  # noqa: E402

MODEL = "gemini-2.5-pro"
SETTLE = 3.0  # seconds idle before a reading


def browse(stack: Stack, playwright: Any) -> Any:
    """The person's browsing: the site's page, one chat in it. Returns the browser (kept open)."""
    browser = playwright.chromium.launch(**stack.launch_args())
    page = browser.new_page()
    page.goto("https://lmarena.ai/?mode=direct")
    chat_in_page(page, MODEL, "Hi")
    return browser


def pool_totals(stack: Stack) -> dict[str, int]:
    rows = httpx.get(stack.api_base + "/healthz", timeout=30).json()["pool"].values()
    return {key: sum(row[key] for row in rows) for key in ("total", "ready", "busy", "waiting")}


async def queue_up(stack: Stack, models: list[str], per_model: int, release: threading.Event) -> None:
    """Open `per_model` streaming requests for each model and hold them open until `release`."""
    limits = httpx.Limits(max_connections=len(models) * per_model + 10)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:

        async def one(model: str) -> None:
            body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "Queued"}]}
            async with client.stream("POST", stack.api_base + "/v1/chat/completions", json=body) as response:
                async for _ in response.aiter_lines():
                    pass

        tasks = [asyncio.create_task(one(m)) for m in models for _ in range(per_model)]
        await asyncio.get_running_loop().run_in_executor(None, release.wait)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def measure_queued(stack: Stack, models: list[str], per_model: int) -> tuple[float, dict[str, int]]:
    """The tool's RSS while the requests are held (clients in a thread of their own: playwright's sync API
    owns this thread's event loop)."""
    release = threading.Event()
    clients = threading.Thread(target=lambda: asyncio.run(queue_up(stack, models, per_model, release)))
    clients.start()
    try:
        expected = len(models) * (per_model - 1)

        def queued() -> dict[str, int] | None:
            totals = pool_totals(stack)
            return totals if totals["waiting"] >= expected and totals["busy"] == len(models) else None

        totals = wait_until(queued, 120, f"{expected} requests waiting")
        time.sleep(SETTLE)
        assert stack.tool is not None
        return rss_mib(stack.tool.proc.pid), totals
    finally:
        release.set()
        clients.join(60)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--queued", type=int, default=500, help="streaming requests in all (0: idle readings only)")
    args = parser.parse_args()
    per_model = max(2, args.queued // args.models)
    readings: dict[str, float] = {}
    with sync_playwright() as p:
        plain = Stack(Path(tempfile.mkdtemp(prefix="arena-mem-plain-")), cadence_ms=5, generation="retry-honoured")
        plain.start_simulator()
        plain.start_plain_proxy()
        try:
            browser = browse(plain, p)
            time.sleep(SETTLE)
            assert plain.tool is not None
            readings["mitmdump alone, same browsing"] = rss_mib(plain.tool.proc.pid)
            browser.close()
        finally:
            plain.stop()

        stack = Stack(Path(tempfile.mkdtemp(prefix="arena-mem-")), cadence_ms=5, generation="retry-honoured",
                      tool_options={"arena_sessions_per_model": 1, "arena_keepalive": 5, "arena_queue_timeout": 600,
                                    "arena_prefill": "off"})
        stack.start()
        try:
            browser = browse(stack, p)
            stack.wait_page_connected()
            time.sleep(SETTLE)
            assert stack.tool is not None
            pid = stack.tool.proc.pid
            readings["tool, idle (page connected, one conversation)"] = rss_mib(pid)
            if not args.queued:
                return report(readings)
            listed = httpx.get(stack.api_base + "/v1/models", timeout=30).json()["data"]
            models = [m["id"] for m in listed if m.get("modality") == "chat" and m["id"] != MODEL
                      and not m["id"].startswith("battle")][: args.models - 1]
            models.insert(0, MODEL)
            started = httpx.post(stack.api_base + "/api/prefill", json={"models": models[1:], "per_model": 1},
                                 timeout=30)
            if started.status_code != 202:
                raise RuntimeError(f"the prefill did not start: {started.text}")
            wait_until(lambda: pool_totals(stack)["ready"] >= len(models), 300, "one conversation per model")
            httpx.post(stack.sim_base + "/__sim/config", json={"cadence_ms": 600_000}, timeout=10)
            rss, totals = measure_queued(stack, models, per_model)
            readings[f"tool, {totals['busy'] + totals['waiting']} requests over {len(models)} models "
                     f"({totals['waiting']} queued)"] = rss
            wait_until(lambda: (t := pool_totals(stack))["busy"] == 0 and t["waiting"] == 0, 60, "every lease back")
            time.sleep(SETTLE)
            readings["tool, after every client left (leases back, queues empty)"] = rss_mib(pid)
            browser.close()
        finally:
            stack.stop()
    return report(readings)


# Where the idle figure goes: a fresh interpreter loads mitmproxy's addons, then the tool's layers one by one,
# in the order the tool's script loads them, and reads its own VmRSS after each.
IMPORT_STEPS = ("openai_front", "fastapi", "uvicorn", "sse_starlette", "prometheus_client", "sites.lmarena",
                "pool_store.storage", "relay.core", "openai_front.app", "addons.bridge")
IMPORT_PROBE = """
import sys, importlib
sys.path.insert(0, sys.argv[1])
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
from mitmproxy.addons import default_addons
default_addons()
print('mitmproxy and its addons', rss())
for name in sys.argv[2:]:
    importlib.import_module(name)
    print(name, rss())
"""


def import_costs() -> list[tuple[str, float]]:
    done = subprocess.run([sys.executable, "-c", IMPORT_PROBE, str(ROOT), *IMPORT_STEPS], capture_output=True,
                          text=True, timeout=120, check=True)
    return [(line.rsplit(" ", 1)[0], float(line.rsplit(" ", 1)[1])) for line in done.stdout.splitlines()]


def report(readings: dict[str, float]) -> int:
    print(f"bench_memory: resident memory (VmRSS) of the one process, {SETTLE:.0f} s after each step settles")
    for name, value in readings.items():
        print(f"  {name:<62} {value:6.1f} MiB")
    steps = import_costs()
    print("what loading costs (a fresh interpreter, VmRSS after each import, in the tool's order):")
    previous = steps[0][1]
    for name, value in steps:
        print(f"  {name:<40} {value:6.1f} MiB  (+{value - previous:4.1f})")
        previous = value
    print(f"  the tool's layers over mitmproxy's own: +{steps[-1][1] - steps[0][1]:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
