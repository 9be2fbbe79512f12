"""The doctor (relay/doctor.py): each link judged from what the tool has seen, with the fix in English and
Chinese; a token minted in the page on request; the verdict broken when any link is."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from pool_store.pool import Conversation
from relay.core import assemble
from relay.pages import Page
from relay.services import Services
from relay.settings import Settings, Strategy

MODEL = "gemini-2.5-pro"


class PageSocket:
    """A page that answers the doctor's token probe (ok or not), as the page script does."""

    def __init__(self, services: Services, page_id: str, mints: bool = True) -> None:
        self.services, self.page_id, self.mints = services, page_id, mints
        self.sent: list[dict[str, Any]] = []

    async def send_text(self, text: str) -> None:
        message = json.loads(text)
        self.sent.append(message)
        if message["type"] == "token_probe":
            page = self.services.pages.pages[self.page_id]
            report = {"key": "6LsiteKEYxxxxxxxxxxxxxxxxxxxx", "source": "script"} if self.mints else {
                "key": None, "source": "none", "error": "reCAPTCHA did not load in the page"}
            self.services.pages._handle(page, json.dumps({"type": "token_probe", "probe": message["probe"],
                                                          "ok": self.mints, "report": report}))


def connect(services: Services, state: str = "ready", mints: bool = True, **page: Any) -> Page:
    p = Page("p1", page.pop("identity", "user:1"), "https://arena.ai/text/direct", state,
             ws=PageSocket(services, "p1", mints), sitekey="6LsiteKEYxxxxxxxxxxxxxxxxxxxx", sitekey_source="script",
             **page)  # type: ignore[arg-type]
    services.pages.pages["p1"] = p
    return p


def checks(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    for c in result["checks"]:  # every verdict, in every test, is said in both languages
        assert c["detail"] and any("\u4e00" <= ch <= "\u9fff" for ch in c["detail_zh"]), c
        assert bool(c["fix"]) == bool(c["fix_zh"]), c
    return {c["link"]: c for c in result["checks"]}


@pytest.fixture
def services() -> Services:
    return Services(Settings())


async def test_nothing_connected_points_at_the_browser_and_the_page(services):
    result = await assemble(services).doctor.examine()
    found = checks(result)
    assert not result["ok"] and {"browser", "page"} <= set(result["broken"])
    assert "127.0.0.1:8080" in found["browser"]["fix"] and "代理" in found["browser"]["fix_zh"]
    assert found["api"]["status"] == "ok"


async def test_an_untrusted_ca_points_at_tls_with_how_to_trust_it(services):
    services.observed.untrusted["arena.ai"] = (3, time.time())
    found = checks(await assemble(services).doctor.examine())
    assert found["browser"]["status"] == "ok", "a browser does use the proxy"
    tls = found["tls"]
    assert tls["status"] == "broken" and "certutil" in tls["fix"] and "受信任" in tls["fix_zh"]


@pytest.mark.parametrize("state, flag, words", [
    ("challenge", {}, "Cloudflare"),
    ("needs_human_check", {}, "reCAPTCHA"),
    ("ready", {"needs_account": True}, "account"),
    ("ready", {"identity": None}, "sign in"),
])
async def test_a_page_in_the_way_points_at_the_page_with_its_advice(services, state, flag, words):
    connect(services, state, **flag)
    found = checks(await assemble(services).doctor.examine())
    assert found["page"]["status"] == "broken" and words in found["page"]["fix"] and found["page"]["fix_zh"]
    assert found["tls"]["status"] == "ok"


async def test_the_recaptcha_link_mints_a_token_and_knows_a_wrong_key_and_a_refusal(services):
    page = connect(services)
    found = checks(await assemble(services).doctor.examine())
    assert found["recaptcha"]["status"] == "ok" and "minted" in found["recaptcha"]["detail"]
    assert [m["type"] for m in page.ws.sent] == ["token_probe"]  # type: ignore[union-attr]
    assert checks(await assemble(services).doctor.examine(token=False))["recaptcha"]["status"] == "ok"
    assert len(page.ws.sent) == 1, "token=false mints nothing"  # type: ignore[union-attr]
    services.settings.recaptcha_sitekey = "6LwrongKEYxxxxxxxxxxxxxxxxxxx"
    found = checks(await assemble(services).doctor.examine())
    assert found["recaptcha"]["status"] == "broken" and "clear arena_recaptcha_sitekey" in found["recaptcha"]["fix"]
    services.settings.recaptcha_sitekey = ""
    services.observed.token_refusal = {"reason": "low_score", "advice": "send one message by hand", "at": time.time()}
    found = checks(await assemble(services).doctor.examine())
    assert found["recaptcha"]["status"] == "broken" and found["recaptcha"]["data"]["reason"] == "low_score"


async def test_a_page_that_cannot_mint_is_broken(services):
    connect(services, mints=False)
    found = checks(await assemble(services).doctor.examine())
    assert found["recaptcha"]["status"] == "broken" and "could not mint" in found["recaptcha"]["detail"]


async def test_the_pool_of_the_models_asked(services):
    connect(services)
    services.pool.upsert(Conversation("s1", "m1", MODEL, identity="user:1"))
    found = checks(await assemble(services).doctor.examine([MODEL, "gpt-5-high", "no-such-model"], token=False))
    assert found[f"pool:{MODEL}"]["status"] == "ok"
    assert found["pool:gpt-5-high"]["status"] == "warning" and "creates one" in found["pool:gpt-5-high"]["detail"]
    assert found["pool:no-such-model"]["status"] == "broken"


async def test_the_strategy_link_reads_the_canary(services):
    connect(services)
    doctor = assemble(services).doctor
    assert checks(await doctor.examine(token=False))["strategy"]["status"] == "warning", "no canary yet"
    services.strategy.canary = {"ok": True, "chosen": "mirror", "probes": [
        {"strategy": "retry", "ok": False, "detail": "the answer was to another question"},
        {"strategy": "mirror", "ok": True, "detail": "ok"}]}
    services.strategy.choose(Strategy.MIRROR)
    strategy = checks(await doctor.examine(token=False))["strategy"]
    assert strategy["status"] == "ok" and "ignores a retry's messages" in strategy["detail"]
    services.strategy.mode = "retry"
    assert checks(await doctor.examine(token=False))["strategy"]["status"] == "broken", "pinned to what fails"
    services.strategy.canary = {"ok": False, "probes": [{"strategy": "retry", "ok": False, "detail": "403"}]}
    assert checks(await doctor.examine(token=False))["strategy"]["status"] == "broken"
