"""What a long conversation costs the site: bytes sent per request, and what the site ends up holding.

    .venv/bin/python bench/bench_mirror_bytes.py [--turns 10]

The same conversation (the openai SDK, one new user message a turn, each answer sent back as clients do) is
run through the whole tool (browser, proxy, API) against the simulator's 2026 generation twice in one run:
with the `mirror` strategy (each client conversation has its own site conversation; only the new message is
posted) and with `continue` pinned (the whole transcript, flattened, posted as a new turn of a pooled
conversation). Prints the request body size per turn side by side, and how many characters of user text the
site holds at the end (the site keeps every copy it is sent).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from simulator.stack import Stack, sign_in  # noqa: E402

MODEL = "gemini-2.5-pro"


def conversation(stack: Stack, turns: int) -> tuple[list[int], str]:
    """Run the conversation; the body size of each turn's request, and the site conversation it ended in."""
    client = openai.OpenAI(base_url=stack.api_base + "/v1", api_key="bench", max_retries=0, timeout=60)
    messages: list[dict[str, str]] = [{"role": "system", "content": "You are a patient tutor. " * 8}]
    sizes = []
    for turn in range(1, turns + 1):
        messages.append({"role": "user", "content": f"Question {turn}: explain step {turn} of the method, please."})
        before = len(httpx.get(stack.sim_base + "/__sim/log", timeout=10).json())
        answer = client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
        messages.append({"role": "assistant", "content": answer.choices[0].message.content or ""})
        sent = [e for e in httpx.get(stack.sim_base + "/__sim/log", timeout=10).json()[before:]
                if e["method"] in ("POST", "PUT") and "Question" in str(e["body"])]
        sizes.append(sum(e["bytes"] for e in sent))
    last = sent[-1]
    session = last["body"]["id"] if last["path"].endswith("create-evaluation") else last["path"].split("/")[-1]
    return sizes, session


def held(stack: Stack, session: str) -> int:
    data: dict[str, Any] = httpx.get(f"{stack.sim_base}/__sim/sessions/{session}", timeout=10).json()
    return sum(len(m["content"] or "") for m in data["messages"] if m["role"] == "user")


def prefill(stack: Stack) -> None:
    httpx.post(stack.api_base + "/api/prefill", json={"models": [MODEL], "per_model": 1}, timeout=30)
    for _ in range(200):
        run = httpx.get(stack.api_base + "/api/prefill", timeout=10).json()["run"]
        if run and not run["running"]:
            return
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args()
    stack = Stack(Path(tempfile.mkdtemp(prefix="arena-bench-bytes-")), cadence_ms=1)
    stack.start_simulator()
    stack.start_tool(arena_strategy="mirror", arena_prefill="off", arena_prefill_interval=0)
    results: dict[str, tuple[list[int], int]] = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(**stack.launch_args())
            page = browser.new_page()
            page.goto("https://arena.ai/text/direct")
            stack.wait_page_connected()
            sign_in(page)
            stack.wait_page_connected()
            for strategy in ("mirror", "continue"):
                if strategy != "mirror":
                    stack.restart_tool(arena_strategy=strategy)
                    stack.wait_page_connected(timeout=30)
                prefill(stack)
                sizes, session = conversation(stack, args.turns)
                results[strategy] = (sizes, held(stack, session))
            browser.close()
    finally:
        stack.stop()
    report(results, args.turns)
    return 0


def report(results: dict[str, tuple[list[int], int]], turns: int) -> None:
    mirror, flat = results["mirror"], results["continue"]
    print(f"bench_mirror_bytes: one conversation of {turns} turns through the tool, 2026 simulator")
    print(f"{'turn':>4}{'mirror B':>11}{'continue B':>13}{'ratio':>8}")
    for turn in range(turns):
        m, c = mirror[0][turn], flat[0][turn]
        print(f"{turn + 1:>4}{m:>11}{c:>13}{c / m:>7.1f}x")
    print(f"growth from turn 1 to turn {turns}: mirror {mirror[0][-1] / mirror[0][0]:.2f}x, "
          f"continue {flat[0][-1] / flat[0][0]:.2f}x")
    print(f"user text the site holds at the end: mirror {mirror[1]} chars, continue {flat[1]} chars "
          f"({flat[1] / mirror[1]:.1f}x)")


if __name__ == "__main__":
    sys.exit(main())
