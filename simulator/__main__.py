"""python -m simulator --port 18080 [--generation 2026|history-kept|retry-honoured] [--cadence-ms 15] [--csp ...]"""

from __future__ import annotations

import argparse
import socket
import sys

import uvicorn

from simulator.server import Generation, SimConfig, Simulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="An offline LMArena for tests and demos")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18080, help="0 picks a free port and prints it")
    parser.add_argument("--generation", choices=[str(g) for g in Generation], default=str(Generation.SITE_2026),
                        help="2026: arena.ai as it is now (the default); history-kept: one message per turn, the "
                             "server keeps the history (from November 2025); retry-honoured: a retry's messages "
                             "replace the history (to November 2025)")
    parser.add_argument("--cadence-ms", type=float, default=15.0, help="pause between answer chunks")
    parser.add_argument("--csp", choices=["nonce", "strict", "none"], default="nonce")
    parser.add_argument("--no-recaptcha", action="store_true", help="accept requests without tokens")
    parser.add_argument("--arena-port", type=int, default=None,
                        help="also listen here as arena.ai (0 picks a free port); the main port is lmarena.ai")
    args = parser.parse_args(argv)

    sock = _listen(args.host, args.port)
    sockets = [sock]
    arena_port = None
    if args.arena_port is not None:
        arena_sock = _listen(args.host, args.arena_port)
        arena_port = arena_sock.getsockname()[1]
        sockets.append(arena_sock)
    sim = Simulator(SimConfig(generation=Generation(args.generation), cadence_ms=args.cadence_ms, csp=args.csp,
                              require_recaptcha=not args.no_recaptcha, arena_port=arena_port))
    print(f"simulator listening on http://{args.host}:{sock.getsockname()[1]}", flush=True)
    if arena_port is not None:
        print(f"simulator as arena.ai on http://{args.host}:{arena_port}", flush=True)
    config = uvicorn.Config(sim.app(), log_level="warning", lifespan="off")
    uvicorn.Server(config).run(sockets=sockets)
    return 0


def _listen(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP, not 0, so asyncio turns Nagle off as a real server does (else delayed ACKs add ~40 ms)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


if __name__ == "__main__":
    sys.exit(main())
