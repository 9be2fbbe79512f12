"""Write one file to attach to a bug report, from a running tool: versions, options (no secrets), the doctor's
verdicts, what the site did that the tool does not know (drift), the last requests' timings and outcomes and
the line codes of the last failures. Every id, token, cookie and message text is removed before it is written.

    python scripts/report.py                 # writes lmarena-report-<time>.json here
    python scripts/report.py --out bug.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import httpx


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a bug report file from a running tool")
    parser.add_argument("--api", default=os.environ.get("ARENA_API", "http://127.0.0.1:5102"),
                        help="the tool's API address (default: %(default)s)")
    parser.add_argument("--key", default=os.environ.get("ARENA_API_KEY", ""), help="API key, if the tool has one")
    parser.add_argument("--requests", type=int, default=50, help="how many recent requests to include")
    parser.add_argument("--out", default=None, help="the file to write (default: lmarena-report-<time>.json)")
    args = parser.parse_args(argv)
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    try:
        response = httpx.get(args.api.rstrip("/") + "/api/report", params={"limit": args.requests},
                             headers=headers, timeout=60)
        response.raise_for_status()
    except httpx.HTTPError as e:
        print(f"could not get the report from {args.api}: {e} (is the tool running? bash scripts/run.sh)",
              file=sys.stderr)
        return 1
    out = Path(args.out or time.strftime("lmarena-report-%Y%m%d-%H%M%S.json"))
    out.write_text(json.dumps(response.json(), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}: check it, then attach it to your bug report")
    return 0


if __name__ == "__main__":
    sys.exit(main())
