"""The session pool under load, against the ideal schedule.

    .venv/bin/python bench/bench_pool.py [--requests 600] [--models 30] [--per-model 4]

Requests for many models arrive on a fixed pseudo-random schedule, each holding its conversation
for a known service time. The ideal schedule, computed from the same arrivals and service times,
serves every model first come first served on exactly `per-model` servers with zero overhead.
Two measured runs, side by side:

- pool: SessionPool.lease / release directly;
- api:  POST /v1/chat/completions through the FastAPI app and the chat service (in process, httpx
  ASGI transport), with a stand-in page that answers each job after its service time.

Prints throughput, wait percentiles (measured vs ideal) and the ratio, and the process's memory.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import random
import resource
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from openai_front.app import create_app  # noqa: E402
from pool_store.pool import Conversation, SessionPool  # noqa: E402
from relay.core import assemble  # noqa: E402
from relay.jobs import JobDone  # noqa: E402
from relay.pages import Page  # noqa: E402
from relay.services import Services  # noqa: E402
from relay.settings import Settings  # noqa: E402
from relay.stats import percentile  # noqa: E402
from sites import lmarena as site  # noqa: E402


def workload(n: int, models: list[str], seed: int = 1) -> list[tuple[float, str, float]]:
    """(arrival s, model, service s): bursts of arrivals, a skew towards the first models."""
    rng = random.Random(seed)
    t = 0.0
    out = []
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(models))]
    for _ in range(n):
        t += rng.expovariate(n / 1.5)  # all requests arrive within about 1.5 s: a queue builds up
        out.append((t, rng.choices(models, weights)[0], rng.uniform(0.05, 0.25)))
    return out


def ideal_waits(jobs: list[tuple[float, str, float]], servers: int) -> list[float]:
    free: dict[str, list[float]] = {}
    waits = []
    for arrival, model, service in jobs:
        heap = free.setdefault(model, [0.0] * servers)
        earliest = heapq.heappop(heap)
        start = max(arrival, earliest)
        heapq.heappush(heap, start + service)
        waits.append(start - arrival)
    return waits


def ideal_makespan(jobs: list[tuple[float, str, float]], servers: int) -> float:
    waits = ideal_waits(jobs, servers)
    return max(a + w + s for (a, _, s), w in zip(jobs, waits))


Job = tuple[float, str, float]


async def run_pool(jobs: list[Job], models: list[str], per_model: int) -> tuple[list[float], float]:
    pool = SessionPool()
    for model in models:
        for i in range(per_model):
            pool.upsert(Conversation(f"{model}-{i}", f"m-{model}-{i}", model))
    waits = [0.0] * len(jobs)
    t0 = time.perf_counter()

    async def one(index: int, arrival: float, model: str, service: float) -> None:
        await asyncio.sleep(max(0.0, arrival - (time.perf_counter() - t0)))
        start = time.perf_counter()
        lease = await pool.lease(model, timeout=600)
        waits[index] = time.perf_counter() - start
        await asyncio.sleep(service)
        pool.release(lease)

    await asyncio.gather(*(one(i, *job) for i, job in enumerate(jobs)))
    return waits, time.perf_counter() - t0


class TimedPage:
    """Stand-in for the browser page: answers each job after the service time the job asks for."""

    def __init__(self, services: Services, service_of: dict[str, float]) -> None:
        self.services = services
        self.service_of = service_of
        self.tasks: set[asyncio.Task[None]] = set()

    async def send_text(self, text: str) -> None:
        message = json.loads(text)
        if message["type"] == "job":
            task = asyncio.get_running_loop().create_task(self._answer(message["job"]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _answer(self, job_id: str) -> None:
        job = self.services.jobs.get(job_id)
        if job is None:
            return
        job.flow_seen = True
        await asyncio.sleep(self.service_of[job.turns[-1].content])
        for event in site.parse_stream(b'a0:"ok"\nad:{"finishReason":"stop"}\n'):
            job.push(event)
        job.push(JobDone())


async def run_api(jobs: list[Job], models: list[str], per_model: int) -> tuple[list[float], float]:
    services = Services(Settings(queue_timeout=600, upstream_timeout=600, keepalive=600))
    for model in models:
        for i in range(per_model):
            services.pool.upsert(Conversation(f"{model}-{i}", f"m-{model}-{i}", model, identity="user:1"))
    service_of = {f"request {i}": job[2] for i, job in enumerate(jobs)}
    services.pages.pages["p"] = Page("p", "user:1", "https://lmarena.ai/", "ready",
                                     ws=TimedPage(services, service_of))  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=create_app(assemble(services)))
    waits = [0.0] * len(jobs)
    t0 = time.perf_counter()
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=600) as client:

        async def one(index: int, arrival: float, model: str, service: float) -> None:
            await asyncio.sleep(max(0.0, arrival - (time.perf_counter() - t0)))
            start = time.perf_counter()
            response = await client.post("/v1/chat/completions", json={
                "model": model, "messages": [{"role": "user", "content": f"request {index}"}]})
            assert response.status_code == 200, response.text
            # time waiting = total time less the time the page held the conversation
            waits[index] = max(0.0, time.perf_counter() - start - service)

        await asyncio.gather(*(one(i, *job) for i, job in enumerate(jobs)))
    return waits, time.perf_counter() - t0


def pct(values: list[float], q: float) -> float:
    value = percentile(values, q)
    assert value is not None
    return value


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--models", type=int, default=30)
    parser.add_argument("--per-model", type=int, default=4)
    args = parser.parse_args()
    names = [m.name for m in Services().models.all() if m.modality == "chat"][: args.models]
    jobs = workload(args.requests, names)
    ideal = ideal_waits(jobs, args.per_model)
    makespan = ideal_makespan(jobs, args.per_model)
    pool_waits, pool_time = asyncio.run(run_pool(jobs, names, args.per_model))
    api_waits, api_time = asyncio.run(run_api(jobs, names, args.per_model))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # memory of the API run, traced in a pass of its own (tracing slows everything down several times)
    tracemalloc.start()
    asyncio.run(run_api(jobs, names, args.per_model))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    print(f"bench_pool: {args.requests} requests, {len(names)} models x {args.per_model} conversations, "
          f"service 50-250 ms, arrivals within ~1.5 s")
    print(f"{'run':<7}{'time s':>9}{'req/s':>9}{'wait p50':>11}{'wait p95':>11}{'wait p99':>11}{'wait max':>11}")
    for name, waits, elapsed in (("ideal", ideal, makespan), ("pool", pool_waits, pool_time),
                                 ("api", api_waits, api_time)):
        print(f"{name:<7}{elapsed:>9.2f}{len(jobs) / elapsed:>9.1f}"
              f"{pct(waits, .5) * 1000:>9.0f}ms{pct(waits, .95) * 1000:>9.0f}ms"
              f"{pct(waits, .99) * 1000:>9.0f}ms{max(waits) * 1000:>9.0f}ms")
    for name, waits, elapsed in (("pool", pool_waits, pool_time), ("api", api_waits, api_time)):
        extra = statistics.mean(w - i for w, i in zip(waits, ideal)) * 1000
        print(f"ratio {name}/ideal: time {elapsed / makespan:.3f}x, p95 wait {pct(waits, .95) / pct(ideal, .95):.3f}x,"
              f" mean extra wait per request {extra:+.1f} ms")
    print(f"memory: process max RSS {rss_mb:.0f} MB after both timed runs; peak Python allocations during "
          f"the api run {peak / 1e6:.1f} MB (traced separately)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
