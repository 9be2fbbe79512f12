"""The doctor: walks the chain a request takes through a running tool and says, link by link, what is ok,
what is in danger and what is broken, with the fix (English and Chinese).

    python scripts/doctor.py                         # the chain as the tool sees it now
    python scripts/doctor.py --model gemini-2.5-pro  # and the pool of these models
    python scripts/doctor.py --probe                 # and one real request (it spends a site answer)

Exit code 0 when nothing is broken (warnings allowed), 1 otherwise: scripts can use it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from terminal import console as ui  # noqa: E402

NEEDS_KEY = {
    "en": "the API wants a key: --key (or ARENA_API_KEY)",
    "zh": "API 需要密钥：--key（或 ARENA_API_KEY）",
}
NOT_RUNNING = {
    "en": "the tool is not running, or not at {api}: start it with `bash scripts/run.sh` (or give --api)",
    "zh": "工具没有运行，或不在 {api}：请用 `bash scripts/run.sh` 启动（或用 --api 指定地址）",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check each link of the way a request takes through the tool")
    parser.add_argument("--api", default=os.environ.get("ARENA_API", "http://127.0.0.1:5102"),
                        help="the tool's API address (default: %(default)s)")
    parser.add_argument("--key", default=os.environ.get("ARENA_API_KEY", ""), help="API key, if the tool has one")
    parser.add_argument("--model", action="append", default=[], help="check the pool of this model (repeatable)")
    parser.add_argument("--probe", action="store_true", help="also send one real request (spends a site answer)")
    parser.add_argument("--lang", default="auto", choices=["auto", "en", "zh"])
    parser.add_argument("--json", action="store_true", help="print the doctor's answer as JSON")
    args = parser.parse_args(argv)
    lang = ui.language(args.lang)
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    try:
        response = httpx.get(args.api.rstrip("/") + "/api/doctor", headers=headers, timeout=120,
                             params={"model": args.model, "probe": "true" if args.probe else "false"})
    except httpx.HTTPError:
        result: dict[str, Any] = {"ok": False, "broken": ["api"], "checks": [
            {"link": "api", "status": "broken", "detail": "no answer from the API",
             "fix": NOT_RUNNING["en"].format(api=args.api), "fix_zh": NOT_RUNNING["zh"].format(api=args.api)}]}
    else:
        if response.status_code == 401:
            print(NEEDS_KEY.get(lang, NEEDS_KEY["en"]))
            return 1
        response.raise_for_status()
        result = response.json()
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    else:
        ui.make_console(stderr=False).print(ui.doctor_table(result["checks"], lang))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
