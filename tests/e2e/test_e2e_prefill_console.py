"""End to end, the start-up prefill as the user described it: the tool runs in a terminal (tmux),
a page connects, the console asks "Press Enter to continue" (or "按回车键继续"), a person answers
with Enter, or skips with Ctrl+C without stopping the tool.
"""

from __future__ import annotations

import re
import shlex
import shutil
import socket
import subprocess
import time
from typing import Any, Iterator

import httpx
import pytest

from simulator.stack import Stack
from tests.conftest import ARTIFACTS, make_stack, open_arena_page

pytestmark = pytest.mark.e2e

MODELS = ("gemini-2.5-pro", "gpt-5-high")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-J", "-t", session, "-S", "-300")


def wait_screen(session: str, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = screen(session)
        if needle in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} never showed on the console:\n{screen(session)}")


class TerminalTool:
    """The tool in a real terminal, started the way a person starts it."""

    def __init__(self, stack: Stack, name: str, **options: Any) -> None:
        if shutil.which("tmux") is None:
            pytest.fail("tmux is missing: apt-get install -y tmux (scripts/test.sh does this)")
        self.stack = stack
        self.session = f"arena-{name}-{int(time.time() * 1000) % 100000}"
        stack.proxy_port, stack.api_port = free_port(), free_port()
        argv = stack.tool_argv(stack.proxy_port, arena_api_port=stack.api_port, arena_prefill="ask",
                               arena_prefill_delay=1, arena_prefill_models=",".join(MODELS),
                               arena_sessions_per_model=2, arena_prefill_interval=0.2, **options)
        command = "env LANG=C.UTF-8 LC_ALL=C.UTF-8 " + shlex.join(argv)
        tmux("-u", "new-session", "-d", "-s", self.session, "-x", "200", "-y", "50", command)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(stack.api_base + "/healthz", timeout=2)
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise AssertionError("the tool did not start:\n" + screen(self.session))

    def stop(self, artifact: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / f"{artifact}-console.txt").write_text(screen(self.session), "utf-8")
        subprocess.run(["tmux", "kill-session", "-t", self.session], capture_output=True)


@pytest.fixture
def stack() -> Iterator[Stack]:
    st = make_stack("console", generation="retry-honoured")
    st.start_simulator()
    yield st
    st.stop()


def connect_page(stack: Stack, playwright_instance: Any) -> Any:
    browser = playwright_instance.chromium.launch(**stack.launch_args())
    open_arena_page(stack, browser)
    return browser


def test_enter_creates_the_conversations_with_a_progress_bar(stack, playwright_instance):
    tool = TerminalTool(stack, "enter", arena_lang="en")
    try:
        browser = connect_page(stack, playwright_instance)
        text = wait_screen(tool.session, "Press Enter to continue")
        assert "Create 2 conversations for each of 2 models (4 in all) by sending 'Hi'?" in text
        assert httpx.get(stack.api_base + "/api/pool", timeout=5).json()["conversations"] == [], "it waits"
        tmux("send-keys", "-t", tool.session, "Enter")
        text = wait_screen(tool.session, "Prefill done: 4 created, 0 failed or skipped.")
        assert "Creating conversations" in text, "the progress bar was shown"
        assert text.count("prefill: gemini-2.5-pro conversation ") == 2, "a log line per conversation"
        pool = httpx.get(stack.api_base + "/api/pool", timeout=5).json()["stats"]
        assert {m: pool[m]["ready"] for m in MODELS} == {m: 2 for m in MODELS}
        # afterwards the live view is back: URLs, the page, the pool per model
        text = wait_screen(tool.session, "│ gpt-5-high")  # a pool row in the live panel
        assert f"Proxy 127.0.0.1:{stack.proxy_port}" in text and "Pages: ready" in text
        assert "To start: 1) set your browser's proxy to" in text, "the steps a new user needs"
        browser.close()
    finally:
        tool.stop("prefill-enter")


def test_ctrl_c_skips_the_prefill_and_the_tool_keeps_running_in_chinese(stack, playwright_instance):
    tool = TerminalTool(stack, "ctrlc", arena_lang="zh")
    try:
        browser = connect_page(stack, playwright_instance)
        text = wait_screen(tool.session, "按回车键继续")
        assert "为 2 个模型各创建 2 个会话" in text
        tmux("send-keys", "-t", tool.session, "C-c")
        wait_screen(tool.session, "已跳过预创建")
        time.sleep(1)
        health = httpx.get(stack.api_base + "/healthz", timeout=5).json()
        assert health["pages"]["connected"] == 1, "Ctrl+C skipped the prompt, it did not stop the tool"
        assert health["pool"] == {}
        browser.close()
    finally:
        tool.stop("prefill-ctrlc")


def test_auto_prefills_without_asking_and_ask_without_a_terminal_says_how(stack, playwright_instance):
    stack.start_tool(arena_prefill="auto", arena_prefill_delay=0.5, arena_prefill_models=MODELS[0],
                     arena_sessions_per_model=2, arena_prefill_interval=0.1)
    browser = connect_page(stack, playwright_instance)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            stats = httpx.get(stack.api_base + "/api/pool", timeout=5).json()["stats"]
            if stats.get(MODELS[0], {}).get("ready") == 2:
                break
            time.sleep(0.2)
        assert stats[MODELS[0]]["ready"] == 2, stats
        stack.restart_tool()  # same pool file: nothing missing, so nothing to ask or create
        stack.wait_page_connected(timeout=30)
        stack.tool.wait_for("no prefill needed", timeout=30)
    finally:
        browser.close()
    other = make_stack("console-notty", generation="retry-honoured")
    other.start_simulator()
    try:
        other.start_tool(arena_prefill="ask", arena_prefill_delay=0.5, arena_prefill_models=MODELS[0])
        browser = connect_page(other, playwright_instance)
        line = other.tool.wait_for("there is none, so it is off now", timeout=30).string
        assert "scripts/prefill_pool.py" in line
        assert httpx.get(other.api_base + "/api/pool", timeout=5).json()["conversations"] == []
        browser.close()
    finally:
        other.stop()


def test_under_mitmweb_the_steps_give_its_token_url(stack):
    stack.start_tool(web=True, arena_prefill="off")
    line = stack.tool.wait_for(r"set your browser's proxy to", timeout=30).string
    assert re.search(r"mitmweb http://127\.0\.0\.1:\d+/\?token=[0-9a-f]+", line), line
    assert httpx.get(stack.api_base + "/healthz", timeout=5).status_code == 200
