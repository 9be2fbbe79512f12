"""Everything that is specific to LMArena (lmarena.ai / arena.ai).

Hosts, stream paths, request bodies in every format the site used, the line format of answers,
the model list embedded in pages, the browser identity in the session cookie, and the
retry body the tool writes. A second site would get a module of its own beside this one.

Pure functions and small classes only: no mitmproxy, no FastAPI, no I/O.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any, Iterable, Literal
from urllib.parse import unquote

DEFAULT_HOSTS = ("lmarena.ai", "www.lmarena.ai", "arena.ai", "www.arena.ai")
STREAM_PREFIXES = ("/nextjs-api/stream/", "/api/stream/")
RECAPTCHA_SITE_KEY = "6Led_uYrAAAAAKjxDIF58fgFtX3t8loNAK85bW9I"
ACTION_SUBMIT = "chat_submit"  # create-evaluation and post-to-evaluation
ACTION_RETRY = "chat_retry"
AUTH_COOKIE = "arena-auth-prod-v1"
# Request fields that must never be stored or logged.
SECRET_FIELDS = ("recaptchaV3Token", "recaptchaV2Token")

# The site's three stream endpoints: a new conversation, a new turn of one, a retry of its last answer.
CallKind = Literal["create", "post", "retry"]
# A participant position: "a" answers in direct mode; battle and side-by-side add "b".
Side = Literal["a", "b"]


class BodyFormat(StrEnum):
    """How the site's client writes a create / post body (and a retry's, which may carry nothing).

    MESSAGES: the whole conversation as `messages[]` (the site until early November 2025);
    USER_MESSAGE: one `userMessage`, the server keeps the history (from 7 November 2025);
    TOKEN_ONLY: a retry body with a reCAPTCHA token and nothing else (December 2025 on).
    """

    MESSAGES = "messages"
    USER_MESSAGE = "user_message"
    TOKEN_ONLY = "token_only"


_UUID = r"[0-9a-fA-F-]{36}"
_CALL_RE = re.compile(
    r"^(?P<prefix>/nextjs-api/stream/|/api/stream/)"
    r"(?:(?P<create>create-evaluation)"
    rf"|post-to-evaluation/(?P<post_sid>{_UUID})"
    rf"|retry-evaluation-session-message/(?P<retry_sid>{_UUID})/messages/(?P<retry_mid>{_UUID}))"
    r"/?(?:\?.*)?$"
)


# --------------------------------------------------------------------------- ids


def uuid7() -> str:
    """A UUIDv7 (millisecond time prefix), as the site's own client generates them."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return str(uuid.UUID(int=value))


# --------------------------------------------------------------------------- calls


@dataclass(frozen=True)
class StreamCall:
    """One of the three stream endpoints, recognised from method and path."""

    kind: CallKind
    prefix: str
    session_id: str | None = None  # from the URL (post, retry)
    message_id: str | None = None  # assistant message being retried


def classify_call(method: str, path: str, prefixes: Iterable[str] = STREAM_PREFIXES) -> StreamCall | None:
    m = _CALL_RE.match(path)
    if not m or m.group("prefix") not in tuple(prefixes):
        return None
    prefix = m.group("prefix")
    if m.group("create") and method == "POST":
        return StreamCall("create", prefix)
    if m.group("post_sid") and method == "POST":
        return StreamCall("post", prefix, session_id=m.group("post_sid").lower())
    if m.group("retry_sid") and method == "PUT":
        return StreamCall(
            "retry", prefix, session_id=m.group("retry_sid").lower(), message_id=m.group("retry_mid").lower()
        )
    return None


def retry_path(prefix: str, session_id: str, message_id: str) -> str:
    return f"{prefix}retry-evaluation-session-message/{session_id}/messages/{message_id}"


def create_path(prefix: str) -> str:
    return f"{prefix}create-evaluation"


def post_path(prefix: str, session_id: str) -> str:
    return f"{prefix}post-to-evaluation/{session_id}"


@dataclass(frozen=True)
class RecaptchaActions:
    """The reCAPTCHA action the site's client mints its token with, per endpoint."""

    submit: str = ACTION_SUBMIT  # create and post
    retry: str = ACTION_RETRY


@dataclass(frozen=True)
class PageRequest:
    """What the page sends for a job: the method, the path, and the action of its fresh token."""

    method: str
    path: str
    action: str


def page_request(
    call: CallKind,
    prefix: str,
    session_id: str | None = None,
    message_id: str | None = None,
    actions: RecaptchaActions = RecaptchaActions(),
) -> PageRequest:
    """The request the page makes for one call, as the site's own client makes it."""
    if call == "create":
        return PageRequest("POST", create_path(prefix), actions.submit)
    if session_id is None:
        raise ValueError(f"a {call} needs a session id")
    if call == "post":
        return PageRequest("POST", post_path(prefix, session_id), actions.submit)
    if message_id is None:
        raise ValueError("a retry needs the assistant message id")
    return PageRequest("PUT", retry_path(prefix, session_id, message_id), actions.retry)


@dataclass
class Turn:
    """What a create / post / retry request tells about a conversation. Never holds tokens."""

    kind: CallKind
    session_id: str
    body_format: BodyFormat
    mode: str = "direct"
    modality: str = "chat"
    model_a_id: str | None = None
    model_b_id: str | None = None
    user_message_id: str | None = None
    # assistant message ids by side
    message_ids: dict[str, str] = field(default_factory=dict)


class BodyError(ValueError):
    """A stream request body that does not parse as the site's format."""


def parse_request(call: StreamCall, body: bytes) -> Turn:
    """Parse a create / post / retry body in any of the site's body formats."""
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BodyError(f"body is not JSON: {e}") from e
    if not isinstance(data, dict):
        raise BodyError("body is not a JSON object")

    if call.kind == "retry":
        assert call.session_id and call.message_id
        messages = data.get("messages")
        turn = Turn(
            kind="retry",
            session_id=call.session_id,
            body_format=BodyFormat.MESSAGES if isinstance(messages, list) else BodyFormat.TOKEN_ONLY,
            model_a_id=data.get("modelId") if isinstance(data.get("modelId"), str) else None,
            message_ids={},
        )
        side = "a"
        if isinstance(messages, list):
            for msg in messages:
                if isinstance(msg, dict) and msg.get("id") == call.message_id:
                    side = msg.get("participantPosition") or "a"
        turn.message_ids[side] = call.message_id
        return turn

    session_id = data.get("id") if call.kind == "create" else call.session_id
    if not isinstance(session_id, str):
        raise BodyError("no session id")
    body_format = BodyFormat.USER_MESSAGE if isinstance(data.get("userMessage"), dict) else BodyFormat.MESSAGES
    if body_format == BodyFormat.MESSAGES and not isinstance(data.get("messages"), list):
        raise BodyError("neither userMessage nor messages[]")
    turn = Turn(
        kind=call.kind,
        session_id=session_id.lower(),
        body_format=body_format,
        mode=str(data.get("mode") or "direct"),
        modality=str(data.get("modality") or "chat"),
        model_a_id=data.get("modelAId"),
        model_b_id=data.get("modelBId"),
        user_message_id=data.get("userMessageId"),
    )
    if data.get("modelAMessageId"):
        turn.message_ids["a"] = str(data["modelAMessageId"]).lower()
    if data.get("modelBMessageId"):
        turn.message_ids["b"] = str(data["modelBMessageId"]).lower()
    if turn.mode == "direct" and call.kind == "post" and "mode" not in data and turn.model_b_id:
        turn.mode = "side-by-side"
    if data.get("mode") == "direct":
        turn.message_ids.pop("b", None)  # tolerated in direct mode, never answered
    return turn


# --------------------------------------------------------------------------- stream


@dataclass(frozen=True)
class StreamEvent:
    """One line of an answer, decoded.

    kind: text | reasoning | image | citation | finish | error | other
    """

    kind: str
    side: str = "a"
    text: str = ""
    data: Any = None


def parse_line(line: str) -> StreamEvent | None:
    """`<side><code>:<json>` → event: the AI SDK's data-stream part codes behind a side letter
    (`a0:"text"`, `ag:` reasoning, `a2:` data such as images, `ac:` citations, `a3:` an error,
    `ad:` the finish). Blank lines give None."""
    line = line.rstrip("\r")
    if not line.strip():
        return None
    if len(line) < 3 or line[2] != ":" or line[0] not in "ab":
        return StreamEvent("other", text=line)
    pos, code, raw = line[0], line[1], line[3:]
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        return StreamEvent("other", pos, text=line)
    if code == "0":
        if payload == "hasArenaError":
            return StreamEvent("error", pos, text="the site reported an arena error")
        return StreamEvent("text", pos, text=payload if isinstance(payload, str) else str(payload))
    if code == "g":
        return StreamEvent("reasoning", pos, text=payload if isinstance(payload, str) else str(payload))
    if code == "2" and isinstance(payload, list):
        for item in payload:
            if isinstance(item, dict) and item.get("type") in ("image", "video"):
                url = item.get("image") or item.get("url") or ""
                return StreamEvent("image", pos, text=url, data=item)
        return StreamEvent("other", pos, data=payload)
    if code == "c" and isinstance(payload, dict):
        if payload.get("toolCallId") == "citation-source":
            try:
                args = json.loads(payload.get("argsTextDelta") or "{}")
            except json.JSONDecodeError:
                args = {}
            return StreamEvent("citation", pos, data=args.get("source"))
        return StreamEvent("other", pos, data=payload)
    if code == "3":
        return StreamEvent("error", pos, text=payload if isinstance(payload, str) else json.dumps(payload))
    if code in ("d", "e") and isinstance(payload, dict):
        reason = str(payload.get("finishReason") or "stop")
        if code == "e":
            return StreamEvent("other", pos, data=payload)
        if reason == "error":
            return StreamEvent("error", pos, text="the model's answer failed", data=payload)
        return StreamEvent("finish", pos, text=reason, data=payload)
    return StreamEvent("other", pos, data=payload)


class StreamParser:
    """Incremental parser: feed body chunks split anywhere (even inside a line or a UTF-8
    character), get whole events. Splitting on the newline byte never cuts a UTF-8 sequence."""

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        data = self._tail + chunk
        *lines, self._tail = data.split(b"\n")
        return [ev for ev in (parse_line(raw.decode("utf-8", "replace")) for raw in lines) if ev]

    def close(self) -> list[StreamEvent]:
        tail, self._tail = self._tail, b""
        ev = parse_line(tail.decode("utf-8", "replace")) if tail else None
        return [ev] if ev else []


def parse_stream(body: bytes) -> list[StreamEvent]:
    p = StreamParser()
    return p.feed(body) + p.close()


FINISH_REASONS = {"stop": "stop", "length": "length", "content-filter": "content_filter", "unknown": "stop"}


def openai_finish_reason(site_reason: str) -> str:
    return FINISH_REASONS.get(site_reason, "stop")


# --------------------------------------------------------------------------- failures


class FailureKind(StrEnum):
    """What went wrong at the site, as far as its answer tells."""

    CHALLENGE = "challenge"  # Cloudflare wants a human check
    FOREIGN_SESSION = "foreign_session"  # 401: the conversation belongs to another identity
    HAS_FEEDBACK = "has_feedback"  # 400: a voted message cannot be retried
    RECAPTCHA = "recaptcha"  # 403: the token was refused
    RATE_LIMITED = "rate_limited"  # 429
    NOT_FOUND = "not_found"  # 404: no such conversation or model
    CONTENT_FILTER = "content_filter"  # 422: moderation
    UPSTREAM_ERROR = "upstream_error"  # any other status
    STREAM_ERROR = "stream_error"  # an error line inside the answer
    TRUNCATED = "truncated"  # the answer stopped before its finish line
    EMPTY = "empty"  # an answer with nothing in it
    ABORTED = "aborted"  # the connection ended


@dataclass(frozen=True)
class Failure:
    """What an upstream error means for the conversation and for the client."""

    status: int
    message: str
    conversation: Literal["keep", "retire", "cool"]
    retry_after: float | None = None
    kind: FailureKind = FailureKind.UPSTREAM_ERROR


def classify_failure(status: int, body: str, headers: dict[str, str] | None = None) -> Failure:
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    text = body.strip()
    try:
        parsed = json.loads(text)
        message = str(parsed.get("error", text)) if isinstance(parsed, dict) else text
    except (ValueError, AttributeError):
        message = text
    lowered = message.lower()
    if "just a moment" in lowered or "_cf_chl_opt" in lowered or "cf-chl" in lowered:
        return Failure(status, "Cloudflare challenge: the page needs a human check", "keep", 30, FailureKind.CHALLENGE)
    if status == 401:
        return Failure(status, message[:300], "retire", None, FailureKind.FOREIGN_SESSION)
    if status == 400 and "already has feedback" in lowered:
        return Failure(status, message[:300], "retire", None, FailureKind.HAS_FEEDBACK)
    if status == 403 and "recaptcha" in lowered:
        return Failure(status, message[:300], "keep", None, FailureKind.RECAPTCHA)
    if status == 429:
        wait = rate_limit_wait(headers)
        return Failure(status, message[:300] or "rate limited", "cool", wait, FailureKind.RATE_LIMITED)
    if status == 404:
        return Failure(status, message[:300], "retire", None, FailureKind.NOT_FOUND)
    if status == 422:
        return Failure(status, message[:300], "keep", None, FailureKind.CONTENT_FILTER)
    return Failure(status, message[:300] or f"upstream status {status}", "keep", None)


def answer_failure(seen_error: str | None, finished: bool, had_content: bool) -> Failure | None:
    """What a 200 answer that ended amounts to: None when it was a good answer."""
    if seen_error:
        return Failure(502, f"the answer failed: {seen_error}", "keep", kind=FailureKind.STREAM_ERROR)
    if not finished:
        return Failure(502, "the answer stopped before its last line", "keep", kind=FailureKind.TRUNCATED)
    if not had_content:
        return Failure(502, "the answer was empty", "keep", kind=FailureKind.EMPTY)
    return None


def rate_limit_wait(headers: dict[str, str], now: float | None = None) -> float:
    """Seconds to wait after a 429, from `retry-after`, `ratelimit: ... reset=N` or `ratelimit-reset`."""
    now = time.time() if now is None else now
    waits: list[float] = []
    ra = headers.get("retry-after")
    if ra and ra.strip().isdigit() and int(ra) > 0:
        waits.append(float(ra))
    m = re.search(r"reset=(\d+)", headers.get("ratelimit", ""))
    if m and int(m.group(1)) > 0:
        waits.append(float(m.group(1)))
    reset = headers.get("ratelimit-reset", "")
    if reset.isdigit() and int(reset) > 0:
        value = float(reset)
        waits.append(value - now if value > 1e9 else value)
    waits = [w for w in waits if w > 0]
    return max(1.0, min(waits)) if waits else 60.0


# --------------------------------------------------------------------------- identity


def identity_from_cookies(cookies: dict[str, str]) -> str | None:
    """The browser identity a request belongs to: the user id in the session cookie.

    The cookie value itself is a credential and is never returned, stored or logged; when the
    user id cannot be read, a short one-way hash of the value stands in for it.
    """
    value = cookies.get(AUTH_COOKIE)
    if value is None:
        parts = [cookies[k] for k in sorted(cookies) if re.fullmatch(re.escape(AUTH_COOKIE) + r"\.\d+", k)]
        value = "".join(parts) if parts else None
    if not value:
        provisional = cookies.get("provisional_user_id")
        return f"provisional:{provisional}" if provisional else None
    value = unquote(value)
    raw = value[len("base64-") :] if value.startswith("base64-") else value
    try:
        decoded = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_"))
        user_id = decoded.get("user", {}).get("id")
        if isinstance(user_id, str) and user_id:
            return f"user:{user_id}"
    except (ValueError, AttributeError, TypeError):
        pass
    return "cookie:" + hashlib.sha256(value.encode()).hexdigest()[:16]


def make_auth_cookie(user_id: str, anonymous: bool = True) -> str:
    """A session cookie value of the site's shape (used by the simulator)."""
    session = {
        "access_token": "sim." + hashlib.sha256(user_id.encode()).hexdigest()[:32],
        "token_type": "bearer",
        "expires_in": 3600,
        "expires_at": int(time.time()) + 3600,
        "refresh_token": "simrefresh",
        "user": {"id": user_id, "is_anonymous": anonymous},
    }
    return "base64-" + base64.b64encode(json.dumps(session).encode()).decode()


# --------------------------------------------------------------------------- models


def builtin_models() -> list[dict[str, Any]]:
    text = resources.files("sites").joinpath("lmarena_models.json").read_text("utf-8")
    data = json.loads(text)
    return [m for m in data if isinstance(m, dict) and m.get("id") and m.get("publicName")]


_FLIGHT_PUSH_RE = re.compile(r'self\.__next_f\.push\(\[\s*1\s*,\s*("(?:[^"\\]|\\.)*")\s*\]\)', re.S)
_INITIAL_MODELS_KEY = '"initialModels":'


def extract_models(html: str) -> list[dict[str, Any]]:
    """Models embedded in a page: the `initialModels` array inside the React flight data
    (`self.__next_f.push([1,"..."])`), or left unescaped in the HTML."""
    texts = [html]
    for m in _FLIGHT_PUSH_RE.finditer(html):
        try:
            texts.append(json.loads(m.group(1)))
        except json.JSONDecodeError:
            continue
    decoder = json.JSONDecoder()
    found: dict[str, dict[str, Any]] = {}
    for text in texts:
        start = 0
        while (at := text.find(_INITIAL_MODELS_KEY, start)) >= 0:
            start = at + len(_INITIAL_MODELS_KEY)
            while start < len(text) and text[start] in " \t\r\n":
                start += 1
            try:
                models, _ = decoder.raw_decode(text, start)
            except json.JSONDecodeError:
                continue
            if isinstance(models, list):
                for model in models:
                    if isinstance(model, dict) and model.get("id") and model.get("publicName"):
                        found.setdefault(model["id"], model)
    return list(found.values())


def capabilities(model: dict[str, Any]) -> dict[str, bool]:
    caps = model.get("capabilities") or {}
    inp = caps.get("inputCapabilities") or {}
    out = caps.get("outputCapabilities") or {}
    return {
        "text": bool(out.get("text")) or not (out.get("image") or out.get("video") or out.get("search")),
        "image_input": bool(inp.get("image")),
        "image_output": bool(out.get("image")),
        "search": bool(out.get("search")),
        "video": bool(out.get("video")),
        "web": bool(out.get("web")),
    }


def modality_of(model: dict[str, Any]) -> str:
    caps = capabilities(model)
    if caps["image_output"]:
        return "image"
    if caps["video"]:
        return "video"
    if caps["search"]:
        return "search"
    return "chat"


# --------------------------------------------------------------------------- rewriting


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


@dataclass
class ChatTurn:
    """A client message, reduced to what the site takes."""

    role: str  # system | user | assistant
    content: str
    attachments: list[dict[str, str]] = field(default_factory=list)


def build_message_chain(
    turns: list[ChatTurn],
    session_id: str,
    mode: str = "direct",
    side: str = "a",
    all_success: bool = False,
) -> list[dict[str, Any]]:
    """The client's conversation as the site's parent-linked message list (LMArenaBridge's way).

    In direct mode system messages take side "b" and the rest "a" (what LMArenaBridge sent
    while the site honoured rewritten retries); in battle mode every message takes the retried side.
    The last message is `pending`, the others `success`. No assistant placeholder is appended:
    the retried message is the placeholder.
    """
    now = time.time()
    chain: list[dict[str, Any]] = []
    parent: str | None = None
    for index, turn in enumerate(turns):
        msg_id = uuid7()
        last = index == len(turns) - 1
        if mode == "direct":
            pos = "b" if turn.role == "system" else "a"
        else:
            pos = side
        chain.append(
            {
                "role": turn.role,
                "content": turn.content,
                "id": msg_id,
                "evaluationId": None,
                "evaluationSessionId": session_id,
                "parentMessageIds": [parent] if parent else [],
                "experimental_attachments": list(turn.attachments),
                "failureReason": None,
                "metadata": None,
                "participantPosition": pos,
                "createdAt": _iso(now),
                "updatedAt": _iso(now),
                "status": "success" if (all_success or not last) else "pending",
            }
        )
        parent = msg_id
    return chain


UPLOAD_FIELD = "__bridgeUploads"  # where the page puts what it uploaded; removed before sending


def inline_files(turns: list[ChatTurn]) -> list[dict[str, str]]:
    """The data: URL attachments, in a fixed order (their index is their upload reference)."""
    return [a for t in turns for a in t.attachments if a.get("url", "").startswith("data:")]


def with_uploaded(turns: list[ChatTurn], uploaded: dict[str, dict[str, str]]) -> list[ChatTurn]:
    """The turns with each inline file replaced by what the site's upload flow returned for it
    ({name: storage key, contentType, url: signed GET URL})."""
    refs = {id(a): str(i) for i, a in enumerate(inline_files(turns))}
    out = []
    for turn in turns:
        attachments = [uploaded.get(refs.get(id(a), ""), a) for a in turn.attachments]
        out.append(ChatTurn(turn.role, turn.content, attachments))
    return out


def upload_payload(turns: list[ChatTurn]) -> list[dict[str, str]]:
    """The inline files a page uploads through the site's own flow, each under its reference."""
    return [
        {"ref": str(i), "name": f["name"], "contentType": f["contentType"],
         "data": f["url"].split(",", 1)[1] if ";base64," in f["url"] else ""}
        for i, f in enumerate(inline_files(turns))
    ]


def flatten_turns(turns: list[ChatTurn]) -> str:
    """A whole conversation as one message, for a server that keeps history itself and takes
    a single new user message per turn."""
    if len(turns) == 1 and turns[0].role == "user":
        return turns[0].content
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    return "\n\n".join(f"{names.get(t.role, t.role)}: {t.content}" for t in turns)


def build_create_body(
    body_format: BodyFormat,
    session_id: str,
    model_id: str,
    modality: str,
    turns: list[ChatTurn],
    call: CallKind = "create",
) -> tuple[dict[str, Any], str, str]:
    """A create-evaluation (or post-to-evaluation) body, direct mode, carrying the client's conversation.

    MESSAGES sends the parent-linked chain plus the assistant placeholder; USER_MESSAGE sends one
    `userMessage` (the conversation flattened when it has more than one turn), and its posts carry
    no `mode`, as the site's own client sends them.
    Returns (body without token, user message id, assistant message id).
    """
    body: dict[str, Any] = {"id": session_id, "mode": "direct", "modelAId": model_id, "modality": modality}
    if call == "post" and body_format != BodyFormat.MESSAGES:
        del body["mode"]
    assistant_id = uuid7()
    if body_format == BodyFormat.MESSAGES:
        chain = build_message_chain(turns, session_id)
        for msg in chain:
            msg["modelId"] = None
        user_id = chain[-1]["id"]
        chain.append(
            {
                "id": assistant_id,
                "role": "assistant",
                "content": "",
                "reasoning": "",
                "experimental_attachments": [],
                "parentMessageIds": [user_id],
                "participantPosition": "a",
                "modelId": model_id,
                "evaluationSessionId": session_id,
                "status": "pending",
                "failureReason": None,
            }
        )
        body["messages"] = chain
    else:
        user_id = uuid7()
        attachments = [a for t in turns for a in t.attachments]
        body["userMessage"] = {"content": flatten_turns(turns), "experimental_attachments": attachments}
    body["userMessageId"] = user_id
    body["modelAMessageId"] = assistant_id
    if modality == "image":
        body["featureFlags"] = {"editImageButtonEnabled": "treatment-1"}
    return body, user_id, assistant_id


def rewrite_retry_body(
    original: bytes,
    turns: list[ChatTurn],
    session_id: str,
    model_id: str | None,
    mode: str = "direct",
    side: str = "a",
    modality: str = "chat",
) -> bytes:
    """The retry body the page sent (a token, maybe more), with the client's conversation written in.

    Keeps the page's fresh reCAPTCHA token and any other field the page set; replaces `messages`
    and `modelId` (null for battle conversations, whose model is hidden).
    """
    try:
        data = json.loads(original) if original.strip() else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    data["messages"] = build_message_chain(
        turns, session_id, mode=mode, side=side, all_success=modality == "image"
    )
    data["modelId"] = model_id if mode == "direct" else None
    return json.dumps(data, ensure_ascii=False).encode("utf-8")
