"""Cost of the bridge: the same answer fetched by the page alone vs. through the whole tool, side by side.

    .venv/bin/python bench/bench_e2e.py [--rounds 30] [--cadence-ms 20] [--premint both|off|on]

All paths replay the same pooled conversation with the same 35-word message, so the simulator streams the
same answer (43 text lines); the rounds interleave the paths (the order turns each round) so machine noise
hits them alike, after 3 warm-ups of each. Every answer is checked whole.

- page, token ready: the page fetches the retry itself with a token minted before the clock starts (the
  limit if minting cost nothing);
- page mints + fetches: the page mints a reCAPTCHA token, then fetches (the reference: what today's site
  costs the page itself);
- tool: the openai SDK streams from the API; the page mints and sends the retry, the proxy rewrites it and
  reads the answer, the API turns its lines into SSE chunks (the token is asked for on arrival);
- tool, premint on: a second tool, simulator and browser set up alike, with `arena_premint_tokens` on
  (a token kept ready in the page), measured in the same rounds (`--premint off` leaves it out);
- tool, raw HTTP client: the tool's path read with httpx and a few lines of SSE parsing instead of the
  openai SDK, to tell the SDK's own client-side work from the tool's.

Printed per path: medians (and p90) of time to first token and total, measured where the answer is
read (the page, or the SDK client); the simulator's delivery time (first chunk to last, as its server
hands them over: a slower reader or a busy machine stretches it); the CPU the tool's process spent per
request (utime + stime from /proc, summed over the path's rounds, so the 10 ms tick averages out): the
page paths' CPU is what proxying the same traffic costs; and the tool process's RSS.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import openai  # noqa: E402
from openai.types.chat import ChatCompletionMessageParam  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

from bench.procstat import cpu_seconds, rss_mib  # noqa: E402
from relay.stats import percentile  # noqa: E402
from simulator.stack import Stack, chat_in_page  # noqa: E402
from sites import lmarena as site  # noqa: E402

MODEL = "gemini-2.5-pro"
# 35 words, under the simulator's 200-character echo: an answer of 43 text lines
PROMPT = ("Benchmark prompt of thirty five words: tell me how the weather looks today, what I should wear "
          "outside, and whether a short walk by the river is a good idea before the evening rain arrives here")

PAGE_JS = """async ([sid, mid, modelId, prompt, premint, key]) => {
  const mint = () => new Promise(r => grecaptcha.enterprise.ready(r))
    .then(() => grecaptcha.enterprise.execute(key, {action: 'chat_retry'}));
  const ready = premint ? await mint() : null;
  const t0 = performance.now();
  const token = ready || await mint();
  const id = crypto.randomUUID();
  const body = {recaptchaV3Token: token, modelId: modelId, messages: [{id, role: 'user', content: prompt,
    parentMessageIds: [], participantPosition: 'a', evaluationSessionId: sid, status: 'pending'}]};
  const res = await fetch(`/nextjs-api/stream/retry-evaluation-session-message/${sid}/messages/${mid}`,
    {method: 'PUT', body: JSON.stringify(body), headers: {'Content-Type': 'text/plain;charset=UTF-8'}});
  if (!res.ok) throw new Error(`the site answered ${res.status}: ${await res.text()}`);
  const reader = res.body.getReader(); const dec = new TextDecoder();
  let first = null, buf = '';
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    buf += dec.decode(value, {stream: true});
    // a token counts once its whole line is in: what the site's own client can render
    if (first === null && /(^|\\n)a0:[^\\n]*\\n/.test(buf)) first = performance.now();
  }
  const text = buf.split('\\n').filter(l => l.startsWith('a0:')).map(l => JSON.parse(l.slice(3))).join('');
  return {first: first - t0, total: performance.now() - t0, text};
}"""

PATHS = {"page_ready": "page, token ready", "page": "page mints + fetches", "tool": "tool",
         "tool_raw": "tool, raw HTTP client", "tool_premint": "tool, premint on"}


def pct(values: list[float], q: float) -> float:
    value = percentile(values, q)
    assert value is not None
    return value


class Side:
    """One tool with its simulator and browser page (the premint row has a second one, set up alike)."""

    def __init__(self, cadence_ms: float, premint: bool, playwright: Any) -> None:
        self.stack = Stack(Path(tempfile.mkdtemp(prefix="arena-bench-")), cadence_ms=cadence_ms,
                           generation="retry-honoured", tool_options={"arena_premint_tokens": str(premint).lower()})
        self.stack.start()
        self.browser = playwright.chromium.launch(**self.stack.launch_args())
        self.page = self.browser.new_page()
        self.page.goto("https://lmarena.ai/?mode=direct")
        self.stack.wait_page_connected()
        chat_in_page(self.page, MODEL, "Hi")
        assert self.stack.tool is not None
        self.pid = self.stack.tool.proc.pid
        self.conv = httpx.get(self.stack.api_base + "/api/pool", timeout=10).json()["conversations"][0]
        self.client = openai.OpenAI(base_url=self.stack.api_base + "/v1", api_key="bench", max_retries=0)
        self.raw = httpx.Client(timeout=60)

    def in_page(self, premint: bool) -> tuple[float, float, str]:
        c = self.conv
        r = self.page.evaluate(PAGE_JS, [c["session_id"], c["message_id"], c["model_id"], PROMPT, premint,
                                         site.RECAPTCHA_SITE_KEY])
        return r["first"] / 1000, r["total"] / 1000, r["text"]

    def through_tool(self) -> tuple[float, float, str]:
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": PROMPT}]
        t0 = time.perf_counter()
        first = None
        text = []
        for chunk in self.client.chat.completions.create(model=MODEL, messages=messages, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                if first is None:
                    first = time.perf_counter() - t0
                text.append(chunk.choices[0].delta.content)
        assert first is not None
        return first, time.perf_counter() - t0, "".join(text)

    def through_tool_raw(self) -> tuple[float, float, str]:
        """The same request without the SDK: what the tool costs apart from the client's own work."""
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}
        t0 = time.perf_counter()
        first = None
        text = []
        with self.raw.stream("POST", self.stack.api_base + "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                choices = json.loads(line[6:])["choices"]
                content = choices[0]["delta"].get("content") if choices else None
                if content:
                    if first is None:
                        first = time.perf_counter() - t0
                    text.append(content)
        assert first is not None
        return first, time.perf_counter() - t0, "".join(text)

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            self.stack.stop()


class Bench:
    def __init__(self, sides: dict[str, Side]) -> None:
        self.sides = sides  # "plain" for the page paths and the tool, "premint" for the premint row
        self.expected = sides["plain"].in_page(True)[2]
        self.results: dict[str, dict[str, list[float]]] = {}

    def run(self, name: str) -> None:
        side = self.sides["premint" if name == "tool_premint" else "plain"]
        fn: Callable[[], tuple[float, float, str]] = {
            "page_ready": lambda: side.in_page(True), "page": lambda: side.in_page(False),
            "tool": side.through_tool, "tool_raw": side.through_tool_raw, "tool_premint": side.through_tool}[name]
        cpu = cpu_seconds(side.pid)
        first, total, text = fn()
        cpu = cpu_seconds(side.pid) - cpu
        deliveries = httpx.get(side.stack.sim_base + "/__sim/deliveries", timeout=10).json()
        assert text == self.expected, f"{name}: the answer differs: {text!r}"
        r = self.results.setdefault(name, {"first": [], "total": [], "cpu": [], "delivery": []})
        r["first"].append(first)
        r["total"].append(total)
        r["cpu"].append(cpu)
        r["delivery"].append(deliveries[-1]["ms"] / 1000)
        if name == "tool_premint":
            time.sleep(0.1)  # as a person's pause would: the next token is minted before it is needed


def report(bench: Bench, rounds: int, cadence: float, rss: dict[str, float]) -> None:
    print(f"bench_e2e: {rounds} interleaved rounds per path after 3 warm-ups, simulator cadence {cadence:.0f} ms, "
          "35-word prompt, 43-line answer, every answer checked")
    print(f"{'path':<22}{'TTFT p50':>10}{'p90':>8}{'total p50':>11}{'p90':>8}{'delivery':>10}{'CPU/req':>9}"
          f"{'vs reference (TTFT / total)':>30}")
    ref = bench.results.get("page") or next(iter(bench.results.values()))
    for name, r in bench.results.items():
        over = ("reference" if name == "page" else
                f"{(pct(r['first'], .5) - pct(ref['first'], .5)) * 1000:+.1f} ms / "
                f"{(pct(r['total'], .5) - pct(ref['total'], .5)) * 1000:+.1f} ms")
        print(f"{PATHS[name]:<22}{pct(r['first'], .5) * 1000:>8.1f}ms{pct(r['first'], .9) * 1000:>6.1f}ms"
              f"{pct(r['total'], .5) * 1000:>9.1f}ms{pct(r['total'], .9) * 1000:>6.1f}ms"
              f"{pct(r['delivery'], .5) * 1000:>8.1f}ms{sum(r['cpu']) / len(r['cpu']) * 1000:>7.1f}ms{over:>30}")
    page_cpu = sum(ref["cpu"]) / len(ref["cpu"])
    page_delivery = pct(ref["delivery"], .5)
    for name in ("tool", "tool_raw", "tool_premint"):
        if name in bench.results:
            r = bench.results[name]
            print(f"{PATHS[name]}: CPU per request beyond proxying the same traffic "
                  f"{(sum(r['cpu']) / len(r['cpu']) - page_cpu) * 1000:+.1f} ms; the site's stream "
                  f"{(pct(r['delivery'], .5) - page_delivery) * 1000:+.1f} ms slower to deliver than to the page")
    print(f"tool process RSS: {rss['idle']:.1f} MiB idle (page connected, one pooled conversation), "
          f"{rss['after']:.1f} MiB after the rounds")
    print("(CPU per request: the tool process's utime + stime around each request; the page rows are what "
          "proxying that traffic costs it)")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--cadence-ms", type=float, default=20.0)
    parser.add_argument("--premint", choices=["both", "off"], default="both",
                        help="also measure the tool with arena_premint_tokens on (a second tool, set up alike)")
    parser.add_argument("--only", choices=sorted(PATHS), action="append",
                        help="run only these paths (to profile one: py-spy record --pid <the tool's pid>)")
    args = parser.parse_args()

    names = args.only or ["page_ready", "page", "tool", "tool_raw"] + (
        ["tool_premint"] if args.premint == "both" else [])
    sides: dict[str, Side] = {}
    rss: dict[str, float] = {}
    try:
        with sync_playwright() as p:
            sides["plain"] = Side(args.cadence_ms, False, p)
            if "tool_premint" in names:
                sides["premint"] = Side(args.cadence_ms, True, p)
            bench = Bench(sides)
            time.sleep(1.0)
            rss["idle"] = rss_mib(sides["plain"].pid)
            for _ in range(3):
                for name in names:
                    bench.run(name)
            bench.results.clear()
            for i in range(args.rounds):
                shift = i % len(names)
                for name in names[shift:] + names[:shift]:
                    bench.run(name)
            rss["after"] = rss_mib(sides["plain"].pid)
            for side in sides.values():
                side.close()
    finally:
        for side in sides.values():
            side.stack.stop()
    report(bench, args.rounds, args.cadence_ms, rss)
    return 0


if __name__ == "__main__":
    sys.exit(main())
