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
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from typing import Any, Iterable, Literal
from urllib.parse import unquote

# arena.ai is the site's home since 2026; lmarena.ai answers with a 301 to it.
CANONICAL_HOST = "arena.ai"
DEFAULT_HOSTS = ("arena.ai", "www.arena.ai", "lmarena.ai", "www.lmarena.ai")
START_URL = f"https://{CANONICAL_HOST}/text/direct"  # where a person starts a Direct chat
STREAM_PREFIXES = ("/nextjs-api/stream/", "/api/stream/")
# The chat key since May 2026. The page script reads the key the site itself uses at run time; this is
# only the fallback when it finds none (and the simulator's key).
RECAPTCHA_SITE_KEY = "6LeTGMcsAAAAALuIlkVwIxaAuZA8VledA6d3Nnb0"
RECAPTCHA_OLD_KEYS = ("6Led_uYrAAAAAKjxDIF58fgFtX3t8loNAK85bW9I",)  # chat key until spring 2026
_SITEKEY = re.compile(r"[A-Za-z0-9_-]{20,60}")
ACTION_SUBMIT = "chat_submit"  # create-evaluation and post-to-evaluation
ACTION_RETRY = "chat_retry"
AUTH_COOKIE = "arena-auth-prod-v1"
# Direct mode: "direct" until mid-2026; the site's client now sends "direct-battle" (a direct chat the
# site may turn into a battle turn). Both are direct conversations of the chosen model.
DIRECT_MODES = ("direct", "direct-battle")
DIRECT_MODE_2026 = "direct-battle"


def is_direct(mode: str) -> bool:
    return mode in DIRECT_MODES


def looks_like_sitekey(value: str) -> bool:
    return bool(_SITEKEY.fullmatch(value))
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


# The fields the site's own client has been seen sending (the samples, and the 2026 client): a body with
# others, or without the ones every body has, is a change worth a drift note (relay/drift.py).
KNOWN_BODY_FIELDS = frozenset({
    "id", "mode", "modality", "modelAId", "modelBId", "modelId", "userMessageId", "modelAMessageId",
    "modelBMessageId", "userMessage", "messages", "recaptchaV3Token", "recaptchaV2Token", "featureFlags",
    "metadata",
})
KNOWN_USER_MESSAGE_FIELDS = frozenset({"content", "experimental_attachments", "metadata"})
KNOWN_MESSAGE_FIELDS = frozenset({
    "id", "role", "content", "experimental_attachments", "parentMessageIds", "participantPosition", "modelId",
    "evaluationSessionId", "status", "failureReason", "reasoning", "metadata",
})
REQUIRED_BODY_FIELDS = {"create": ("userMessageId", "modelAMessageId"), "post": ("userMessageId", "modelAMessageId"),
                        "retry": ()}


def body_drift(kind: CallKind, body: bytes) -> list[str]:
    """How a stream call's body differs from what the site's client has been seen sending: field names only,
    never values ("create body: new field foo", "post userMessage: missing field content")."""
    try:
        data = json.loads(body.decode("utf-8")) if body.strip() else {}
    except (UnicodeDecodeError, ValueError):
        return [f"{kind} body: not JSON"]
    if not isinstance(data, dict):
        return [f"{kind} body: not an object"]
    out = [f"{kind} body: new field {name}" for name in sorted(set(data) - KNOWN_BODY_FIELDS)]
    out += [f"{kind} body: missing field {name}" for name in REQUIRED_BODY_FIELDS.get(kind, ()) if name not in data]
    if not any(k in data for k in ("recaptchaV3Token", "recaptchaV2Token")):
        out.append(f"{kind} body: missing field recaptchaV3Token")
    if kind != "retry" and "userMessage" not in data and "messages" not in data:
        out.append(f"{kind} body: neither userMessage nor messages")
    user_message = data.get("userMessage")
    if isinstance(user_message, dict):
        out += [f"{kind} userMessage: new field {n}" for n in sorted(set(user_message) - KNOWN_USER_MESSAGE_FIELDS)]
        if "content" not in user_message:
            out.append(f"{kind} userMessage: missing field content")
    for message in data.get("messages") or [] if isinstance(data.get("messages"), list) else []:
        if isinstance(message, dict):
            out += [f"{kind} messages[]: new field {n}" for n in sorted(set(message) - KNOWN_MESSAGE_FIELDS)]
    return sorted(set(out))


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
    if is_direct(str(data.get("mode"))):
        turn.message_ids.pop("b", None)  # sent in direct mode too; answered only if the site makes it a battle
    return turn


def stop_path(prefix: str, session_id: str, message_id: str) -> str:
    """The site's Stop button: ends the generation of a turn (2026)."""
    return f"{prefix}stop/{session_id}/messages/{message_id}"


# --------------------------------------------------------------------------- stream


@dataclass(frozen=True)
class StreamEvent:
    """One line of an answer, decoded.

    kind: text | reasoning | image | citation | heartbeat | finish | error | other | unknown
    (`unknown`: a code the site's client knows but this module does not; `data` is its shape, never its
    content). A finish may carry the site's own token counts in `data["usage"]`.
    """

    kind: str
    side: str = "a"
    text: str = ""
    data: Any = None


def line_code(line: str) -> str:
    """A line's code (`a0`, `ad`, `b2`...; `?` for a line that is not one), for the record of what a failed
    answer looked like: codes only, never content."""
    return line[:2] if len(line) >= 3 and line[2] == ":" and line[0] in "ab" else "?"


def parse_line(line: str) -> StreamEvent | None:
    """`<side><code>:<json>` → event: the AI SDK's data-stream part codes behind a side letter
    (`a0:"text"`, `ag:` reasoning, `a2:` data such as images and heartbeats, `ac:` citations, `a3:` a
    provider error, `ae:` a platform error or a step's end, `ad:` the finish). Blank lines give None."""
    line = line.rstrip("\r")
    if not line.strip():
        return None
    if len(line) < 3 or line[2] != ":" or line[0] not in "ab":
        return StreamEvent("unknown", data=line_shape("?", line))
    side, code, raw = line[0], line[1], line[3:]
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        return StreamEvent("unknown", side, data=line_shape(code, None, raw))
    parse = _PARSERS.get(code)
    if parse is None:
        return StreamEvent("unknown", side, data=line_shape(code, payload))
    return parse(side, payload)


def _text(side: str, payload: Any) -> StreamEvent:
    if payload == "hasArenaError":
        return StreamEvent("error", side, text="the site reported an arena error")
    return StreamEvent("text", side, text=payload if isinstance(payload, str) else str(payload))


def _reasoning(side: str, payload: Any) -> StreamEvent:
    return StreamEvent("reasoning", side, text=payload if isinstance(payload, str) else str(payload))


def _data(side: str, payload: Any) -> StreamEvent:
    if isinstance(payload, list):
        for item in payload:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "heartbeat":
                return StreamEvent("heartbeat", side)  # keeps the upstream timeout alive, never content
            if item.get("type") in ("image", "video"):
                return StreamEvent("image", side, text=item.get("image") or item.get("url") or "", data=item)
    return StreamEvent("other", side, data=payload)


def _citation(side: str, payload: Any) -> StreamEvent:
    if isinstance(payload, dict) and payload.get("toolCallId") == "citation-source":
        try:
            args = json.loads(payload.get("argsTextDelta") or "{}")
        except json.JSONDecodeError:
            args = {}
        return StreamEvent("citation", side, data=args.get("source") if isinstance(args, dict) else None)
    return StreamEvent("other", side, data=payload)


def _error(side: str, payload: Any) -> StreamEvent:
    """`a3:` an error of the model's provider (its text may be JSON, e.g. moderation_blocked)."""
    return StreamEvent("error", side, text=payload if isinstance(payload, str) else json.dumps(payload),
                       data={"source": "provider"})


def _step_end(side: str, payload: Any) -> StreamEvent:
    """`ae:` the AI SDK's finish-step; with a message instead, the site's own (platform) error."""
    if isinstance(payload, dict) and ("message" in payload or "error" in payload):
        message = payload.get("message") or payload.get("error")
        return StreamEvent("error", side, text=str(message), data={"source": "platform"})
    if isinstance(payload, str):
        return StreamEvent("error", side, text=payload, data={"source": "platform"})
    return StreamEvent("other", side, data=payload)


def _finish(side: str, payload: Any) -> StreamEvent:
    if not isinstance(payload, dict):
        return StreamEvent("other", side, data=payload)
    reason = str(payload.get("finishReason") or "stop")
    if reason == "error":
        return StreamEvent("error", side, text="the model's answer failed", data=payload)
    return StreamEvent("finish", side, text=reason, data=payload)


# Codes the site's client handles that carry nothing for an OpenAI answer (tool calls of WebDev, steps,
# message annotations, files of other kinds): known, so not drift.
def _ignored(side: str, payload: Any) -> StreamEvent:
    return StreamEvent("other", side, data=payload)


_PARSERS = {
    "0": _text, "g": _reasoning, "2": _data, "c": _citation, "3": _error, "e": _step_end, "d": _finish,
    "8": _ignored, "9": _ignored, "a": _ignored, "b": _ignored, "f": _ignored, "h": _ignored, "i": _ignored,
    "j": _ignored, "k": _ignored,
}


def line_shape(code: str, payload: Any, raw: str | None = None) -> str:
    """What a line looks like without what it says: its code and the kinds and keys of its JSON."""
    if raw is not None:
        return f"{code}:not-json"

    def shape(value: Any, depth: int = 0) -> str:
        if isinstance(value, dict):
            keys = sorted(str(k) for k in value)[:12]
            if depth >= 1:
                return "{" + ",".join(keys) + "}"
            return "{" + ",".join(f"{k}:{shape(value[k], depth + 1)}" for k in keys) + "}"
        if isinstance(value, list):
            return "[" + (shape(value[0], depth + 1) if value else "") + "]"
        return type(value).__name__
    return f"{code}:{shape(payload)}"


def usage_of(event: StreamEvent) -> dict[str, int] | None:
    """The site's own token counts from a finish line, when it sends them (prompt, completion)."""
    usage = event.data.get("usage") if event.kind == "finish" and isinstance(event.data, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("promptTokens", usage.get("inputTokens"))
    completion = usage.get("completionTokens", usage.get("outputTokens"))
    if not (isinstance(prompt, int) and isinstance(completion, int)) or isinstance(prompt, bool) \
            or isinstance(completion, bool) or min(prompt, completion) < 0:
        return None
    return {"prompt_tokens": prompt, "completion_tokens": completion}


class StreamParser:
    """Incremental parser: feed body chunks split anywhere (even inside a line or a UTF-8
    character), get whole events. Splitting on the newline byte never cuts a UTF-8 sequence."""

    def __init__(self) -> None:
        self._tail = b""
        self.codes: deque[str] = deque(maxlen=64)  # the last lines' codes (what a failed answer looked like)

    def feed(self, chunk: bytes) -> list[StreamEvent]:
        data = self._tail + chunk
        *lines, self._tail = data.split(b"\n")
        return [ev for ev in (self._line(raw) for raw in lines) if ev]

    def close(self) -> list[StreamEvent]:
        tail, self._tail = self._tail, b""
        ev = self._line(tail) if tail else None
        return [ev] if ev else []

    def _line(self, raw: bytes) -> StreamEvent | None:
        text = raw.decode("utf-8", "replace")
        if text.strip():
            self.codes.append(line_code(text))
        return parse_line(text)


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
    LOGIN_GATE = "login_gate"  # 401 LOGIN_GATE: Direct needs a signed-in account (a state of the browser)
    BATTLE_TURN = "battle_turn"  # a direct-battle conversation the site turned into a battle turn
    SPOOFED_ID = "spoofed_id"  # 400: the time inside the ids is off by more than an hour (the clock)
    MOVED = "moved"  # 3xx to another host, or 405 after a redirect re-sent a POST as a GET
    PROMPT_REFUSED = "prompt_refused"  # 429 "prompt failed": the site refuses this prompt; not a rate limit
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


def classify_failure(
    status: int, body: str, headers: dict[str, str] | None = None, had_auth_cookie: bool = True
) -> Failure:
    """What a non-streaming answer to a stream call means, from its status, body and headers."""
    headers = {k.lower(): v for k, v in (headers or {}).items()}
    text = body.strip()
    message = _error_message(text)
    lowered = message.lower()
    if "just a moment" in lowered or "_cf_chl_opt" in lowered or "cf-chl" in lowered:
        return Failure(status, "Cloudflare challenge: the page needs a human check", "keep", 30, FailureKind.CHALLENGE)
    if status in (301, 302, 303, 307, 308) or status == 405:
        where = headers.get("location", "")
        return Failure(status, f"the site answered {status}" + (f" (to {where})" if where else "")
                       + ": it has moved to another host", "keep", None, FailureKind.MOVED)
    if "login_gate" in text.lower().replace(" ", "_") or (status == 500 and not had_auth_cookie):
        return Failure(status, "Direct chat needs a signed-in account (LOGIN_GATE)", "keep", None,
                       FailureKind.LOGIN_GATE)
    if status == 401:
        return Failure(status, message[:300], "retire", None, FailureKind.FOREIGN_SESSION)
    if status == 400 and "already has feedback" in lowered:
        return Failure(status, message[:300], "retire", None, FailureKind.HAS_FEEDBACK)
    if status == 400 and "expected a battle turn" in lowered:
        return Failure(status, message[:300], "retire", None, FailureKind.BATTLE_TURN)
    if status == 400 and "spoofed" in lowered:
        return Failure(status, message[:300], "keep", None, FailureKind.SPOOFED_ID)
    if status == 403 and "recaptcha" in lowered:
        return Failure(status, message[:300], "keep", None, FailureKind.RECAPTCHA)
    if status == 429 and "prompt failed" in lowered:
        return Failure(status, message[:300], "keep", None, FailureKind.PROMPT_REFUSED)
    if status == 429:
        wait = rate_limit_wait(headers)
        return Failure(status, message[:300] or "rate limited", "cool", wait, FailureKind.RATE_LIMITED)
    if status == 404:
        return Failure(status, message[:300], "retire", None, FailureKind.NOT_FOUND)
    if status == 422:
        return Failure(status, message[:300], "keep", None, FailureKind.CONTENT_FILTER)
    return Failure(status, message[:300] or f"upstream status {status}", "keep", None)


def error_shape(body: str) -> str:
    """An error body's shape for the drift log: its JSON keys, or that it is text or HTML (never its words)."""
    text = body.strip()
    try:
        parsed = json.loads(text)
    except ValueError:
        return "html" if text.startswith("<") else ("empty" if not text else "text")
    return line_shape("body", parsed).split(":", 1)[1]


def _error_message(text: str) -> str:
    """The error a body carries: `{"error": ...}`, `{"message": ...}`, `{"code": ...}` or the text itself."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text
    if isinstance(parsed, dict):
        for key in ("error", "message", "code"):
            value = parsed.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict):
                return str(value.get("message") or value.get("code") or json.dumps(value))
    return text


def answer_failure(
    seen_error: str | None, finished: bool, had_content: bool, battle_turn: bool = False
) -> Failure | None:
    """What a 200 answer that ended amounts to: None when it was a good answer."""
    if battle_turn:
        return Failure(502, "the site turned this direct conversation into a battle turn (two hidden models)",
                       "retire", kind=FailureKind.BATTLE_TURN)
    if seen_error:
        return Failure(502, f"the answer failed: {seen_error}", "keep", kind=stream_error_kind(seen_error))
    if not finished:
        return Failure(502, "the answer stopped before its last line", "keep", kind=FailureKind.TRUNCATED)
    if not had_content:
        return Failure(502, "the answer was empty", "keep", kind=FailureKind.EMPTY)
    return None


def stream_error_kind(text: str) -> FailureKind:
    """An error line of an answer: moderation (the provider's or the site's) or any other failure."""
    lowered = text.lower()
    if any(word in lowered for word in ("moderation", "content_filter", "content-filter", "violates", "flagged")):
        return FailureKind.CONTENT_FILTER
    return FailureKind.STREAM_ERROR


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
    return session_info(cookies)[0]


def session_info(cookies: dict[str, str]) -> tuple[str | None, bool | None]:
    """(identity, anonymous): who the session cookie says this is, and whether it is a guest (an
    anonymous session, which the site keeps out of Direct mode since 2026). None where it cannot tell."""
    value = cookies.get(AUTH_COOKIE)
    if value is None:  # a large session is split into .0, .1, ...
        parts = [cookies[k] for k in sorted(cookies) if re.fullmatch(re.escape(AUTH_COOKIE) + r"\.\d+", k)]
        value = "".join(parts) if parts else None
    if not value:
        provisional = cookies.get("provisional_user_id")
        return (f"provisional:{provisional}", True) if provisional else (None, None)
    value = unquote(value)
    raw = value[len("base64-") :] if value.startswith("base64-") else value
    try:
        decoded = json.loads(base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_"))
        user = decoded.get("user", {})
        user_id = user.get("id")
        if isinstance(user_id, str) and user_id:
            anonymous = user.get("is_anonymous")
            return f"user:{user_id}", anonymous if isinstance(anonymous, bool) else None
    except (ValueError, AttributeError, TypeError):
        pass
    return "cookie:" + hashlib.sha256(value.encode()).hexdigest()[:16], None


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


_CHAT_PAGE = re.compile(r"^/(?:c/[0-9a-fA-F-]{36}|(?:text|image|search|webdev|video)/direct|)/?$")


def chat_page_shape(path: str) -> str | None:
    """The shape of a chat page's path (where the site puts its model list: `/`, `/c/{id}`, `/text/direct`),
    or None for any other page."""
    bare = path.split("?", 1)[0]
    if not _CHAT_PAGE.match(bare):
        return None
    return re.sub(r"/c/[0-9a-fA-F-]{36}", "/c/{id}", bare) or "/"


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


def is_router(model: dict[str, Any]) -> bool:
    """The site's router model (`Max`, 2026): it picks a model for each prompt instead of being one."""
    return str(model.get("organization", "")).lower() == "boss-bandit" or str(model.get("publicName")) == "Max"


def user_selectable(model: dict[str, Any]) -> bool:
    """Whether the site lets a person pick this entry (two entries may share a public name)."""
    return model.get("userSelectable") is not False


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
        if is_direct(mode):
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
    model_id: str | None,
    modality: str,
    turns: list[ChatTurn],
    call: CallKind = "create",
    mode: str = DIRECT_MODE_2026,
) -> tuple[dict[str, Any], str, str]:
    """A create-evaluation (or post-to-evaluation) body, direct mode, carrying the client's conversation.

    MESSAGES sends the parent-linked chain plus the assistant placeholder; USER_MESSAGE sends one
    `userMessage` (the conversation flattened when it has more than one turn), with `metadata` and a
    `modelBMessageId` even in direct mode, as the 2026 client does; a post in plain `direct` mode carries
    no `mode`, as the client of late 2025 sent it. Every id is a fresh UUIDv7 of the current clock (the
    site refuses ids more than an hour off).
    Returns (body without token, user message id, assistant message id).
    """
    body: dict[str, Any] = {"id": session_id, "mode": mode, "modelAId": model_id, "modality": modality}
    if call == "post" and body_format != BodyFormat.MESSAGES and mode == "direct":
        del body["mode"]
    if not is_direct(mode):
        del body["modelAId"]  # a battle's models are the site's choice, hidden until the vote
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
        body["userMessage"] = {"content": flatten_turns(turns), "experimental_attachments": attachments,
                               "metadata": {}}
        body["modelBMessageId"] = uuid7()
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
    data["modelId"] = model_id if is_direct(mode) else None
    return json.dumps(data, ensure_ascii=False).encode("utf-8")
