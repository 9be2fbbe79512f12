"""End to end, the doctor and the drift report against the 2026 simulator: each failure mode the simulator can
produce (no page, an untrusted CA, Cloudflare, a reCAPTCHA box, the login gate, a wrong key, an empty pool, a
site that ignores a retry's messages) makes `scripts/doctor.py` point at the right link with the right advice
and exit 1, and 0 once all is well; an unknown stream line and an unknown error body reach the drift report
and the file `scripts/report.py` writes, with no secret and no message text in it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from simulator.stack import CHROMIUM, CHROMIUM_FLAGS, ROOT, Stack, sign_in
from tests.conftest import open_arena_page, running_stack, wait_until

pytestmark = pytest.mark.e2e

MODEL = "gemini-2.5-pro"
KEY = "sk-planted-doctor-key-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack("doctor", "2026", cadence_ms=2, arena_prefill="off", arena_canary_interval=900,
                       arena_page_wait=1, arena_api_key=KEY) as st:
        yield st


def doctor(stack: Stack, *args: str) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "doctor.py"), "--api", stack.api_base, "--key",
                           KEY, "--json", *args], capture_output=True, text=True, timeout=180)
    return done.returncode, json.loads(done.stdout)


def link(result: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in result["checks"] if c["link"] == name)


def sim_config(stack: Stack, **values: Any) -> None:
    httpx.post(stack.sim_base + "/__sim/config", json=values, timeout=10)


def pages(stack: Stack) -> list[dict[str, Any]]:
    return httpx.get(stack.api_base + "/api/pages", headers=HEADERS, timeout=10).json()["pages"]


def test_with_no_browser_the_doctor_points_at_the_browser_and_exits_1(stack):
    code, result = doctor(stack)
    assert code == 1 and {"browser", "page"} <= set(result["broken"])
    assert f"127.0.0.1:{stack.proxy_port}" in link(result, "browser")["fix"]
    no_key = subprocess.run([sys.executable, str(ROOT / "scripts" / "doctor.py"), "--api", stack.api_base],
                            capture_output=True, text=True, timeout=60)
    assert no_key.returncode == 1 and "--key" in no_key.stdout


def test_a_browser_that_does_not_trust_the_ca_is_told_how_to(stack, playwright_instance):
    home = Path(tempfile.mkdtemp(prefix="arena-untrusting-"))  # no NSS database: the tool's CA is unknown
    browser = playwright_instance.chromium.launch(
        executable_path=CHROMIUM, headless=True, env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
        args=CHROMIUM_FLAGS + [f"--proxy-server=http://127.0.0.1:{stack.proxy_port}"])
    try:
        with pytest.raises(Exception, match="CERT"):
            browser.new_page().goto("https://arena.ai/text/direct")
    finally:
        browser.close()
    code, result = doctor(stack)
    tls = link(result, "tls")
    assert code == 1 and tls["status"] == "broken" and "arena.ai" in tls["detail"]
    assert "certutil" in tls["fix"] and "Trusted Root" in tls["fix"] and "受信任的根证书" in tls["fix_zh"]
    assert link(result, "browser")["status"] == "ok", "a browser does use the proxy"


@pytest.mark.parametrize("config, state, advice", [
    ({"cloudflare_seconds": 1000}, "challenge", "Cloudflare"),
    ({"v2_challenge": True}, "needs_human_check", "reCAPTCHA"),
])
def test_a_check_in_the_page_points_at_the_page(stack, browser, config, state, advice):
    sim_config(stack, **config)
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto("https://arena.ai/text/direct")
        if state == "needs_human_check":  # the site shows its box to signed-in people
            tab.click("#sign-in")
        wait_until(lambda: [p["state"] for p in pages(stack)] == [state], what=state)
        code, result = doctor(stack)
        page = link(result, "page")
        assert code == 1 and page["status"] == "broken" and advice in page["fix"] and page["fix_zh"]
    finally:
        context.close()
        sim_config(stack, **{k: 0 if k == "cloudflare_seconds" else False for k in config})


@pytest.fixture(scope="module")
def person(stack: Stack, browser: Any) -> Iterator[Any]:
    """The person's arena.ai tab, as a guest at first."""
    context = browser.new_context()
    tab = open_arena_page(stack, context, "https://arena.ai/text/direct")
    yield tab
    context.close()


def sdk(stack: Stack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_base + "/v1", api_key=KEY, max_retries=0, timeout=60)


def test_the_login_gate_points_at_the_page_until_the_person_signs_in(stack, person):
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(stack).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi as a guest"}])
    assert caught.value.status_code == 503
    code, result = doctor(stack)
    page = link(result, "page")
    assert code == 1 and page["status"] == "broken" and "account" in page["fix"] and "登录" in page["fix_zh"]
    sign_in(person)
    stack.wait_page_connected()
    wait_until(lambda: any(p["state"] == "ready" for p in pages(stack)), what="the signed-in page")
    assert link(doctor(stack)[1], "page")["status"] == "ok"


def test_a_model_with_nothing_pooled_and_a_site_that_ignores_retries(stack, person):
    sdk(stack).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}])
    wait_until(lambda: httpx.get(stack.api_base + "/api/strategy", headers=HEADERS, timeout=10).json()["canary"],
               timeout=30, what="the canary")
    code, result = doctor(stack, "--model", "gpt-5-high")
    pool = link(result, "pool:gpt-5-high")
    assert pool["status"] == "warning" and "creates one" in pool["detail"] and "prefill" in pool["fix"]
    strategy = link(result, "strategy")
    assert strategy["status"] == "ok" and "ignores a retry's messages" in strategy["detail"]
    recaptcha = link(result, "recaptcha")
    assert recaptcha["status"] == "ok" and "minted" in recaptcha["detail"]
    assert code == 0, "warnings do not fail the doctor"
    code, result = doctor(stack, "--probe")
    assert code == 0 and link(result, "probe")["status"] == "ok"


def test_a_wrong_key_points_at_recaptcha(stack, person):
    stack.restart_tool(arena_recaptcha_sitekey="6LwrongKEYwrongKEYwrongKEYwrongKEY00000")
    try:
        stack.wait_page_connected()
        code, result = doctor(stack)
        recaptcha = link(result, "recaptcha")
        assert code == 1 and recaptcha["status"] == "broken"
        assert "clear arena_recaptcha_sitekey" in recaptcha["fix"] and "arena_recaptcha_sitekey" in recaptcha["fix_zh"]
    finally:
        stack.restart_tool(arena_recaptcha_sitekey="")
        stack.wait_page_connected()


def test_unknown_lines_and_error_bodies_reach_the_report_without_secrets(stack, person, tmp_path):
    client = sdk(stack)
    httpx.post(stack.sim_base + "/__sim/fault", timeout=10, json={
        "session": None, "insert": {"at": 2, "lines": ['ax:{"weirdPart":[1,2,3]}']}})
    answer = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "PLANTED MESSAGE one"}])
    assert "PLANTED MESSAGE one" in (answer.choices[0].message.content or "")
    httpx.post(stack.sim_base + "/__sim/fault", timeout=10, json={
        "session": None, "status": 418, "body": json.dumps({"oddError": "PLANTED BODY TEXT", "code": 7})})
    client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "PLANTED MESSAGE two"}])
    httpx.post(stack.sim_base + "/__sim/fault", timeout=10, json={  # the model's provider fails mid-answer
        "session": None, "insert": {"at": 4, "lines": ['a3:"PLANTED PROVIDER TEXT"']}})
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "PLANTED MESSAGE three"}])
    drift = httpx.get(stack.api_base + "/api/drift", headers=HEADERS, timeout=10).json()["shapes"]
    kinds = {d["kind"] for d in drift}
    assert {"stream_line", "error_status"} <= kinds
    out = tmp_path / "report.json"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), "--api", stack.api_base, "--key", KEY,
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = out.read_text("utf-8")
    report = json.loads(text)
    assert {"stream_line", "error_status"} <= {d["kind"] for d in report["drift"]}
    assert any("418" in d["shape"] for d in report["drift"])
    failure = report["failures"][-1]
    assert failure["error_source"] == "upstream" and "a3" in failure["codes"] and "a0" in failure["codes"]
    secrets = [KEY, "PLANTED", httpx.get(stack.api_base + "/api/requests", headers=HEADERS,
                                         timeout=10).json()["requests"][-1]["conversation"] or "no-conversation"]
    secrets += [c["value"] for c in person.context.cookies() if len(c["value"]) >= 8]
    secrets += [(stack.confdir / "lmarena-bridge-secret").read_text().strip()]
    for secret in secrets:
        assert secret not in text, f"{secret[:12]}… is in the report"
