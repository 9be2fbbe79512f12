"""The doctor: the chain a request takes, link by link, each ok / warning / broken with the fix (English and
Chinese). Read from what the tool has seen (the pages, the proxy's connections, the pool, the canary), plus
two things it does on request: a token minted in the page (kept there, never sent) and, with `probe`, one
real request (it spends a site answer)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from relay.errors import RelayError
from relay.pages import ADVICE, Page
from relay.requestlog import RequestRecord
from relay.services import Services
from sites import lmarena as site

if TYPE_CHECKING:
    from relay.engine import ReplayEngine

Status = Literal["ok", "warning", "broken"]
RECENT = 1800.0  # what happened in the last half hour still counts

TRUST_CA = (
    "the browser does not trust the tool's CA, so arena pages fail with a certificate error. Trust "
    "certs/mitmproxy-ca-cert.pem (made at the first start): Windows: open certs/mitmproxy-ca-cert.cer, Install "
    "Certificate, Local Machine, 'Trusted Root Certification Authorities'; macOS: open the .pem in Keychain Access "
    "(System), set 'Always Trust'; Linux Chrome/Chromium: certutil -d sql:$HOME/.pki/nssdb -A -t C,, -n mitmproxy -i "
    "certs/mitmproxy-ca-cert.pem; Firefox: Settings, Certificates, Import. Then reload the arena.ai tab",
    "浏览器不信任本工具的 CA 证书，arena 页面会出现证书错误。请信任 certs/mitmproxy-ca-cert.pem（首次启动时生成）："
    "Windows：打开 certs/mitmproxy-ca-cert.cer，安装证书，选择“本地计算机”和“受信任的根证书颁发机构”；"
    "macOS：在钥匙串访问"
    "（系统）中打开 .pem 并设为“始终信任”；Linux 的 Chrome/Chromium：certutil -d sql:$HOME/.pki/nssdb -A -t C,, "
    "-n mitmproxy -i certs/mitmproxy-ca-cert.pem；Firefox：设置→证书→导入。然后刷新 arena.ai 标签页",
)
PROBE_FIX = ("the links above say where; the request log (GET /api/requests, the dashboard) names who failed",
             "请看上面各环节的结果；请求日志（GET /api/requests 或仪表盘）会写明是哪一方失败")
TOKEN_ADVICE_ZH = {
    "no_token": "页面无法生成 reCAPTCHA 令牌：reCAPTCHA 未加载，或标签页在后台；请把 arena.ai 标签页切到前台",
    "wrong_key": "页面用错了 reCAPTCHA 密钥：请清空 arena_recaptcha_sitekey 选项并刷新 arena.ai 标签页，"
                 "让页面使用网站自己的密钥",
    "expired": "令牌发送时已过期（网站只接受约 120 秒内的令牌）",
    "low_score": "网站的 reCAPTCHA 给此浏览器打了低分：请在 arena.ai 标签页手动发送一条消息，保持标签页在前台，"
                 "避免使用 VPN 或机房 IP",
    "unknown": "页面没有报告令牌的生成情况：请刷新 arena.ai 标签页",
}


@dataclass
class Check:
    link: str  # api | browser | tls | page | recaptcha | pool:<model> | strategy | probe
    status: Status
    detail: str
    fix: str = ""
    fix_zh: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    detail_zh: str = ""  # what the tool sees, in Chinese


class Doctor:
    def __init__(self, services: Services, engine: ReplayEngine) -> None:
        self.services = services
        self.engine = engine

    async def examine(self, models: list[str] | None = None, probe: bool = False,
                      token: bool = True) -> dict[str, Any]:
        """`token=False`: no token is minted (the reCAPTCHA link is judged from what the page reported)."""
        checks = [Check("api", "ok", "the tool is running and its API answers", detail_zh="工具正在运行，API 有响应")]
        checks += [self._browser(), self._tls(), self._page()]
        checks.append(await self._recaptcha(token))
        checks += self._pool(models or [])
        checks.append(self._strategy())
        if probe:
            checks.append(await self._probe(models[0] if models else None))
        broken = [c.link for c in checks if c.status == "broken"]
        return {"time": time.time(), "ok": not broken, "broken": broken, "checks": [asdict(c) for c in checks]}

    # ------------------------------------------------------------------ the browser and the page

    def _browser(self) -> Check:
        observed, pages = self.services.observed, self.services.pages.pages
        if pages:
            return Check("browser", "ok", f"{len(pages)} page(s) connected through the proxy",
                         detail_zh=f"{len(pages)} 个页面已通过代理连接")
        if time.time() - observed.last_arena_request < RECENT or observed.untrusted:
            return Check("browser", "ok", "a browser sends arena.ai traffic through the proxy (no page connected yet)",
                         detail_zh="有浏览器通过代理访问 arena.ai（尚无页面连接）")
        port = observed.proxy_port
        return Check("browser", "broken", "no browser has sent arena.ai traffic through the proxy",
                     f"set the browser's HTTP and HTTPS proxy to 127.0.0.1:{port} (Chromium: "
                     f"--proxy-server=http://127.0.0.1:{port}), then open {site.START_URL}",
                     f"请把浏览器的 HTTP 和 HTTPS 代理设为 127.0.0.1:{port}（Chromium 可用 "
                     f"--proxy-server=http://127.0.0.1:{port}），然后打开 {site.START_URL}",
                     detail_zh="还没有浏览器通过代理访问 arena.ai")

    def _tls(self) -> Check:
        observed = self.services.observed
        if self.services.pages.pages:
            return Check("tls", "ok", "arena pages load over TLS through the tool's CA (the page script runs)",
                         detail_zh="arena 页面通过本工具的 CA 以 TLS 加载（页面脚本在运行）")
        recent = {h: c for h, (c, at) in observed.untrusted.items() if time.time() - at < RECENT}
        if recent:
            hosts = ", ".join(f"{h} ({c}x)" for h, c in sorted(recent.items()))
            return Check("tls", "broken", f"browsers refused the tool's certificate for {hosts}", *TRUST_CA,
                         data={"hosts": recent}, detail_zh=f"浏览器拒绝了本工具为 {hosts} 签发的证书")
        return Check("tls", "warning", "no arena page has loaded through the proxy yet, so its TLS is not proven",
                     f"open {site.START_URL} in the browser that uses the proxy",
                     f"请在使用此代理的浏览器中打开 {site.START_URL}",
                     detail_zh="还没有 arena 页面通过代理加载，无法确认 TLS")

    def _page(self) -> Check:
        pages = list(self.services.pages.pages.values())
        ready = [p for p in pages if p.state == "ready"]
        gated = self.services.observed.direct_mode == site.DIRECT_MODE_2026  # the 2026 site: Direct wants an account
        if ready and gated and all(p.guest for p in ready):
            en, zh = ADVICE["needs_account"]
            return Check("page", "warning", f"{len(ready)} page(s) ready, signed in as a guest only: the site's Direct "
                         "chat may ask for an account", en, zh,
                         detail_zh=f"{len(ready)} 个页面就绪，但都只是访客身份：网站的 Direct 对话可能要求登录")
        if ready:
            return Check("page", "ok", f"{len(ready)} page(s) ready ({ready[0].url})",
                         detail_zh=f"{len(ready)} 个页面就绪（{ready[0].url}）")
        if not pages:
            return Check("page", "broken", "no arena.ai page is connected",
                         f"open {site.START_URL} in the browser that uses the proxy",
                         f"请在使用此代理的浏览器中打开 {site.START_URL}", detail_zh="没有连接的 arena.ai 页面")
        page = pages[0]
        en, zh = ADVICE.get(page.state, ("", ""))
        return Check("page", "broken", f"the page is {page.state} ({page.url})", en, zh, data={"state": page.state},
                     detail_zh=f"页面状态为 {page.state}（{page.url}）")

    async def _recaptcha(self, mint: bool = True) -> Check:
        pages = self.services.pages
        page = next(iter(pages.ready_pages()), None) or next(iter(pages.pages.values()), None)
        if page is None:
            return Check("recaptcha", "warning", "no page to check the reCAPTCHA key and a token in",
                         detail_zh="没有可用来检查 reCAPTCHA 密钥和令牌的页面")
        refusal = self._recent_refusal()
        if refusal is not None:
            return refusal
        key_note = self._key_note(page)
        if not mint:
            return key_note or Check("recaptcha", "ok", f"the page found the site's key ({page.sitekey}, in its "
                                     f"{page.sitekey_source}); no token minted for this check",
                                     detail_zh=f"页面找到了网站的密钥（{page.sitekey}，来自{page.sitekey_source}）；"
                                     "本次检查未生成令牌")
        settings = self.services.settings
        probed = await pages.probe_token(page, settings.recaptcha_actions.submit, settings.recaptcha_sitekey,
                                         site.RECAPTCHA_SITE_KEY) if page.ws is not None else None
        if probed is None:
            return Check("recaptcha", "broken", "the page did not answer a request to mint a token",
                         "reload the arena.ai tab", "请刷新 arena.ai 标签页", detail_zh="页面没有响应生成令牌的请求")
        report = probed["report"]
        if not probed["ok"]:
            return Check("recaptcha", "broken", f"the page could not mint a token: {report.get('error')}",
                         "bring the arena.ai tab to the front and reload it; reCAPTCHA must load in it",
                         TOKEN_ADVICE_ZH["no_token"], data={"report": report},
                         detail_zh=f"页面无法生成令牌：{report.get('error')}")
        if key_note is not None:
            return key_note
        return Check("recaptcha", "ok", f"a token was minted with the site's key ({report.get('key')}, found in the "
                     f"page's {report.get('source')})", data={"report": report},
                     detail_zh=f"已用网站的密钥生成令牌（{report.get('key')}，来自页面的 {report.get('source')}）")

    def _key_note(self, page: Page) -> Check | None:
        configured = self.services.settings.recaptcha_sitekey
        if configured and page.sitekey and configured != page.sitekey:
            return Check("recaptcha", "broken",
                         f"arena_recaptcha_sitekey is {configured}, but the page sees the site using {page.sitekey}",
                         "clear arena_recaptcha_sitekey so the page uses the site's own key",
                         TOKEN_ADVICE_ZH["wrong_key"],
                         detail_zh=f"arena_recaptcha_sitekey 设为 {configured}，但页面看到网站使用的是 {page.sitekey}")
        if not page.sitekey:
            return Check("recaptcha", "warning", "the page has not found the site's reCAPTCHA key (it will use the "
                         "built-in one)", "reload the arena.ai tab", "请刷新 arena.ai 标签页",
                         detail_zh="页面尚未找到网站的 reCAPTCHA 密钥（将使用内置密钥）")
        return None

    def _recent_refusal(self) -> Check | None:
        refusal = self.services.observed.token_refusal
        if not refusal or time.time() - refusal["at"] > RECENT:
            return None
        reason = refusal["reason"]
        return Check("recaptcha", "broken", f"the site refused the page's token recently ({reason})",
                     refusal["advice"], TOKEN_ADVICE_ZH.get(reason, TOKEN_ADVICE_ZH["unknown"]),
                     data={"reason": reason}, detail_zh=f"网站最近拒绝了页面的令牌（{reason}）")

    # ------------------------------------------------------------------ the pool and the strategy

    def _pool(self, asked: list[str]) -> list[Check]:
        services = self.services
        stats = services.pool.stats()
        names = asked or sorted(services.pool.targets()) or sorted(n for n, r in stats.items() if r["total"])
        if not names:
            return [Check("pool", "warning", "the pool has no conversations yet",
                          "run a prefill (the console asks at start-up, or POST /api/prefill), or send a request: "
                          "it creates the conversation it needs",
                          "请运行预创建（启动时控制台会询问，或调用 POST /api/prefill），"
                          "或直接发送请求：它会创建所需的会话", detail_zh="会话池里还没有会话")]
        return [self._pool_model(name, stats) for name in names]

    def _pool_model(self, name: str, stats: dict[str, dict[str, int]]) -> Check:
        model = self.services.models.resolve(name)
        if model is None:
            return Check(f"pool:{name}", "broken", f"there is no model called {name!r}",
                         "pick a name from GET /v1/models", "请从 GET /v1/models 中选择模型名",
                         detail_zh=f"没有名为 {name!r} 的模型")
        row = stats.get(model.name, {})
        ready, total = row.get("ready", 0), row.get("total", 0) - row.get("retired", 0)
        link = f"pool:{model.name}"
        if ready:
            return Check(link, "ok", f"{ready} conversation(s) ready", data=row, detail_zh=f"{ready} 个会话就绪")
        if total:
            return Check(link, "warning", f"{total} conversation(s), none ready now (busy or cooling down)",
                         "requests wait their turn; add conversations with a prefill if this lasts",
                         "请求会排队等待；如果持续如此，请用预创建增加会话", data=row,
                         detail_zh=f"共 {total} 个会话，目前都不可用（忙碌或冷却中）")
        if self.services.settings.fresh_when_empty and not model.virtual:
            return Check(link, "warning", "no conversation yet: the first request creates one (it takes longer)",
                         f"prefill it: POST /api/prefill {{\"models\": \"{model.name}\"}}",
                         f"可预创建：POST /api/prefill {{\"models\": \"{model.name}\"}}", data=row,
                         detail_zh="还没有会话：第一个请求会创建一个（耗时更长）")
        return Check(link, "broken", "no conversation, and none will be created for a request",
                     "chat with it once in the browser, or run a prefill", "请在浏览器中与它对话一次，或运行预创建",
                     data=row, detail_zh="没有会话，请求时也不会创建")

    def _strategy(self) -> Check:
        state = self.services.strategy
        canary = state.canary
        if canary is None:
            return Check("strategy", "warning", f"strategy {state.current}; the canary has not run yet (it runs once a "
                         "conversation exists)", "send one request or run POST /api/canary",
                         "发送一次请求，或调用 POST /api/canary",
                         detail_zh=f"策略 {state.current}；探测（canary）尚未运行（有会话后才会运行）")
        probes = {p["strategy"]: p for p in canary.get("probes", [])}
        if not canary.get("ok"):
            detail = "; ".join(f"{k}: {p['detail']}" for k, p in probes.items()) or canary.get("detail", "")
            return Check("strategy", "broken", f"no way of reaching the site passed the canary ({detail})",
                         "see the page and reCAPTCHA checks above; then run POST /api/canary again",
                         "请先看上面页面和 reCAPTCHA 的检查结果，然后再次调用 POST /api/canary", data=canary,
                         detail_zh=f"没有任何访问方式通过探测（{detail}）")
        chosen = canary.get("chosen")
        if state.mode != "auto" and state.mode != chosen:
            return Check("strategy", "broken", f"arena_strategy is pinned to {state.mode}, but the canary found "
                         f"{chosen} works", "set arena_strategy=auto", "请设置 arena_strategy=auto", data=canary,
                         detail_zh=f"arena_strategy 固定为 {state.mode}，但探测发现可用的是 {chosen}")
        note = note_zh = ""
        if "retry" in probes and not probes["retry"]["ok"]:
            note = ("; the site ignores a retry's messages (as arena.ai does since late 2025), so each client "
                    "conversation gets a site conversation of its own")
            note_zh = "；网站忽略重试请求中的消息（arena.ai 自 2025 年底如此），所以每个客户端会话都有自己的网站会话"
        return Check("strategy", "ok", f"strategy {state.current}, chosen by the canary{note}", data=canary,
                     detail_zh=f"策略 {state.current}，由探测选定{note_zh}")

    async def _probe(self, name: str | None) -> Check:
        """One real request, end to end (it spends a site answer)."""
        services = self.services
        model = services.models.resolve(name) if name else next(
            (services.models.resolve(n) for n, r in services.pool.stats().items() if r["ready"]), None)
        model = model or services.models.resolve("gemini-2.5-pro")
        if model is None:
            return Check("probe", "broken", "no model to send the probe to", "name one with --model",
                         "请用 --model 指定模型", detail_zh="没有可发送探测请求的模型")
        record = RequestRecord(model.name, False, canary=True)
        started = time.time()
        try:
            replay = await self.engine.start(model, [site.ChatTurn("user", "Reply with one word: ready")], record)
            answer = await self.engine.collect(replay)
        except RelayError as e:
            return Check("probe", "broken", f"the request failed before its answer: {e.message}", *PROBE_FIX,
                         detail_zh=f"请求在回答之前失败：{e.message}")
        if answer.failure is not None:
            return Check("probe", "broken", f"the answer failed: {answer.failure.message}", *PROBE_FIX,
                         detail_zh=f"回答失败：{answer.failure.message}")
        took = time.time() - started
        return Check("probe", "ok", f"{model.name} answered in {took:.1f} s", data={"model": model.name,
                     "chars": len(answer.text)}, detail_zh=f"{model.name} 在 {took:.1f} 秒内回答")
