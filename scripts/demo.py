"""Demo without an LMArena account: the tool, the simulator and a headless browser, end to end.

    bash scripts/demo.sh

1. starts the LMArena simulator (as the site is in 2026) and the tool (mitmdump -s addons/bridge.py), arena.ai
   mapped to the simulator;
2. opens https://arena.ai/text/direct in headless Chromium through the proxy (the tool's CA trusted, as a user
   would) and signs in (Direct chat needs an account);
3. chats once in the page, as a person would: the conversation is captured into the pool;
4. asks the same model through the openai SDK, streaming: the answer comes back through the page, by the way the
   tool's canary found the site takes a client's messages.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from simulator.stack import Stack, chat_in_page, sign_in  # noqa: E402

MODEL = "gemini-2.5-pro"


def main() -> int:
    stack = Stack(Path(tempfile.mkdtemp(prefix="arena-demo-")), cadence_ms=60)
    print("1. starting the simulator and the tool ...")
    stack.start_simulator()
    stack.start_tool(arena_canary_interval=900, arena_prefill="off")  # the canary as a user has it
    print(f"   proxy 127.0.0.1:{stack.proxy_port}, API {stack.api_base}/v1, simulator {stack.sim_base}")
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(**stack.launch_args())
            page = browser.new_page()
            print("2. opening https://arena.ai/text/direct in headless Chromium through the proxy, signing in ...")
            page.goto("https://arena.ai/text/direct")
            stack.wait_page_connected()
            sign_in(page)
            stack.wait_page_connected()
            print("   page connected to the tool")
            print(f"3. chatting once in the page with {MODEL} (as a person would) ...")
            in_page = chat_in_page(page, MODEL, "Hi")
            print(f"   page answer: {in_page['text']}")
            pool = httpx.get(stack.api_base + "/api/pool", timeout=10).json()
            print(f"   pool: {pool['stats']}")
            print("4. the openai SDK asks the same model, streaming:")
            client = openai.OpenAI(base_url=stack.api_base + "/v1", api_key="demo")
            stream = client.chat.completions.create(
                model=MODEL,
                stream=True,
                messages=[
                    {"role": "system", "content": "You are a demo."},
                    {"role": "user", "content": "Say something through the bridge, please."},
                ],
            )
            print("   ", end="")
            answer = ""
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    answer += chunk.choices[0].delta.content
                    print(chunk.choices[0].delta.content, end="", flush=True)
            browser.close()
            if "Say something through the bridge, please." not in answer:
                print("\n   FAILED: the answer does not echo the SDK's message", file=sys.stderr)
                return 1
            strategy = httpx.get(stack.api_base + "/api/strategy", timeout=10).json()["current"]
            print(f"\n   done: the SDK's messages reached the model through the page (strategy {strategy!r}, "
                  "chosen by the tool's canary).")
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
