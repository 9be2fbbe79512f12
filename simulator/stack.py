"""The whole stack on one machine, for tests, the demo and benchmarks.

Real parts, really started: the simulator (a subprocess), the tool (`mitmdump -s addons/bridge.py`,
a subprocess, with lmarena.ai mapped to the simulator by mitmproxy's own map_remote), and Debian
Chromium driven by playwright through the proxy, trusting the tool's CA the way a Linux user would
(an NSS database in the browser's HOME).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("ARENA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
ARENA_HOSTS_RE = r"^(.+\.)?(lm)?arena\.ai(:443)?$"


class StackError(RuntimeError):
    pass


class _Proc:
    """A subprocess whose output is collected line by line in the background."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT):
        self.name = name
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._cond:
            while True:
                for line in self.lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                if self.proc.poll() is not None:
                    raise StackError(f"{self.name} exited ({self.proc.returncode}):\n" + self.output())
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StackError(f"{self.name}: no line matching {pattern!r} in {timeout} s:\n" + self.output())
                self._cond.wait(min(left, 0.5))

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines[-200:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Stack:
    workdir: Path
    generation: str = "2026"  # simulator.server.Generation
    cadence_ms: float = 15.0
    csp: str = "nonce"
    tool_options: dict[str, Any] = field(default_factory=dict)
    sim: _Proc | None = None
    tool: _Proc | None = None
    earlier_tools: list[_Proc] = field(default_factory=list)
    sim_port: int = 0
    arena_port: int = 0
    proxy_port: int = 0
    api_port: int = 0
    bridge_script: Path = ROOT / "addons" / "bridge.py"  # another checkout's, to compare versions
    extra_scripts: list[Path] = field(default_factory=list)  # loaded after the bridge (tests plant faults)

    @property
    def confdir(self) -> Path:
        return self.workdir / "certs"

    @property
    def store(self) -> Path:
        return self.workdir / "pool.json"

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def sim_base(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    # ------------------------------------------------------------------ processes

    def start_simulator(self) -> None:
        self.sim = _Proc(
            "simulator",
            [sys.executable, "-m", "simulator", "--port", "0", "--arena-port", "0", "--generation", self.generation,
             "--cadence-ms", str(self.cadence_ms), "--csp", self.csp],
        )
        self.sim_port = int(self.sim.wait_for(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
        self.arena_port = int(self.sim.wait_for(r"as arena\.ai on http://127\.0\.0\.1:(\d+)").group(1))

    def tool_argv(self, proxy_port: int = 0, **options: Any) -> list[str]:
        """The command line of the tool, lmarena.ai mapped to the simulator."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        opts = {
            "confdir": str(self.confdir),
            "connection_strategy": "lazy",  # offline: no DNS for lmarena.ai
            "arena_api_port": 0,
            "arena_store": str(self.store),
            "arena_canary_interval": 0,  # tests run the canary when they mean to
            "arena_log_dir": str(self.workdir / "logs"),
            **self.tool_options,
            **options,
        }
        mitmdump = Path(sys.executable).with_name("mitmdump")
        argv = [str(mitmdump), "-s", str(self.bridge_script)]
        for script in self.extra_scripts:
            argv += ["-s", str(script)]
        argv += ["--listen-host", "127.0.0.1", "-p", str(proxy_port),
                 "--allow-hosts", ARENA_HOSTS_RE,
                 "--map-remote", rf"|~d lmarena.ai|^https://lmarena\.ai/(?!__bridge/)|{self.sim_base}/",
                 "--map-remote", rf"|~d arena.ai & !~d lmarena.ai|^https://arena\.ai/(?!__bridge/)|"
                                 rf"http://127.0.0.1:{self.arena_port}/",
                 "--set", "dumper_filter=!(~u /__bridge/)"]
        for key, value in opts.items():
            argv += ["--set", f"{key}={value}"]
        return argv

    def start_tool(self, proxy_port: int = 0, web: bool = False, **options: Any) -> None:
        """The tool under mitmdump, or under mitmweb (`web=True`, its UI on a free port, no browser opened)."""
        self._options = options
        argv = self.tool_argv(proxy_port, **options)
        if web:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                web_port = s.getsockname()[1]
            dumper_only = argv.index("dumper_filter=!(~u /__bridge/)")
            del argv[dumper_only - 1 : dumper_only + 1]  # mitmweb has no dumper
            argv[0] = str(Path(argv[0]).with_name("mitmweb"))
            argv += ["--set", "web_open_browser=false", "--set", f"web_port={web_port}"]
        self.tool = _Proc("tool", argv)
        self.proxy_port = int(self.tool.wait_for(r"proxy listening at .*:(\d+)").group(1))
        self.api_port = int(self.tool.wait_for(r"OpenAI-compatible API on http://[^:]+:(\d+)").group(1))

    def start_plain_proxy(self) -> None:
        """mitmdump alone, as the tool runs it but without the tool's script: what proxying costs by itself
        (for benchmarks). The browser setup is the same (the same CA, hosts and mapping)."""
        argv = self.tool_argv()
        script = argv.index(str(self.bridge_script))
        del argv[script - 1 : script + 1]
        for option in [a for a in argv if a.startswith("arena_")]:
            at = argv.index(option)
            del argv[at - 1 : at + 1]
        self.tool = _Proc("plain", argv)
        self.proxy_port = int(self.tool.wait_for(r"proxy listening at .*:(\d+)").group(1))

    def stop_tool(self) -> None:
        if self.tool is not None:
            self.tool.stop()

    def restart_tool(self, **options: Any) -> None:
        """Stop the tool and start it again on the same proxy port (the browser keeps its setting),
        with the same options, changed by `options`."""
        self.stop_tool()
        if self.tool is not None:
            self.earlier_tools.append(self.tool)
        self.start_tool(proxy_port=self.proxy_port, **{**getattr(self, "_options", {}), **options})

    def tool_output(self) -> str:
        """Everything every tool process of this stack printed."""
        procs = self.earlier_tools + ([self.tool] if self.tool else [])
        return "\n".join(line for proc in procs for line in proc.lines)

    def start(self) -> Stack:
        self.start_simulator()
        self.start_tool()
        return self

    def stop(self) -> None:
        for proc in (self.tool, self.sim):
            if proc is not None:
                proc.stop()

    # ------------------------------------------------------------------ browser

    def browser_home(self, name: str = "browser") -> Path:
        """A HOME whose NSS database trusts the tool's CA, as `certutil` sets it up for a Linux user."""
        home = self.workdir / name
        nssdb = home / ".pki" / "nssdb"
        if not (nssdb / "cert9.db").exists():
            nssdb.mkdir(parents=True, exist_ok=True)
            ca = self.confdir / "mitmproxy-ca-cert.pem"
            if not ca.exists():
                raise StackError(f"the tool has not written its CA to {ca}")
            certutil = shutil.which("certutil")
            if certutil is None:
                raise StackError("certutil is missing: apt-get install libnss3-tools")
            subprocess.run([certutil, "-d", f"sql:{nssdb}", "-N", "--empty-password"], check=True)
            subprocess.run(
                [certutil, "-d", f"sql:{nssdb}", "-A", "-t", "C,,", "-n", "mitmproxy", "-i", str(ca)], check=True
            )
        return home

    def launch_args(self, profile: str = "browser") -> dict[str, Any]:
        """Keyword arguments for playwright's `chromium.launch`."""
        home = self.browser_home(profile)
        return {
            "executable_path": CHROMIUM,
            "headless": True,
            "args": CHROMIUM_FLAGS + [f"--proxy-server=http://127.0.0.1:{self.proxy_port}"],
            "env": {**os.environ, "HOME": str(home)},
        }

    # ------------------------------------------------------------------ helpers

    def wait_page_connected(self, count: int = 1, timeout: float = 20.0) -> dict[str, Any]:
        import httpx

        deadline = time.monotonic() + timeout
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = httpx.get(self.api_base + "/healthz", timeout=5).json()
            if health["pages"]["ready"] >= count:
                return health
            time.sleep(0.2)
        raise StackError(f"no page connected in {timeout} s: {health}\n{self.tool.output() if self.tool else ''}")


def chat_in_page(page: Any, model: str, text: str, timeout_ms: float = 20000) -> dict[str, Any]:
    """Use the simulated site's own interface: pick a model, type, click Send, wait for the answer."""
    page.select_option("#model", label=model)
    page.fill("#input", text)
    before = page.evaluate("window.__simAnswers.length")
    page.click("#send")
    wait_js(page, f"window.__simAnswers.length > {before}", timeout_ms)
    return page.evaluate("window.__simAnswers[window.__simAnswers.length - 1]")


def sign_in(page: Any, timeout_ms: float = 20000) -> None:
    """Click the simulated site's "Sign in": a registered account's session, then the page reloads."""
    with page.expect_navigation(timeout=timeout_ms):
        page.click("#sign-in")
    wait_js(page, "!document.getElementById('sign-in') && window.__lmarenaBridge && window.__lmarenaBridge.connected",
            timeout_ms)


def wait_until(check: Any, timeout: float = 20, what: str = "condition", every: float = 0.1) -> Any:
    """Poll `check` until it returns something true and return that; after `timeout` seconds, raise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}")


def wait_js(page: Any, expression: str, timeout_ms: float = 20000) -> Any:
    """Poll an expression with `page.evaluate` (not subject to the page's CSP, unlike
    `wait_for_function`, which the site's no-eval policy breaks)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise StackError(f"timed out waiting for {expression!r} in the page")
        time.sleep(0.05)
