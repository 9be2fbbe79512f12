"""Everything the terminal shows: prompts, progress, tables, in English or Chinese.

The only module that imports rich. Pure builders (`pool_table`) and small wrappers; the logic
they show lives elsewhere and never imports this.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "prefill_prompt": (
            "Create {per} conversations for each of {models} models ({total} in all) by sending "
            "{message!r}? Press Enter to continue, Ctrl+C to skip"
        ),
        "prefill_skipped": "Prefill skipped. Start it later with: python scripts/prefill_pool.py",
        "prefill_no_tty": (
            "Prefill asks on a terminal and there is none, so it is off now. Start it with "
            "`python scripts/prefill_pool.py --yes`, or set arena_prefill=auto."
        ),
        "prefill_full": "The pool already has {per} conversations for each chosen model: no prefill needed.",
        "prefill_waiting": "A page is ready. Prefill starts after {delay:.0f} s without traffic.",
        "prefill_progress": "Creating conversations",
        "prefill_done": "Prefill done: {created} created, {failed} failed or skipped.",
        "col_model": "model",
        "col_total": "total",
        "col_ready": "ready",
        "col_busy": "busy",
        "col_cooling": "cooling",
        "col_retired": "retired",
        "col_waiting": "waiting",
        "pool_title": "Session pool",
        "doctor_title": "Doctor: the way a request takes",
        "col_link": "link",
        "col_status": "status",
        "col_detail": "what the tool sees",
        "col_fix": "what to do",
        "steps": (
            "To start: 1) set your browser's proxy to {proxy} (only arena.ai / lmarena.ai are intercepted); "
            "2) trust the CA once: open http://mitm.it through the proxy, or import {ca}; "
            "3) open https://arena.ai/text/direct, sign in (Direct needs a free account; a guest can only battle) "
            "and chat once. OpenAI API: {api}  Dashboard: {dashboard}"
        ),
        "urls": "Proxy {proxy} · API {api} · Dashboard {dashboard}",
        "pages_line": "Pages: {pages}",
        "no_pages": "no page connected: open https://arena.ai/text/direct in the browser that uses the proxy",
        "errors_title": "Recent errors",
        "strategy_line": "Strategy: {strategy}",
    },
    "zh": {
        "prefill_prompt": (
            "为 {models} 个模型各创建 {per} 个会话（共 {total} 个，发送 {message!r}）？按回车键继续，Ctrl+C 跳过"
        ),
        "prefill_skipped": "已跳过预创建。之后可运行：python scripts/prefill_pool.py",
        "prefill_no_tty": (
            "预创建需要在终端里确认，但当前没有终端，所以暂不执行。可运行 `python scripts/prefill_pool.py --yes`，"
            "或设置 arena_prefill=auto。"
        ),
        "prefill_full": "会话池里每个所选模型都已有 {per} 个会话，无需预创建。",
        "prefill_waiting": "页面已就绪。空闲 {delay:.0f} 秒后开始预创建。",
        "prefill_progress": "正在创建会话",
        "prefill_done": "预创建完成：成功 {created} 个，失败或跳过 {failed} 个。",
        "col_model": "模型",
        "col_total": "总数",
        "col_ready": "空闲",
        "col_busy": "忙碌",
        "col_cooling": "冷却",
        "col_retired": "已退役",
        "col_waiting": "排队",
        "pool_title": "会话池",
        "doctor_title": "诊断：请求经过的每一环",
        "col_link": "环节",
        "col_status": "状态",
        "col_detail": "工具看到的情况",
        "col_fix": "怎么做",
        "steps": (
            "开始使用：1) 把浏览器代理设为 {proxy}（只拦截 arena.ai / lmarena.ai）；2) 信任 CA 证书一次：通过代理打开 "
            "http://mitm.it，或导入 {ca}；3) 打开 https://arena.ai/text/direct，登录（Direct 需要免费账号，访客只能用 "
            "battle）后聊一句。"
            "OpenAI 接口：{api}  监控面板：{dashboard}"
        ),
        "urls": "代理 {proxy} · 接口 {api} · 监控面板 {dashboard}",
        "pages_line": "页面：{pages}",
        "no_pages": "没有已连接的页面：请在使用该代理的浏览器中打开 https://arena.ai/text/direct",
        "errors_title": "最近的错误",
        "strategy_line": "策略：{strategy}",
    },
}


def language(setting: str = "auto", environ: dict[str, str] | None = None) -> str:
    """`en`, `zh`, or `auto`: Chinese when the system locale is Chinese."""
    if setting in STRINGS:
        return setting
    env = os.environ if environ is None else environ
    for var in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = env.get(var, "")
        if value:
            return "zh" if value.lower().startswith("zh") else "en"
    return "en"


def text(lang: str, key: str, **values: Any) -> str:
    return STRINGS.get(lang, STRINGS["en"])[key].format(**values)


def make_console(**kw: Any) -> Console:
    """A console on stderr (the tool's own output goes there), or where `kw` says."""
    return Console(**{"stderr": True, "highlight": False, **kw})


def ask_enter(console: Console, prompt: str) -> bool:
    """Blocking. True when the person presses Enter; False on any other answer or end of input."""
    console.print(f"[bold yellow]{prompt}[/] ", end="", soft_wrap=True)  # never wrapped mid-phrase
    answer = input()
    return answer.strip() == ""


class PrefillProgress:
    """A progress bar with explicit columns, or nothing on a plain output (log lines say it all)."""

    def __init__(self, console: Console, lang: str) -> None:
        self.console = console
        self.lang = lang
        self.progress: Progress | None = None
        self.task: TaskID | None = None

    def update(self, total: int, done: int, last: str | None = None) -> None:
        if not self.console.is_terminal:
            return
        if self.progress is None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[last]}"),
                console=self.console,
                transient=False,
            )
            self.task = self.progress.add_task(text(self.lang, "prefill_progress"), total=total, last="")
            self.progress.start()
        assert self.task is not None
        self.progress.update(self.task, completed=done, total=total, last=last or "")

    def close(self, created: int, failed: int) -> None:
        if self.progress is not None:
            self.progress.stop()
        self.console.print(text(self.lang, "prefill_done", created=created, failed=failed))


def pool_table(stats: dict[str, dict[str, int]], lang: str = "en") -> Table:
    """The per-model pool counts as a table (pure: state in, table out)."""
    t = lambda key: text(lang, key)  # noqa: E731
    table = Table(title=t("pool_title"))
    table.add_column(t("col_model"))
    for key in ("col_total", "col_ready", "col_busy", "col_cooling", "col_retired", "col_waiting"):
        table.add_column(t(key), justify="right")
    for model in sorted(stats):
        row = stats[model]
        table.add_row(
            model,
            *(str(row.get(k, 0)) for k in ("total", "ready", "busy", "cooling", "retired", "waiting")),
        )
    return table


STATUS_STYLE = {"ok": "green", "warning": "yellow", "broken": "bold red"}
STATUS_ZH = {"ok": "正常", "warning": "注意", "broken": "故障"}


def doctor_table(checks: list[dict[str, Any]], lang: str = "en") -> Table:
    """The doctor's checks as a table (pure: checks in, table out)."""
    t = lambda key: text(lang, key)  # noqa: E731
    table = Table(title=t("doctor_title"), show_lines=True)
    for key in ("col_link", "col_status", "col_detail", "col_fix"):
        table.add_column(t(key), overflow="fold")
    for check in checks:
        status = check["status"]
        shown = STATUS_ZH.get(status, status) if lang == "zh" else status
        fix = check.get("fix_zh") if lang == "zh" and check.get("fix_zh") else check.get("fix", "")
        detail = check.get("detail_zh") if lang == "zh" and check.get("detail_zh") else check["detail"]
        table.add_row(check["link"], Text(shown, style=STATUS_STYLE.get(status, "")), detail, fix or "")
    return table


def status_view(snapshot: dict[str, Any], urls: dict[str, str], lang: str = "en") -> Group:
    """The live console view (pure: a monitor snapshot in, renderables out)."""
    parts: list[Any] = [Text(text(lang, "urls", **urls), style="bold")]
    pages = snapshot.get("pages") or []
    if pages:
        shown = ", ".join(f"{p['state']}" + (f" ({p['advice']})" if p.get("advice") else "") for p in pages)
        parts.append(Text(text(lang, "pages_line", pages=shown)))
    else:
        parts.append(Text(text(lang, "no_pages"), style="yellow"))
    strategy = snapshot.get("strategy") or {}
    parts.append(Text(text(lang, "strategy_line", strategy=strategy.get("current", "?"))))
    parts.append(pool_table(snapshot.get("models") or {}, lang))
    errors = [r for r in snapshot.get("recent") or [] if r.get("ended_at") and r.get("status") != 200][-5:]
    if errors:
        table = Table(title=text(lang, "errors_title"))
        for column in ("#", "model", "status", "error"):
            table.add_column(column)
        for r in errors:
            where = f"{r.get('error_source') or ''}: {r.get('error') or ''}"
            table.add_row(str(r["id"]), r["model"], str(r["status"]), where[:90])
        parts.append(table)
    return Group(*parts)


class _LiveWriter:
    """A file-like object that prints through a Live display, above its panel."""

    def __init__(self, live: Live) -> None:
        self.live = live

    def write(self, data: str) -> int:
        if data.strip():
            self.live.console.print(Text.from_ansi(data.rstrip("\n")))
        return len(data)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False
