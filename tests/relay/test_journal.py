"""The JSON-lines request and error logs: written off the loop, rotated, never a secret in them."""

from __future__ import annotations

import json

from relay.journal import RequestJournal
from relay.services import Services


def test_every_request_is_logged_and_errors_go_to_their_own_file(tmp_path):
    s = Services()
    journal = RequestJournal(str(tmp_path), 1 << 20)
    s.requests.listeners.append(journal)
    s.requests.start("m", False).close(200)
    s.requests.start("m", False).close(503, "no page", "tool")
    journal.close()  # what is queued is written before the files close
    requests = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert [r["status"] for r in requests] == [200, 503]
    assert [(e["status"], e["error_source"]) for e in errors] == [(503, "tool")]
    assert all("duration" in r and "logged_at" in r and "listeners" not in r for r in requests)


def test_logs_rotate_at_their_size_and_keep_five(tmp_path):
    s = Services()
    journal = RequestJournal(str(tmp_path), max_bytes=1000)
    s.requests.listeners.append(journal)
    for i in range(60):
        s.requests.start(f"model-{i:03d}", False).close(200)
    journal.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["requests.jsonl"] + [f"requests.jsonl.{i}" for i in range(1, 6)], files
    newest = json.loads((tmp_path / "requests.jsonl").read_text().splitlines()[-1])
    assert newest["model"] == "model-059"
    assert all((tmp_path / f).stat().st_size <= 1000 for f in files)
