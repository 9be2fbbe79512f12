"""Every text the dashboard shows through its string table (`data-t` attributes and `t('…')` calls) exists in
both languages: a missing key would show its bare name (`waited`) to everyone."""

from __future__ import annotations

import re
from pathlib import Path

HTML = (Path(__file__).resolve().parents[2] / "openai_front" / "static" / "dashboard.html").read_text("utf-8")


def table(lang: str) -> set[str]:
    body = re.search(rf"\n\s+{lang}: \{{(.*?)\}}(?:,\n|\n\s+\}};)", HTML, re.S)
    assert body, f"no {lang} string table"
    return set(re.findall(r"(\w+): '", body.group(1)))


def test_every_key_used_is_in_both_languages():
    used = set(re.findall(r'data-t="(\w+)"', HTML)) | set(re.findall(r"\bt\('(\w+)'\)", HTML))
    en, zh = table("en"), table("zh")
    assert len(used) > 40 and len(en) > 40
    assert not used - en, f"missing in English: {sorted(used - en)}"
    assert not used - zh, f"missing in Chinese: {sorted(used - zh)}"
    assert en == zh, f"only in one language: {sorted(en ^ zh)}"


def test_doctor_statuses_are_translated():
    # statuses come from the API and go through t(c.status)
    assert {"ok", "warning", "broken"} <= table("en") & table("zh")
