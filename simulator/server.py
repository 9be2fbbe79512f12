"""An offline LMArena, faithful to what is known of the site's protocol and to the captured samples.

Run it alone:  python -m simulator --port 18080 [--generation retry-honoured|history-kept]

- `GET /`, `/c/<id>`: the page, with the model list in React flight data the way the site embeds it,
  a minimal chat interface whose own script calls the stream endpoints as the real client does,
  and a session cookie for an anonymous identity.
- `/recaptcha/enterprise.js`: a reCAPTCHA Enterprise stand-in minting single-use, action-bound tokens.
- The three stream endpoints under `/nextjs-api/stream/` and the older `/api/stream/`, with the real
  line format, chunk boundaries that split lines and UTF-8 characters, and the site's generations
  (`Generation`): one that honours the messages a retry carries, one that keeps history on the server.
- Answers are deterministic functions of what the simulator received, so a test can prove which
  conversation reached it. `/__sim/*` lets tests read what was received and change behaviour.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import html
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from simulator.answers import PNG_1X1, answer_for, answer_lines, interleave, split_chunks, uuid7_time, with_heartbeats
from sites import lmarena as site

RECAPTCHA_TTL = 120.0
# Server action ids change with every deployment of the site; these are the simulator's.
UPLOAD_ACTIONS = {
    "generateUploadUrl": "7f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c42",
    "getSignedUrl": "60b1c2d3e4f5061728394a5b6c7d8e9f0a1b2c3d07",
}
# A model only the (simulated) page lists, not the built-in table: shows that page models are merged.
PAGE_ONLY_MODEL = {
    "id": "019b5e00-0000-7000-8000-00000000beef",
    "publicName": "arena-sim-page-only",
    "organization": "simulator",
    "provider": "simulator",
    "capabilities": {"inputCapabilities": {"text": True}, "outputCapabilities": {"text": True}},
}
# The 2026 list: a second entry with a public name already taken, which a person cannot pick, and the
# router model, which picks a model for each prompt.
HIDDEN_TWIN_MODEL = {
    "id": "019b5e00-0000-7000-8000-0000000000aa",
    "publicName": "gemini-2.5-pro",
    "organization": "google",
    "userSelectable": False,
    "capabilities": {"inputCapabilities": {"text": True}, "outputCapabilities": {"text": True}},
}
ROUTER_MODEL = {
    "id": "019b5e00-0000-7000-8000-00000000a11a",
    "publicName": "Max",
    "displayName": "Max",
    "organization": "boss-bandit",
    "userSelectable": True,
    "capabilities": {"inputCapabilities": {"text": True, "image": True}, "outputCapabilities": {"text": True}},
}


def default_models() -> list[dict[str, Any]]:
    return site.builtin_models() + [PAGE_ONLY_MODEL, HIDDEN_TWIN_MODEL, ROUTER_MODEL]


class Generation(StrEnum):
    """The site as it was at one time."""

    # to early November 2025: bodies carry `messages[]`, and a retry's messages replace the history
    RETRY_HONOURED = "retry-honoured"
    # from November 2025: one `userMessage` per turn, token-only retries, the history kept on the server
    HISTORY_KEPT = "history-kept"
    # arena.ai in 2026: as history-kept, plus Direct mode sent as `direct-battle` (which the site may turn
    # into a battle turn), a login gate on Direct for guests, a new reCAPTCHA key, heartbeat lines,
    # token counts in the finish line, a Stop endpoint, ids checked against the clock; lmarena.ai 301s
    SITE_2026 = "2026"

    @property
    def retry_honours_messages(self) -> bool:
        return self == Generation.RETRY_HONOURED

    @property
    def body_format(self) -> site.BodyFormat:
        return site.BodyFormat.MESSAGES if self == Generation.RETRY_HONOURED else site.BodyFormat.USER_MESSAGE

    @property
    def direct_mode(self) -> str:
        """What the site's own client sends for a Direct chat."""
        return site.DIRECT_MODE_2026 if self == Generation.SITE_2026 else "direct"

    @property
    def since_2026(self) -> bool:
        return self == Generation.SITE_2026


@functools.cache
def template(name: str) -> str:
    return resources.files("simulator").joinpath(f"static/{name}").read_text("utf-8")


@dataclass
class SimConfig:
    generation: Generation = Generation.SITE_2026
    sitekey: str = site.RECAPTCHA_SITE_KEY  # the key the site's page mints its tokens with
    cadence_ms: float = 15.0  # pause between network chunks of an answer
    require_recaptcha: bool = True
    csp: str = "nonce"  # nonce | strict | none: the page's Content-Security-Policy
    cloudflare_seconds: float = 0  # > 0: browsers without cf_clearance get "Just a moment..." for this long
    v2_challenge: bool = False  # identities must tick a visible reCAPTCHA v2 box before chatting again
    anonymous_signin: bool = True  # False: a new browser has no session until it clicks "Sign in"
    arena_port: int | None = None  # the listener that stands for arena.ai (the main one is lmarena.ai)
    redirect_to_arena: bool | None = None  # lmarena.ai answers 301 to arena.ai (None: from 2026 on)
    redirect_streams_only: bool = False  # ... for stream calls only, while its pages still load
    clock_offset: float = 0.0  # seconds the site's clock is ahead of this machine's (the spoofed-id check)
    heartbeat_every: int = 8  # 2026: a heartbeat line first, then after every this many lines
    models: list[dict[str, Any]] = field(default_factory=default_models)

    @property
    def moved_to_arena(self) -> bool:
        return self.generation.since_2026 if self.redirect_to_arena is None else self.redirect_to_arena


@dataclass
class SimSession:
    id: str
    owner: str
    mode: str
    modality: str
    model_a: str | None
    model_b: str | None
    messages: list[dict[str, Any]] = field(default_factory=list)
    battle_turn: bool = False  # a direct-battle session the site turned into a battle, waiting for a vote


class Simulator:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.sessions: dict[str, SimSession] = {}
        self.tokens: dict[str, tuple[str, float, str]] = {}  # token -> (action, expiry, site key)
        self.log: list[dict[str, Any]] = []
        self.active_by_model: dict[str, int] = {}
        self.max_by_model: dict[str, int] = {}
        self.active_by_session: dict[str, int] = {}
        self.max_by_session: dict[str, int] = {}
        self.models_by_id = {m["id"]: m for m in self.config.models}
        self.faults: list[dict[str, Any]] = []  # one-shot injected failures
        self.uploads: dict[str, tuple[str, bytes] | None] = {}  # R2 stand-in: key -> (type, bytes)
        self.v2_solved: set[str] = set()
        self.page_loads = 0
        self.minted = 0
        self.spent = 0
        self.stops: list[dict[str, Any]] = []  # the Stop calls received
        self.stream_hits: list[dict[str, Any]] = []  # every stream call: host, method, path, answered with what
        # every answer sent whole: its session, chunks, and the time from its first chunk to its last (ms)
        self.deliveries: collections.deque[dict[str, Any]] = collections.deque(maxlen=1000)
        self._stopping: set[str] = set()  # sessions whose answer is to stop now

    # ------------------------------------------------------------------ app

    def app(self) -> Starlette:
        routes = [
            Route("/", self.page, methods=["GET", "POST"]),
            Route("/c/{sid}", self.page, methods=["GET", "POST"]),
            Route("/{modality:str}/direct", self.page, methods=["GET", "POST"]),  # /text/direct etc. (2026)
            Route("/_next/static/chunks/7551-sim.js", self.actions_chunk),
            Route("/__sim/r2/{key:path}", self.r2, methods=["GET", "PUT"]),
            Route("/recaptcha/enterprise.js", self.recaptcha_js),
            Route("/_next/static/chunks/sim-client.js", self.client_js),
            Route("/__sim/recaptcha", self.mint_token, methods=["POST"]),
            Route("/__sim/log", self.get_log),
            Route("/__sim/stats", self.get_stats),
            Route("/__sim/uploads", self.get_uploads),
            Route("/__sim/reset", self.reset, methods=["POST"]),
            Route("/__sim/config", self.set_config, methods=["POST"]),
            Route("/__sim/fault", self.add_fault, methods=["POST"]),
            Route("/__sim/image/{name}", self.image),
            Route("/__sim/cf-clear", self.cf_clear, methods=["POST"]),
            Route("/__sim/v2-solve", self.v2_solve, methods=["POST"]),
            Route("/__sim/sign-in", self.sign_in, methods=["POST"]),
            Route("/__sim/stops", self.get_stops),
            Route("/__sim/stream-hits", self.get_stream_hits),
            Route("/__sim/deliveries", self.get_deliveries),
            Route("/__sim/sessions/{sid}", self.get_session),
        ]
        for prefix in site.STREAM_PREFIXES:
            routes += [
                Route(prefix + "create-evaluation", self.create, methods=["POST"]),
                Route(prefix + "post-to-evaluation/{sid}", self.post, methods=["POST"]),
                Route(prefix + "retry-evaluation-session-message/{sid}/messages/{mid}", self.retry, methods=["PUT"]),
                Route(prefix + "stop/{sid}/messages/{mid}", self.stop, methods=["POST"]),
            ]
        return Starlette(routes=routes, middleware=[Middleware(_MoveToArena, sim=self)])

    # ------------------------------------------------------------------ page

    def _identity(self, request: Request) -> str | None:
        ident = site.identity_from_cookies(dict(request.cookies))
        return ident.split(":", 1)[1] if ident and ident.startswith("user:") else None

    def _is_guest(self, request: Request) -> bool:
        return site.session_info(dict(request.cookies))[1] is True

    async def page(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.server_action(request)
        self.page_loads += 1
        if self._needs_cloudflare(request):
            page = template("cloudflare.html").replace("SECONDS", str(self.config.cloudflare_seconds))
            return HTMLResponse(page, 403)
        user = self._identity(request)
        new_cookie = None
        if user is None and self.config.anonymous_signin:  # a guest session on the first visit
            user = str(uuid.uuid4())
            new_cookie = site.make_auth_cookie(user, anonymous=True)
        guest = new_cookie is not None or self._is_guest(request)
        nonce = secrets.token_urlsafe(12)
        response = Response(self._page_html(nonce, user, guest), media_type="text/html; charset=utf-8")
        if self.config.csp == "nonce":
            response.headers["content-security-policy"] = (
                f"default-src 'self'; script-src 'self' 'nonce-{nonce}' 'strict-dynamic'; "
                "connect-src 'self'; img-src 'self' data: https:; style-src 'self' 'unsafe-inline'"
            )
        elif self.config.csp == "strict":
            response.headers["content-security-policy"] = "default-src 'self'; script-src 'self'"
        if new_cookie:
            response.set_cookie(site.AUTH_COOKIE, new_cookie, path="/", httponly=True, samesite="lax")
        return response

    def _page_html(self, nonce: str, user: str | None, guest: bool) -> str:
        models = self.config.models
        flight = json.dumps(
            {"initialModels": models, "initialModelAId": models[0]["id"] if models else None,
             "initialModelBId": None},
            ensure_ascii=False,
        )
        options = "\n".join(
            f'<option value="{html.escape(m["id"])}" data-modality="{site.modality_of(m)}">'
            f"{html.escape(m['publicName'])}</option>"
            for m in models if site.modality_of(m) in ("chat", "search", "image") and site.user_selectable(m)
        )
        extras = ""
        if user is None or (guest and self.config.generation.since_2026):
            extras += '<button id="sign-in">Sign in</button>'  # 2026: a guest must sign in for Direct
        elif self.config.v2_challenge and user not in self.v2_solved:
            extras += ('<div id="recaptcha-v2-container" style="border:2px solid #c00;padding:1em">'
                       'Protected by reCAPTCHA <button id="v2-solve">I\'m not a robot</button></div>')
        generation = self.config.generation
        return template("page.html").format(
            extras=extras, nonce=nonce, flight=json.dumps("0:" + flight), options=options,
            body_format=generation.body_format, direct_mode=generation.direct_mode, sitekey=self.config.sitekey,
        )

    # ------------------------------------------------------------------ uploads (Next.js server actions)

    async def actions_chunk(self, request: Request) -> Response:
        """A front-end chunk declaring the server actions the way the site's minified code does."""
        text = "".join(
            f'let {name}=(0,a.createServerReference)("{action}",a.callServer,void 0,a.findSourceMapURL,"{name}");'
            for name, action in UPLOAD_ACTIONS.items()
        )
        return Response(text, media_type="application/javascript")

    async def server_action(self, request: Request) -> Response:
        user = self._identity(request)
        action = request.headers.get("next-action", "")
        try:
            args = json.loads(await request.body())
        except ValueError:
            args = None
        if user is None or not isinstance(args, list):
            return PlainTextResponse("Bad request", status_code=400)
        if action == UPLOAD_ACTIONS["generateUploadUrl"] and len(args) == 2:
            key = f"{user}/{int(time.time() * 1000)}-{args[0]}"
            self.uploads[key] = None
            data = {"uploadUrl": f"/__sim/r2/{key}?x-id=PutObject&X-Amz-Signature=sim", "key": key}
        elif action == UPLOAD_ACTIONS["getSignedUrl"] and len(args) == 1 and args[0] in self.uploads:
            data = {"url": f"{request.base_url}__sim/r2/{args[0]}?X-Amz-Expires=3600&X-Amz-Signature=sim"}
        else:
            return PlainTextResponse("Server action not found.", status_code=404)
        lines = '0:{"a":"$@1","f":"","b":"sim"}\n1:' + json.dumps({"success": True, "data": data}) + "\n"
        return Response(lines, media_type="text/x-component")

    async def r2(self, request: Request) -> Response:
        key = request.path_params["key"]
        if key not in self.uploads:
            return PlainTextResponse("NoSuchKey", status_code=404)
        if request.method == "PUT":
            self.uploads[key] = (request.headers.get("content-type", ""), await request.body())
            return Response(status_code=200)
        stored = self.uploads[key]
        if stored is None:
            return PlainTextResponse("NoSuchKey", status_code=404)
        return Response(stored[1], media_type=stored[0])

    async def recaptcha_js(self, request: Request) -> Response:
        return Response(template("recaptcha.js"), media_type="application/javascript")

    async def client_js(self, request: Request) -> Response:
        text = resources.files("simulator").joinpath("static/client.js").read_text("utf-8")
        return Response(text, media_type="application/javascript")

    async def mint_token(self, request: Request) -> Response:
        data = await request.json()
        token = "sim-" + secrets.token_urlsafe(24)
        self.minted += 1
        self.tokens[token] = (str(data.get("action", "")), time.time() + RECAPTCHA_TTL, str(data.get("sitekey", "")))
        return JSONResponse({"token": token})

    def _check_token(self, body: dict[str, Any], action: str) -> bool:
        """Single use, bound to its action, alive for two minutes, and minted with the site's current key
        (a token minted with another key is what Google scores as invalid)."""
        if not self.config.require_recaptcha:
            return True
        token = body.get("recaptchaV3Token")
        entry = self.tokens.pop(token, None) if isinstance(token, str) else None
        self.spent += entry is not None
        return bool(entry and entry[0] == action and entry[1] > time.time() and entry[2] == self.config.sitekey)

    # ------------------------------------------------------------------ test hooks

    # ------------------------------------------------------------------ checks and sign-in

    def _needs_cloudflare(self, request: Request) -> bool:
        return self.config.cloudflare_seconds > 0 and "cf_clearance" not in request.cookies

    async def cf_clear(self, request: Request) -> Response:
        response = JSONResponse({"ok": True})
        response.set_cookie("cf_clearance", secrets.token_urlsafe(16), path="/", httponly=True)
        return response

    async def v2_solve(self, request: Request) -> Response:
        user = self._identity(request)
        if user:
            self.v2_solved.add(user)
        return JSONResponse({"ok": bool(user)})

    async def sign_in(self, request: Request) -> Response:
        """A person signs in (or up): a session of a registered account."""
        response = JSONResponse({"ok": True})
        cookie = site.make_auth_cookie(str(uuid.uuid4()), anonymous=False)
        response.set_cookie(site.AUTH_COOKIE, cookie, path="/", httponly=True)
        return response

    async def get_stops(self, request: Request) -> Response:
        return JSONResponse(self.stops)

    async def get_stream_hits(self, request: Request) -> Response:
        return JSONResponse(self.stream_hits)

    async def get_deliveries(self, request: Request) -> Response:
        return JSONResponse(list(self.deliveries))

    async def get_session(self, request: Request) -> Response:
        """What the site holds of a conversation: its messages (role, content, side), in order."""
        session = self.sessions.get(request.path_params["sid"])
        if session is None:
            return JSONResponse({"error": "Evaluation session not found"}, status_code=404)
        return JSONResponse({"id": session.id, "mode": session.mode, "messages": [
            {"role": m["role"], "content": m.get("content"), "side": m.get("participantPosition") or "a"}
            for m in session.messages]})

    async def image(self, request: Request) -> Response:
        return Response(PNG_1X1, media_type="image/png")

    async def get_log(self, request: Request) -> Response:
        return JSONResponse(self.log)

    async def get_uploads(self, request: Request) -> Response:
        return JSONResponse({k: (v[0], len(v[1])) if v else None for k, v in self.uploads.items()})

    async def get_stats(self, request: Request) -> Response:
        return JSONResponse(
            {
                "max_by_model": self.max_by_model,
                "max_by_session": self.max_by_session,
                "active_by_model": self.active_by_model,
                "sessions": len(self.sessions),
                "page_loads": self.page_loads,
                "tokens_minted": self.minted,  # reCAPTCHA tokens minted, and spent on a stream call
                "tokens_spent": self.spent,
            }
        )

    async def reset(self, request: Request) -> Response:
        self.log.clear()
        self.max_by_model.clear()
        self.max_by_session.clear()
        return JSONResponse({"ok": True})

    async def set_config(self, request: Request) -> Response:
        data = await request.json()
        for key in ("cadence_ms", "require_recaptcha", "csp", "cloudflare_seconds", "v2_challenge",
                    "anonymous_signin", "redirect_to_arena", "redirect_streams_only", "sitekey", "clock_offset",
                    "heartbeat_every"):
            if key in data:
                setattr(self.config, key, data[key])
        if "generation" in data:
            self.config.generation = Generation(data["generation"])
        return JSONResponse({"ok": True})

    async def add_fault(self, request: Request) -> Response:
        """One-shot failure: {"session": sid|null, "status": 401|429|..., "body": "...", "headers": {}}
        or {"session": sid|null, "cut_after": N} to end a stream after N lines without a finish line."""
        self.faults.append(await request.json())
        return JSONResponse({"ok": True})

    def _take_fault(self, sid: str) -> dict[str, Any] | None:
        for fault in self.faults:
            if fault.get("session") in (None, sid):
                self.faults.remove(fault)
                return fault
        return None

    # ------------------------------------------------------------------ endpoints

    async def _read(self, request: Request) -> tuple[dict[str, Any] | None, Response | None]:
        raw = await request.body()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            return None, JSONResponse({"error": "Invalid JSON"}, status_code=400)
        if not isinstance(data, dict):
            return None, JSONResponse({"error": "Invalid body"}, status_code=400)
        entry = {
            "time": time.time(),
            "method": request.method,
            "path": request.url.path,
            "bytes": len(raw),
            "body": {k: ("REDACTED" if k in site.SECRET_FIELDS else v) for k, v in data.items()},
        }
        self.log.append(entry)
        return data, None

    def _auth(self, request: Request) -> tuple[str | None, Response | None]:
        if self._needs_cloudflare(request):
            return None, HTMLResponse(template("cloudflare.html").replace("SECONDS", "5"), 403)
        user = self._identity(request)
        if user is None:
            # 2026: a call without any session cookie fails inside the site ("typically HTTP 500")
            status = 500 if self.config.generation.since_2026 else 401
            return None, JSONResponse({"error": "Unauthorized"}, status_code=status)
        if self.config.v2_challenge and user not in self.v2_solved:
            return None, JSONResponse({"error": "recaptcha validation failed"}, status_code=403)
        return user, None

    def _gate(self, request: Request, mode: str) -> Response | None:
        """2026: Direct (and side-by-side) need a registered account; a guest may only battle."""
        if self.config.generation.since_2026 and mode != "battle" and self._is_guest(request):
            return JSONResponse({"error": "LOGIN_GATE", "message": "Sign in to use this mode"}, status_code=401)
        return None

    def _spoofed(self, data: dict[str, Any]) -> Response | None:
        """2026: ids are UUIDv7s whose time must be within an hour of the site's clock."""
        if not self.config.generation.since_2026:
            return None
        now = time.time() + self.config.clock_offset
        for key in ("id", "userMessageId", "modelAMessageId"):
            value = data.get(key)
            at = uuid7_time(value) if isinstance(value, str) else None
            if at is not None and abs(at - now) > 3600:
                return JSONResponse({"error": "Evaluation session ID seems spoofed, offset too big"}, 400)
        return None

    async def create(self, request: Request) -> Response:
        user, err = self._auth(request)
        if err:
            return err
        data, err = await self._read(request)
        if err or data is None:
            return err or Response(status_code=400)
        mode = str(data.get("mode", "direct"))
        err = self._gate(request, mode) or self._spoofed(data)
        if err:
            return err
        if not self._check_token(data, site.ACTION_SUBMIT):
            return JSONResponse({"error": "recaptcha validation failed"}, status_code=403)
        sid = data.get("id")
        if not isinstance(sid, str) or sid in self.sessions:
            return JSONResponse({"error": "Invalid or duplicate session id"}, status_code=400)
        model_a = data.get("modelAId")
        if mode != "battle" and model_a not in self.models_by_id:
            return JSONResponse({"error": "Model not found"}, status_code=404)
        fault = self._take_fault(sid)
        if fault and "status" in fault:
            return fault_response(fault)
        modality = data.get("modality", "chat")
        model_b = data.get("modelBId")
        if mode == "battle":  # the site picks two models and hides them until the vote
            model_a, model_b = self._battle_pair(sid, modality)
        session = SimSession(sid, user or "", mode, modality, model_a, model_b)
        self.sessions[sid] = session
        return self._new_turn(session, data, request, fault)

    def _battle_pair(self, sid: str, modality: str) -> tuple[str, str]:
        candidates = sorted(m["id"] for m in self.config.models if site.modality_of(m) == modality)
        seed = int(hashlib.sha256(sid.encode()).hexdigest(), 16)
        first = candidates[seed % len(candidates)]
        second = candidates[(seed // len(candidates) + 1 + candidates.index(first)) % len(candidates)]
        return first, second

    async def _existing(
        self, request: Request, action: str
    ) -> tuple[SimSession | None, dict[str, Any], Response | None]:
        """The session a post or retry names, after the checks the site makes, in its order."""
        user, err = self._auth(request)
        if err:
            return None, {}, err
        data, err = await self._read(request)
        if err or data is None:
            return None, {}, err or Response(status_code=400)
        sid = request.path_params["sid"]
        session = self.sessions.get(sid)
        if session is None:
            return None, data, JSONResponse({"error": "Evaluation session not found"}, status_code=404)
        if session.owner != user:
            return None, data, JSONResponse(
                {"error": f"User {user} does not have access to evaluation session {sid}"}, 401
            )
        err = self._gate(request, session.mode) or self._spoofed({k: v for k, v in data.items() if k != "id"})
        if err:
            return None, data, err
        if not self._check_token(data, action):
            return None, data, JSONResponse({"error": "recaptcha validation failed"}, status_code=403)
        return session, data, None

    async def post(self, request: Request) -> Response:
        session, data, err = await self._existing(request, site.ACTION_SUBMIT)
        if err or session is None:
            return err or Response(status_code=400)
        if session.battle_turn:  # a direct turn posted while the site waits for a battle vote
            return JSONResponse({"error": "Bad next turn request in Battles in Direct mode. DIRECT was requested, "
                                          "but expected a BATTLE turn"}, status_code=400)
        fault = self._take_fault(session.id)
        if fault and "status" in fault:
            return fault_response(fault)
        return self._new_turn(session, data, request, fault)

    def _new_turn(
        self, session: SimSession, data: dict[str, Any], request: Request, fault: dict[str, Any] | None
    ) -> Response:
        user_id = data.get("userMessageId") or str(uuid.uuid4())
        if isinstance(data.get("userMessage"), dict):
            content = data["userMessage"].get("content", "")
            parents = [m["id"] for m in session.messages[-2:] if m["role"] == "assistant"]
            session.messages.append(
                {"id": user_id, "role": "user", "content": content, "parentMessageIds": parents[-1:]}
            )
        elif isinstance(data.get("messages"), list):
            # The whole chain: keep everything but the pending placeholders.
            session.messages = [
                {k: m.get(k) for k in ("id", "role", "content", "parentMessageIds", "participantPosition")}
                for m in data["messages"]
                if not (m.get("role") == "assistant" and m.get("status") == "pending")
            ]
        else:
            return JSONResponse({"error": "Invalid body"}, status_code=400)
        sides = {"a": data.get("modelAMessageId")}
        if session.mode not in site.DIRECT_MODES and data.get("modelBMessageId"):
            sides["b"] = data["modelBMessageId"]
        if fault and fault.get("battle_turn") and session.mode == site.DIRECT_MODE_2026:
            # the site turns this direct chat into a battle turn: two hidden models answer
            session.battle_turn = True
            session.model_a, session.model_b = self._battle_pair(session.id, session.modality)
            sides["b"] = data.get("modelBMessageId") or str(uuid.uuid4())
        return self._answer(session, sides, request, fault)

    async def retry(self, request: Request) -> Response:
        session, data, err = await self._existing(request, site.ACTION_RETRY)
        if err or session is None:
            return err or Response(status_code=400)
        mid = request.path_params["mid"]
        target = next((m for m in session.messages if m["id"] == mid and m["role"] == "assistant"), None)
        if target is None:
            return JSONResponse({"error": "Model message not found"}, status_code=404)
        if target.get("feedback"):
            return JSONResponse({"error": "Message already has feedback, cannot retry"}, status_code=400)
        fault = self._take_fault(session.id)
        if fault and "status" in fault:
            return fault_response(fault)  # the site changes nothing when it refuses
        side = target.get("participantPosition") or "a"
        if self.config.generation.retry_honours_messages and isinstance(data.get("messages"), list):
            # Honour the client's chain: it replaces the history before the retried message.
            chain = [
                {k: m.get(k) for k in ("id", "role", "content", "parentMessageIds", "participantPosition")}
                for m in data["messages"]
                if isinstance(m, dict)
            ]
            session.messages = chain + [target]
        else:
            # Server-side history: everything before the retried message stays as it was.
            index = session.messages.index(target)
            session.messages = session.messages[: index + 1]
        session.messages.remove(target)
        return self._answer(session, {side: mid}, request, fault)

    async def stop(self, request: Request) -> Response:
        """The Stop button: the answer being generated in the session ends now."""
        user = self._identity(request)
        sid, mid = request.path_params["sid"], request.path_params["mid"]
        session = self.sessions.get(sid)
        if session is None or session.owner != user:
            return JSONResponse({"error": "Evaluation session not found"}, status_code=404)
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        self.stops.append({"session": sid, "message": mid, "body": body, "time": time.time()})
        self._stopping.add(sid)
        return JSONResponse({"success": True})

    # ------------------------------------------------------------------ answers

    def _answer(
        self,
        session: SimSession,
        sides: dict[str, str | None],
        request: Request,
        fault: dict[str, Any] | None,
    ) -> Response:
        history = [(m["role"], m.get("content") or "") for m in session.messages]
        lines: list[str] = []
        for side, mid in sides.items():
            model_id = session.model_a if side == "a" else session.model_b
            name = self.models_by_id.get(model_id or "", {}).get("publicName", "hidden-model")
            reasoning, text, image = answer_for(name, session.modality, history, str(request.base_url) + "__sim/image/")
            session.messages.append({"id": mid, "role": "assistant", "content": text, "participantPosition": side,
                                     "parentMessageIds": [session.messages[-1]["id"]] if session.messages else []})
            usage = {"promptTokens": sum(len(c) for _, c in history) // 4, "completionTokens": len(text) // 4}
            part = answer_lines(side, session.modality, reasoning, text, image,
                                usage if self.config.generation.since_2026 else None)
            if lines:
                interleave(lines, part)
            else:
                lines.extend(part)
        lines = self._shaped(lines, fault)
        return StreamingResponse(
            self._emit(lines, session.model_a or "battle", session.id,
                       broken=bool(fault and "cut_after" in fault)),
            media_type="text/event-stream",
            headers=self._answer_headers(request),
        )

    def _shaped(self, lines: list[str], fault: dict[str, Any] | None) -> list[str]:
        """The answer's lines as this generation sends them, with any injected fault applied."""
        if self.config.generation.since_2026 and self.config.heartbeat_every > 0:
            lines = with_heartbeats(lines, self.config.heartbeat_every)
        if fault and "replace_lines" in fault:
            lines = list(fault["replace_lines"])
        if fault and "insert" in fault:
            at = int(fault["insert"].get("at", 0))
            lines = lines[:at] + list(fault["insert"]["lines"]) + lines[at:]
        if fault and "cut_after" in fault:
            lines = lines[: int(fault["cut_after"])]
        return lines

    def _answer_headers(self, request: Request) -> dict[str, str]:
        if self.config.generation.since_2026:
            limits = {"ratelimit": "limit=1800, remaining=1790, reset=300", "ratelimit-policy": "1800;w=300"}
        else:
            limits = {"ratelimit": "limit=3000, remaining=2990, reset=60", "ratelimit-policy": "3000;w=300"}
        return {"cache-control": "no-cache", "access-control-allow-origin": "*", "x-matched-path": request.url.path,
                **limits}

    async def _emit(self, lines: list[str], model_key: str, sid: str, broken: bool) -> AsyncIterator[bytes]:
        self.active_by_model[model_key] = self.active_by_model.get(model_key, 0) + 1
        self.max_by_model[model_key] = max(self.max_by_model.get(model_key, 0), self.active_by_model[model_key])
        self.active_by_session[sid] = self.active_by_session.get(sid, 0) + 1
        self.max_by_session[sid] = max(self.max_by_session.get(sid, 0), self.active_by_session[sid])
        self._stopping.discard(sid)
        try:
            chunks = split_chunks(lines)
            started = time.perf_counter()
            for index, chunk in enumerate(chunks):
                if sid in self._stopping:
                    return  # stopped: the site ends the answer where it is
                yield chunk  # resumed once the server has handed the chunk to the connection
                if index == len(chunks) - 1:
                    self.deliveries.append({"session": sid, "chunks": len(chunks),
                                            "ms": (time.perf_counter() - started) * 1000})
                await asyncio.sleep(self.config.cadence_ms / 1000)
            if broken:
                raise ConnectionResetError("simulated stream cut")
        finally:
            self.active_by_model[model_key] -= 1
            self.active_by_session[sid] -= 1


class _MoveToArena:
    """What reaches the lmarena.ai listener goes to arena.ai with a 301, once the move is on (only the
    stream calls with `redirect_streams_only`). A plain ASGI middleware, so answers still stream untouched."""

    def __init__(self, app: Any, sim: Simulator) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self.sim.config
        path = scope.get("path", "")
        server = scope.get("server") or ("", 0)
        host = "arena.ai" if config.arena_port and server[1] == config.arena_port else "lmarena.ai"
        hit = {"host": host, "method": scope.get("method"), "path": path, "answer": "handled"}
        if "/stream/" in path:
            self.sim.stream_hits.append(hit)
        if config.arena_port and (config.moved_to_arena or config.redirect_streams_only):
            streams_only = config.redirect_streams_only and not config.moved_to_arena
            moved = not path.startswith("/__sim/") and (not streams_only or "/stream/" in path)
            if host == "lmarena.ai" and moved:
                hit["answer"] = "301"
                query = scope.get("query_string", b"").decode()
                location = f"https://arena.ai{path}" + (f"?{query}" if query else "")
                await Response(status_code=301, headers={"location": location})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def fault_response(fault: dict[str, Any]) -> Response:
    return Response(
        fault.get("body", ""),
        status_code=int(fault["status"]),
        headers=fault.get("headers") or {},
        media_type=fault.get("media_type", "application/json"),
    )







