"""Prefill the pool of a running tool, or list it, through the tool's API (never its file).

    python scripts/prefill_pool.py                       # ask, then create 4 "Hi" conversations per text model
    python scripts/prefill_pool.py --models gemini-2.5-pro,gpt-5-high --per-model 2 --yes
    python scripts/prefill_pool.py --list
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from terminal import console as ui  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Prefill or list the session pool of a running tool")
    parser.add_argument("--api", default=os.environ.get("ARENA_API", "http://127.0.0.1:5102"),
                        help="the tool's API address (default: %(default)s)")
    parser.add_argument("--key", default=os.environ.get("ARENA_API_KEY", ""), help="API key, if the tool has one")
    parser.add_argument("--models", default="text",
                        help="text, search, image, video, all, or names, comma-separated (default: text)")
    parser.add_argument("--per-model", type=int, default=None, help="conversations per model (default: the tool's)")
    parser.add_argument("--message", default=None, help="first message of each conversation (default: the tool's)")
    parser.add_argument("--yes", action="store_true", help="do not ask before creating")
    parser.add_argument("--list", action="store_true", help="show the pool and exit")
    parser.add_argument("--lang", default="auto", choices=["auto", "en", "zh"])
    args = parser.parse_args(argv)

    lang = ui.language(args.lang)
    console = ui.make_console()
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    client = httpx.Client(base_url=args.api, headers=headers, timeout=30)
    try:
        if args.list:
            pool = client.get("/api/pool")
            pool.raise_for_status()
            console.print(ui.pool_table(pool.json()["stats"], lang))
            return 0
        if not args.yes:
            per = args.per_model or "N"
            prompt = ui.text(lang, "prefill_prompt", per=per, models=args.models, total="?",
                             message=args.message or "Hi")
            if not sys.stdin.isatty():
                console.print(ui.text(lang, "prefill_no_tty"))
                return 2
            try:
                if not ui.ask_enter(console, prompt):
                    console.print(ui.text(lang, "prefill_skipped"))
                    return 1
            except (KeyboardInterrupt, EOFError):
                console.print("\n" + ui.text(lang, "prefill_skipped"))
                return 1
        body = {"models": args.models, "per_model": args.per_model, "message": args.message}
        started = client.post("/api/prefill", json={k: v for k, v in body.items() if v is not None})
        if started.status_code != 202:
            console.print(f"[red]{started.status_code}: {started.json().get('error', {}).get('message')}[/]")
            return 1
        display = ui.PrefillProgress(console, lang)
        seen = 0
        while True:
            run = client.get("/api/prefill").json()["run"]
            if not console.is_terminal:  # plain output: a line per conversation instead of a bar
                for item in run["items"][seen:]:
                    state = "ok " + (item["session_id"] or "") if item["ok"] else f"failed: {item['error']}"
                    console.print(f"{item['model']}: {state}")
            seen = len(run["items"])
            last = run["items"][-1] if run["items"] else None
            display.update(run["total"], run["done"], f"{last['model']}" if last else None)
            if not run["running"]:
                display.close(run["created"], run["failed"])
                return 0 if run["failed"] == 0 else 3
            time.sleep(0.5)
    except httpx.HTTPError as e:
        console.print(f"[red]cannot reach the tool at {args.api}: {e}[/]")
        return 2
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
