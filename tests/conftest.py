"""Shared fixtures: the whole stack (simulator, tool, Chromium) for end-to-end tests."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

# wait_until: the e2e tests import it from here
from simulator.stack import CHROMIUM, ROOT, Stack, wait_until  # noqa: F401

ARTIFACTS = ROOT / "test-artifacts"


def _require_browser() -> None:
    if not (os.path.exists(CHROMIUM) and shutil.which("certutil")):
        if os.environ.get("ARENA_ALLOW_NO_BROWSER") == "1":
            pytest.skip("Chromium or certutil is missing and ARENA_ALLOW_NO_BROWSER=1")
        pytest.fail(
            f"end-to-end tests need {CHROMIUM} and certutil: apt-get install -y chromium libnss3-tools "
            "(scripts/test.sh does this)"
        )


@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[object]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@contextmanager
def running_stack(
    name: str, generation: str, cadence_ms: float = 15.0, extra_scripts: tuple[Path, ...] = (),
    **tool_options: object
) -> Iterator[Stack]:
    """Simulator and tool started; their logs kept as artifacts when done. `generation` is the simulator's
    (`simulator.server.Generation`): each module says which site it tests; `extra_scripts` are mitmproxy
    scripts loaded after the tool's."""
    stack = make_stack(name, cadence_ms=cadence_ms, generation=generation, extra_scripts=list(extra_scripts))
    stack.start_simulator()
    stack.start_tool(**tool_options)
    try:
        yield stack
    finally:
        keep_logs(stack, f"e2e-{name}")
        stack.stop()


@pytest.fixture(scope="module")
def browser(stack: Stack, playwright_instance: Any) -> Iterator[Any]:
    """Chromium through the module's stack (each end-to-end module defines `stack`)."""
    launched = playwright_instance.chromium.launch(**stack.launch_args())
    yield launched
    launched.close()


def make_stack(name: str, **kw: object) -> Stack:
    workdir = Path(tempfile.mkdtemp(prefix=f"arena-{name}-"))
    return Stack(workdir, **kw)  # type: ignore[arg-type]


def keep_logs(stack: Stack, name: str) -> None:
    """The tool's and the simulator's output, kept as test artifacts."""
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"{name}-tool.log").write_text(stack.tool_output(), "utf-8")
    if stack.sim is not None:
        (ARTIFACTS / f"{name}-simulator.log").write_text("\n".join(stack.sim.lines), "utf-8")


def open_arena_page(stack: Stack, context: object, url: str = "https://lmarena.ai/?mode=direct") -> object:
    """A new LMArena tab in a browser context (or browser), connected to the tool."""
    page = context.new_page()  # type: ignore[attr-defined]
    page.goto(url)
    stack.wait_page_connected()
    return page
