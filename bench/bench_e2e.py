"""Cost of the bridge: the same answer fetched by the page directly vs. through the whole tool.

    .venv/bin/python bench/bench_e2e.py [--rounds 30] [--cadence-ms 15]

Both paths replay the same pooled conversation with the same one-message conversation, so the
simulator streams the same answer; rounds alternate between the paths so machine noise hits both.

- page direct: the page mints a token and PUTs the retry itself (through the proxy, as the person's
  browser always does), timing the first answer line and the end of the body;
- through the tool: the openai SDK streams from the API; the page script mints a token and PUTs the
  retry, the addon rewrites it and parses the answer, the API turns lines into SSE chunks.

Prints medians and p90 of time to first token and total time, and the ratio tool / direct.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402
from openai.types.chat import ChatCompletionMessageParam  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from relay.stats import percentile  # noqa: E402
from simulator.stack import Stack, chat_in_page  # noqa: E402

MODEL = "gemini-2.5-pro"
PROMPT = "Benchmark prompt: please answer with the usual sentence."

DIRECT_JS = """async ([sid, mid, modelId, prompt]) => {
  const t0 = performance.now();  // the page mints a fresh token for every request, as the tool's path does
  const token = await new Promise(r => grecaptcha.enterprise.ready(r))
    .then(() => grecaptcha.enterprise.execute('k', {action: 'chat_retry'}));
  const id = crypto.randomUUID();
  const body = {recaptchaV3Token: token, modelId: modelId, messages: [{id, role: 'user', content: prompt,
    parentMessageIds: [], participantPosition: 'a', evaluationSessionId: sid, status: 'pending'}]};
  const res = await fetch(`/nextjs-api/stream/retry-evaluation-session-message/${sid}/messages/${mid}`,
    {method: 'PUT', body: JSON.stringify(body), headers: {'Content-Type': 'text/plain;charset=UTF-8'}});
  const reader = res.body.getReader(); const dec = new TextDecoder();
  let first = null, buf = '';
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    buf += dec.decode(value, {stream: true});
    // a token counts once its whole line is in: what the site's own client can render
    if (first === null && /(^|\\n)a0:[^\\n]*\\n/.test(buf)) first = performance.now();
  }
  return {first: first - t0, total: performance.now() - t0};
}"""


def pct(values: list[float], q: float) -> float:
    value = percentile(values, q)
    assert value is not None
    return value


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--cadence-ms", type=float, default=15.0)
    args = parser.parse_args()

    stack = Stack(Path(tempfile.mkdtemp(prefix="arena-bench-")), cadence_ms=args.cadence_ms,
                  generation="retry-honoured")
    stack.start()
    results: dict[str, dict[str, list[float]]] = {"direct": {"first": [], "total": []},
                                                   "tool": {"first": [], "total": []}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(**stack.launch_args())
            page = browser.new_page()
            page.goto("https://lmarena.ai/?mode=direct")
            stack.wait_page_connected()
            chat_in_page(page, MODEL, "Hi")
            conv = httpx.get(stack.api_base + "/api/pool", timeout=10).json()["conversations"][0]
            client = openai.OpenAI(base_url=stack.api_base + "/v1", api_key="bench", max_retries=0)
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]

            def direct() -> tuple[float, float]:
                r = page.evaluate(DIRECT_JS, [conv["session_id"], conv["message_id"], conv["model_id"], PROMPT])
                return r["first"] / 1000, r["total"] / 1000

            def tool() -> tuple[float, float]:
                t0 = time.perf_counter()
                first = None
                text = []
                for chunk in client.chat.completions.create(model=MODEL, messages=messages, stream=True):
                    if chunk.choices and chunk.choices[0].delta.content:
                        if first is None:
                            first = time.perf_counter() - t0
                        text.append(chunk.choices[0].delta.content)
                assert first is not None and "Benchmark prompt" in "".join(text)
                return first, time.perf_counter() - t0

            for _ in range(3):  # warm both paths (connections, TLS, caches)
                direct()
                tool()
            for i in range(args.rounds):
                order = [("direct", direct), ("tool", tool)] if i % 2 == 0 else [("tool", tool), ("direct", direct)]
                for name, fn in order:
                    first, total = fn()
                    results[name]["first"].append(first)
                    results[name]["total"].append(total)
            browser.close()
    finally:
        stack.stop()

    print(f"bench_e2e: {args.rounds} rounds each, simulator cadence {args.cadence_ms:.0f} ms, same answer both ways")
    print(f"{'path':<8}{'TTFT p50':>12}{'TTFT p90':>12}{'total p50':>12}{'total p90':>12}")
    for name in ("direct", "tool"):
        r = results[name]
        print(f"{name:<8}{pct(r['first'], .5) * 1000:>10.1f}ms{pct(r['first'], .9) * 1000:>10.1f}ms"
              f"{pct(r['total'], .5) * 1000:>10.1f}ms{pct(r['total'], .9) * 1000:>10.1f}ms")
    d, t = results["direct"], results["tool"]
    ttft_ratio = pct(t["first"], .5) / pct(d["first"], .5)
    total_ratio = pct(t["total"], .5) / pct(d["total"], .5)
    added_ttft = (pct(t["first"], .5) - pct(d["first"], .5)) * 1000
    added_total = (pct(t["total"], .5) - pct(d["total"], .5)) * 1000
    print(f"ratio tool/direct: TTFT {ttft_ratio:.2f}x (+{added_ttft:.1f} ms), total {total_ratio:.2f}x "
          f"(+{added_total:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
