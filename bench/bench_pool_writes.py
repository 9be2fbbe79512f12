"""Does writing the pool slow the person's own browsing through the proxy?

    .venv/bin/python bench/bench_pool_writes.py [--rounds 5] [--phase-seconds 2] [--changes 100]

The tool runs as always (mitmdump -s addons/bridge.py, the simulator behind lmarena.ai), with a pool file
of 2000 conversations, so every write of it is a real one (about 1 MB). A thread plays the person: it
fetches a script of the site through the proxy, 20 times a second, on one kept-alive connection, as a
browser does. Meanwhile, in interleaved phases:

- quiet: nothing else happens;
- api: 100 API requests a second that change nothing (GET /healthz), so the cost of the API calls
  themselves is measured apart;
- writes: 100 pool changes a second (DELETE /api/pool/<id>, each one persisted).

Prints the person's latency per phase (p50, p95, p99) and the ratios writes / quiet and writes / api.
`--bridge PATH` runs another checkout's addons/bridge.py instead, to compare versions side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from relay.stats import percentile  # noqa: E402
from simulator.stack import Stack  # noqa: E402

PERSON_PATH = "https://lmarena.ai/_next/static/chunks/7551-sim.js"  # a site script: not injected, not parsed
PHASES = ("quiet", "api", "writes")


def write_pool(path: Path, count: int) -> list[str]:
    """A pool file of `count` conversations, in the TinyDB layout the tool keeps."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    records = {
        str(i + 1): {"session_id": sid, "message_id": str(uuid.uuid4()), "model": "gemini-2.5-pro",
                     "model_id": "e2d9d353-6dbe-4414-bf87-bd289d523726", "identity": "user:bench",
                     "mode": "direct", "modality": "chat", "host": "lmarena.ai", "source": "captured",
                     "created_at": time.time(), "state": "ready"}
        for i, sid in enumerate(ids)
    }
    path.write_text(json.dumps({"conversations": records, "settings": {}}), "utf-8")
    return ids


class Person(threading.Thread):
    """The person's browser: fetches through the proxy at a steady pace, records (time, latency)."""

    def __init__(self, proxy_port: int, per_second: float) -> None:
        super().__init__(daemon=True)
        self.proxy = f"http://127.0.0.1:{proxy_port}"
        self.interval = 1 / per_second
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        # as a browser does: no Nagle delay (else delayed ACKs put ~40 ms on every kept-alive request)
        transport = httpx.HTTPTransport(proxy=self.proxy, verify=False,
                                        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        with httpx.Client(transport=transport, timeout=10) as client:
            client.get(PERSON_PATH)  # the connection, CONNECT and TLS, made once as a browser keeps it
            next_at = time.perf_counter()
            while not self.stop.is_set():
                start = time.perf_counter()
                response = client.get(PERSON_PATH)
                took = time.perf_counter() - start
                assert response.status_code == 200, response.status_code
                self.samples.append((start, took))
                next_at += self.interval
                time.sleep(max(0.0, next_at - time.perf_counter()))


async def load(api: str, phase: str, seconds: float, per_second: int, ids: list[str]) -> int:
    """`per_second` API calls for `seconds`: none, healthz, or pool removals (each one persisted)."""
    if phase == "quiet":
        await asyncio.sleep(seconds)
        return 0
    sent = 0
    async with httpx.AsyncClient(base_url=api, timeout=10) as client:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            if phase == "api":
                response = await client.get("/healthz")
            else:
                response = await client.delete(f"/api/pool/{ids.pop()}")
            assert response.status_code == 200, response.text
            sent += 1
            await asyncio.sleep(max(0.0, sent / per_second - (time.perf_counter() - start)))
    return sent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phase-seconds", type=float, default=2.0)
    parser.add_argument("--changes", type=int, default=100, help="pool changes (and API calls) a second")
    parser.add_argument("--person-rate", type=float, default=20.0, help="the person's requests a second")
    parser.add_argument("--bridge", type=Path, default=None, help="another checkout's addons/bridge.py")
    args = parser.parse_args()

    stack = Stack(Path(tempfile.mkdtemp(prefix="arena-bench-writes-")), cadence_ms=5)
    needed = args.rounds * args.phase_seconds * args.changes * 1.2 + 200
    ids = write_pool(stack.store, max(2000, int(needed)))
    stack.start_simulator()
    if args.bridge is not None:
        stack.bridge_script = args.bridge.resolve()
    stack.start_tool(arena_prefill="off")
    person = Person(stack.proxy_port, args.person_rate)
    spans: dict[str, list[tuple[float, float]]] = {p: [] for p in PHASES}
    sent: dict[str, int] = {p: 0 for p in PHASES}
    try:
        person.start()
        time.sleep(1.0)  # warm-up
        for _ in range(args.rounds):
            for phase in PHASES:
                begin = time.perf_counter()
                sent[phase] += asyncio.run(load(stack.api_base, phase, args.phase_seconds, args.changes, ids))
                spans[phase].append((begin, time.perf_counter()))
        person.stop.set()
        person.join(10)
    finally:
        stack.stop()
    report(person.samples, spans, sent, args)
    return 0


def report(samples: list[tuple[float, float]], spans: dict[str, list[tuple[float, float]]],
           sent: dict[str, int], args: argparse.Namespace) -> None:
    by_phase = {p: [took for at, took in samples if any(a <= at < b for a, b in spans[p])] for p in PHASES}
    print(f"person: GET through the proxy, {args.person_rate:.0f}/s; load: {args.changes}/s; "
          f"{args.rounds} rounds of {args.phase_seconds:.0f} s per phase, interleaved")
    print(f"{'phase':<8}{'requests':>9}{'api calls':>10}{'p50':>10}{'p95':>10}{'p99':>10}")
    p50: dict[str, float] = {}
    for phase in PHASES:
        values = by_phase[phase]
        p50[phase] = percentile(values, 0.5) or 0.0
        print(f"{phase:<8}{len(values):>9}{sent[phase]:>10}" + "".join(
            f"{(percentile(values, q) or 0) * 1000:>8.2f}ms" for q in (0.5, 0.95, 0.99)))
    print(f"ratio of medians: writes / quiet {p50['writes'] / p50['quiet']:.3f}x "
          f"({(p50['writes'] - p50['quiet']) * 1000:+.2f} ms); writes / api {p50['writes'] / p50['api']:.3f}x "
          f"({(p50['writes'] - p50['api']) * 1000:+.2f} ms)")


if __name__ == "__main__":
    sys.exit(main())
