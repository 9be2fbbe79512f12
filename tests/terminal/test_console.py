"""The terminal's text and tables, rendered into a string as rich's own tests do."""

from __future__ import annotations

import io

from rich.console import Console

from terminal import console as ui


def test_console_language_follows_the_locale():
    assert ui.language("auto", {"LANG": "zh_CN.UTF-8"}) == "zh"
    assert ui.language("auto", {"LANG": "en_US.UTF-8"}) == "en"
    assert ui.language("auto", {}) == "en"
    assert ui.language("zh", {"LANG": "en_US.UTF-8"}) == "zh"
    assert "按回车键继续" in ui.text("zh", "prefill_prompt", per=4, models=2, total=8, message="Hi")
    assert "Press Enter to continue" in ui.text("en", "prefill_prompt", per=4, models=2, total=8, message="Hi")


def test_pool_table_shows_every_state():
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(
        ui.pool_table({"m": {"total": 5, "ready": 1, "busy": 2, "cooling": 1, "retired": 1, "waiting": 3}}, "en"))
    row = next(line for line in out.getvalue().splitlines() if line.strip().startswith("│ m") or " m " in line)
    assert [c for c in row.replace("│", " ").split() if c.isdigit()] == ["5", "1", "2", "1", "1", "3"]




def test_doctor_table_speaks_the_chosen_language():
    checks = [{"link": "page", "status": "broken", "detail": "the page is cloudflare",
               "detail_zh": "页面状态为 cloudflare", "fix": "finish the check in the tab",
               "fix_zh": "请在标签页中完成验证"},
              {"link": "api", "status": "ok", "detail": "the tool is running", "detail_zh": "工具正在运行",
               "fix": "", "fix_zh": ""}]

    def shown(lang: str) -> str:
        out = io.StringIO()
        Console(file=out, width=160, color_system=None).print(ui.doctor_table(checks, lang))
        return out.getvalue()

    zh, en = shown("zh"), shown("en")
    assert "故障" in zh and "页面状态为 cloudflare" in zh and "请在标签页中完成验证" in zh and "the page is" not in zh
    assert "broken" in en and "the page is cloudflare" in en and "finish the check" in en and "页面" not in en
